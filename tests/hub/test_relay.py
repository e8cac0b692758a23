"""The outbox relay through the REAL sync publisher and real Redis: in order, exactly once, and
nothing lost when the relay or Redis is killed (issue 5, "Publishing without loss")."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from sqlalchemy import func, select, text
from sqlalchemy.engine import Engine

import sync
from hub import Action, Hub, Relay, RelayConfig, parse_case_request, run_loop
from hub.audit import read_audit
from hub.bars import Change
from hub.schema import outbox
from tests.hub.conftest import REDIS_URL, PrivateRedis, hub_cli, make_request
from tests.hub.synccheck import assert_exactly_once, log_entries
from upcs.cli_hub import make_publish

pytestmark = pytest.mark.redis

FAST = sync.SyncConfig  # alias for brevity below


def _client(url: str) -> aioredis.Redis:
    return aioredis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)


def _approve(hub: Hub, phones: list[str]) -> int:
    case_id = hub.create_case(parse_case_request(make_request(phones)), handler="h", reason="r")
    hub.transition(case_id, Action.ASSESS, handler="h", reason="assess")
    hub.transition(case_id, Action.APPROVE, handler="h", reason="approve")
    return case_id


def _drama(i: int) -> str:
    return f"07700 900{i:03d}"  # Ofcom drama range, 000-999


def _pending(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count()).select_from(outbox).where(outbox.c.published_at.is_(None))
            ).scalar_one()
        )


async def test_relay_publishes_in_order_and_audits_the_disclosure(
    hub: Hub, engine: Engine, redis_prefix: str, tmp_path: Path
) -> None:
    a = _approve(hub, [_drama(1), _drama(2)])
    b = _approve(hub, [_drama(2), _drama(3)])
    hub.transition(a, Action.LIFT, handler="h", reason="lifted")
    client = _client(REDIS_URL)
    try:
        publisher = sync.Publisher(client, FAST(key_prefix=redis_prefix))
        relay = Relay(engine, make_publish(publisher))
        assert await relay.publish_pending() == 3
        assert await relay.publish_pending() == 0
    finally:
        await client.aclose()
    head = await assert_exactly_once(engine, REDIS_URL, redis_prefix, tmp_path)
    assert head == 5  # 2 adds, 2 adds, 1 remove (+447700900002 stays barred by b)
    with engine.connect() as conn:
        disclosed = [e for e in read_audit(conn) if e.action == "disclose"]
    assert [(e.case_id, e.actor, e.detail["outbox"]) for e in disclosed] == [
        (a, "relay", 1),
        (b, "relay", 2),
        (a, "relay", 3),
    ]
    # The audit names numbers by keyed tag only, never in clear (safety invariant 4).
    assert "+447700900" not in str([e.detail for e in disclosed])


async def test_publish_landed_but_not_marked_is_not_published_twice(
    hub: Hub, engine: Engine, redis_prefix: str, tmp_path: Path
) -> None:
    """The window that matters: Redis took the publish, the relay died before marking the row."""
    _approve(hub, [_drama(10), _drama(11)])
    _approve(hub, [_drama(12)])
    client = _client(REDIS_URL)
    try:
        real = make_publish(sync.Publisher(client, FAST(key_prefix=redis_prefix)))

        async def dies_after_publishing(changes: Sequence[Change], *, idempotency_key: str) -> int:
            await real(changes, idempotency_key=idempotency_key)
            raise ConnectionError("relay died after Redis acknowledged")

        with pytest.raises(ConnectionError):
            await Relay(engine, dies_after_publishing).publish_pending()
        assert _pending(engine) == 2
        assert len(await log_entries(REDIS_URL, redis_prefix)) == 2  # row 1 did land
        # A new relay (new publisher, as after a restart) publishes both rows.
        fresh = make_publish(sync.Publisher(client, FAST(key_prefix=redis_prefix)))
        assert await Relay(engine, fresh).publish_pending() == 2
    finally:
        await client.aclose()
    assert await assert_exactly_once(engine, REDIS_URL, redis_prefix, tmp_path) == 3


async def test_failed_publish_stops_the_batch_in_order(
    hub: Hub, engine: Engine, redis_prefix: str, tmp_path: Path
) -> None:
    """A 'remove' must never overtake the 'add' before it: a failure leaves it and all after it."""
    a = _approve(hub, [_drama(20)])
    hub.transition(a, Action.LIFT, handler="h", reason="r")
    client = _client(REDIS_URL)
    calls: list[str] = []
    try:
        real = make_publish(sync.Publisher(client, FAST(key_prefix=redis_prefix)))

        async def first_fails(changes: Sequence[Change], *, idempotency_key: str) -> int:
            calls.append(idempotency_key)
            if len(calls) == 1:
                raise ConnectionError("redis down")
            return await real(changes, idempotency_key=idempotency_key)

        relay = Relay(engine, first_fails)
        with pytest.raises(ConnectionError):
            await relay.publish_pending()
        assert _pending(engine) == 2
        assert await relay.publish_pending() == 2
    finally:
        await client.aclose()
    assert calls[0] == calls[1]  # the same row retried first, with the same key
    assert await assert_exactly_once(engine, REDIS_URL, redis_prefix, tmp_path) == 2


def _config_file(tmp_path: Path, prefix: str) -> Path:
    path = tmp_path / "upcs.toml"
    path.write_text(f'[sync]\nkey_prefix = "{prefix}"\n', encoding="utf-8")
    return path


@pytest.mark.slow
def test_relay_killed_with_sigkill_between_publish_and_mark(
    hub: Hub, engine: Engine, db_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    """A real `upcs hub relay` subprocess is SIGKILLed after Redis acknowledged a row and before
    the row was marked (the test holds the database write lock so the relay must stop there),
    then again at random moments; after restarts every bar reached the list exactly once."""
    for i in range(30):
        case_id = _approve(hub, [_drama(100 + i), _drama(100 + (i + 1) % 30)])
        if i % 3 == 0:
            hub.transition(case_id, Action.LIFT, handler="h", reason="r")
    rows = 40
    assert _pending(engine) == rows
    config = _config_file(tmp_path, redis_prefix)
    argv = hub_cli(
        "relay",
        "--db",
        db_url,
        "--redis",
        REDIS_URL,
        "--config",
        str(config),
        "--no-attempts",
        "--log-level",
        "warning",
    )
    env = {**os.environ, "PYTHONHASHSEED": "0"}

    # 1. Kill inside the publish/mark window.
    conn = engine.connect()
    try:
        if engine.dialect.name == "postgresql":
            conn.execute(text("LOCK TABLE outbox IN EXCLUSIVE MODE"))
        else:
            conn.execute(text("SELECT 1"))  # the begin hook took the SQLite write lock
        relay = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 30
        while not asyncio.run(log_entries(REDIS_URL, redis_prefix)):
            assert relay.poll() is None, relay.stderr.read() if relay.stderr else ""
            assert time.monotonic() < deadline, "relay never published"
            time.sleep(0.02)
        relay.send_signal(signal.SIGKILL)
        relay.wait(timeout=10)
    finally:
        conn.rollback()
        conn.close()
    assert _pending(engine) == rows  # published to Redis, not marked: the dangerous window

    # 2. Restart and kill at random moments, a few times.
    rng = random.Random(5)
    for _ in range(3):
        relay = subprocess.Popen(
            argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        time.sleep(rng.uniform(0.3, 1.5))
        relay.send_signal(signal.SIGKILL)
        relay.wait(timeout=10)

    # 3. Finish with `relay --once`.
    done = subprocess.run(
        [*argv[:-2], "--once"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    asyncio.run(assert_exactly_once(engine, REDIS_URL, redis_prefix, tmp_path))


@pytest.mark.slow
async def test_redis_killed_and_restarted_mid_run(
    hub: Hub,
    engine: Engine,
    private_redis: PrivateRedis,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Approvals and lifts keep coming while our own redis-server (AOF on) is kill -9ed and
    restarted several times under a running relay: in the end the list is exactly right and no
    outbox row was applied twice."""
    prefix = "upcs"
    rng = random.Random(7)
    config = RelayConfig(poll_interval_s=0.01)
    client = aioredis.Redis.from_url(private_redis.url, socket_timeout=2, socket_connect_timeout=2)
    publisher = sync.Publisher(
        client, FAST(key_prefix=prefix, publish_timeout_s=0.15, retry=sync.Backoff(0.01, 0.05))
    )
    relay = Relay(engine, make_publish(publisher), config)
    # Stopped by event, not by cancellation: redis-py 8.1 sometimes turns a cancellation inside a
    # command into a ConnectionError, which a retrying loop would then retry for ever.
    stop = asyncio.Event()
    loop_task = asyncio.create_task(run_loop([relay.publish_pending], config, stop))
    approved: list[int] = []
    try:
        for i in range(24):
            approved.append(_approve(hub, [_drama(300 + i), _drama(300 + (i + 5) % 24)]))
            if i % 4 == 3:
                hub.transition(approved.pop(0), Action.LIFT, handler="h", reason="r")
            await asyncio.sleep(rng.uniform(0.0, 0.05))
            if i % 6 == 5:
                private_redis.kill()
                # A bar approved while Redis is down: the relay must fail, back off, retry.
                approved.append(_approve(hub, [_drama(400 + i)]))
                await asyncio.sleep(rng.uniform(0.2, 0.4))
                private_redis.start()
        deadline = time.monotonic() + 30
        while _pending(engine):
            assert time.monotonic() < deadline, "relay did not drain after Redis came back"
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.wait_for(loop_task, timeout=30)
        await client.aclose()
    assert private_redis.starts == 5
    # Redis was seen down both inside one publish (sync retries) and across publishes (the
    # relay backs off and retries the same row): otherwise the test proved nothing.
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("relay.step_failed") for m in messages)
    assert any(m.startswith("sync.publish_retry") for m in messages)
    await assert_exactly_once(engine, private_redis.url, prefix, tmp_path)


@pytest.mark.slow
def test_relay_daemon_publishes_and_stops_cleanly_on_sigterm(
    hub: Hub, engine: Engine, db_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    config = _config_file(tmp_path, redis_prefix)
    argv = hub_cli("relay", "--db", db_url, "--redis", REDIS_URL, "--config", str(config))
    relay = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _approve(hub, [_drama(500)])  # approved while the daemon runs: it must pick it up
        deadline = time.monotonic() + 30
        while _pending(engine):
            assert relay.poll() is None, relay.stderr.read() if relay.stderr else ""
            assert time.monotonic() < deadline, "the daemon did not publish"
            time.sleep(0.05)
        relay.send_signal(signal.SIGTERM)
        try:
            code = relay.wait(timeout=15)
        except subprocess.TimeoutExpired:
            relay.kill()
            _, err = relay.communicate()
            pytest.fail(f"relay ignored SIGTERM for 15 s; stderr:\n{err[-3000:]}")
        assert code == 0
    finally:
        if relay.poll() is None:
            relay.kill()
            relay.wait()
    asyncio.run(assert_exactly_once(engine, REDIS_URL, redis_prefix, tmp_path))
