"""Chaos: 10,000 changes published while Redis is killed -9 and restarted, and while a follower
process is killed -9 and restarted. At the end every follower holds the hub's list bit for bit
(same checksum), the hub holds exactly the 10,000 acknowledged changes (no version lost, none
applied twice), and the followers' persisted files agree.

"Acknowledged" = `Publisher.publish` returned. Redis runs with `appendfsync always`, so the
script's writes are in the AOF before the reply; a publish whose reply was lost in the kill is
retried with the same idempotency key and so lands exactly once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from blocklist import ListSnapshot, read_snapshot
from sync import Backoff, Change, Keys, Publisher, SyncConfig
from sync.redisio import read_meta
from tests.sync.helpers import RedisServer

pytestmark = [pytest.mark.redis, pytest.mark.slow]

CHANGES = 10_000
BATCH = 10
PROC = Path(__file__).with_name("follower_proc.py")
ROOT = Path(__file__).resolve().parents[2]
DEADLINE_S = 60.0


def start_follower(url: str, site: str, path: Path, prefix: str) -> subprocess.Popen[bytes]:
    # This checkout's packages first: the installed (editable) ones may be another tree.
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.Popen(
        [sys.executable, str(PROC), url, site, str(path), prefix],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )


def plan(seed: int) -> list[Change]:
    """Seeded adds and removes over Ofcom drama ranges: a replayed batch would show."""
    rng = random.Random(seed)
    pool = [f"+447700900{n:03d}" for n in range(1000)] + [f"+442079460{n:03d}" for n in range(1000)]
    return [
        Change("add" if rng.random() < 0.6 else "remove", rng.choice(pool)) for _ in range(CHANGES)
    ]


async def test_no_acknowledged_change_lost_through_kills(
    redis_server: RedisServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="upcs.sync.publisher")
    started = time.monotonic()
    prefix = "chaos"
    sync = SyncConfig(
        key_prefix=prefix,
        compact_every_versions=2_000,  # several compactions and trims during the run
        retain_versions=500,
        publish_timeout_s=20.0,
        retry=Backoff(initial_s=0.02, cap_s=0.2),
    )
    changes = plan(seed=20261203)
    client = aioredis.Redis.from_url(redis_server.url, socket_timeout=5)
    publisher = Publisher(client, sync)
    paths = {site: tmp_path / f"{site}.snap" for site in ("steady", "killed")}
    procs = {site: start_follower(redis_server.url, site, p, prefix) for site, p in paths.items()}
    acked: list[int] = []
    reader: aioredis.Redis | None = None

    def chaos() -> None:
        # A thread, so each kill lands at an arbitrary point of a publish, often while its
        # script reply is in flight: Redis applied it, the reply is lost, and the retry must
        # not apply it again (the idempotency key answers with the first result).
        rng = random.Random(7)
        for at in (1_500, 3_000, 4_500, 6_000, 7_500, 9_000):
            while len(acked) * BATCH < at:
                time.sleep(0.0002)
            time.sleep(rng.uniform(0, 0.003))
            if at == 6_000:
                procs["killed"].send_signal(signal.SIGKILL)
                procs["killed"].wait()
                time.sleep(0.3)
                procs["killed"] = start_follower(
                    redis_server.url, "killed", paths["killed"], prefix
                )
                continue
            redis_server.kill()
            time.sleep(0.2)
            redis_server.start()

    chaos_thread = threading.Thread(target=chaos, daemon=True)
    chaos_thread.start()
    try:
        for i in range(0, CHANGES, BATCH):
            acked.append(
                await publisher.publish(changes[i : i + BATCH], idempotency_key=f"batch-{i}")
            )
        chaos_thread.join(timeout=10)
        assert not chaos_thread.is_alive()
        # The last kill can land after the last publish (the chaos thread may not get the GIL
        # in time): the publisher never meets it, but every connection in `client`'s pool is
        # dead. The checks below read through a client made after the chaos ended.
        reader = aioredis.Redis.from_url(redis_server.url, socket_timeout=5)
        retries = [r for r in caplog.records if "sync.publish_retry" in r.getMessage()]
        assert len(retries) >= 5  # each Redis kill was met by the publisher and retried
        dups = [r for r in caplog.records if "sync.publish_duplicate" in r.getMessage()]
        print(f"publish retries: {len(retries)}, in-flight publishes found applied: {len(dups)}")
        # Every publish acknowledged exactly its own versions: 10 each, no holes, no repeats.
        assert acked == list(range(BATCH, CHANGES + 1, BATCH))
        meta = await read_meta(reader, Keys(prefix))
        assert meta.head == CHANGES
        expected: set[int] = set()
        for c in changes:
            (expected.add if c.op == "add" else expected.discard)(c.number)
        hub_checksum = ListSnapshot.from_numbers(expected, CHANGES).checksum
        assert meta.head_checksum == hub_checksum
        # Every follower reaches the hub's version with the hub's checksum.
        while True:
            raw = await reader.hgetall(Keys(prefix).sites)
            reports = {
                k.decode() if isinstance(k, bytes) else k: json.loads(v) for k, v in raw.items()
            }
            done = [
                site
                for site, r in reports.items()
                if r["applied_version"] == CHANGES and r["checksum"] == hub_checksum
            ]
            if sorted(done) == sorted(paths):
                break
            assert time.monotonic() - started < DEADLINE_S, f"followers not converged: {reports}"
            await asyncio.sleep(0.05)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            proc.wait(timeout=10)
        await client.aclose()
        if reader is not None:
            await reader.aclose()
    # Graceful stop persisted the same list, bit for bit.
    for path in paths.values():
        persisted = read_snapshot(path)
        assert persisted.version == CHANGES and persisted.checksum == hub_checksum
    assert time.monotonic() - started < DEADLINE_S
