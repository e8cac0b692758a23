"""Blocked dials reported to the attempts stream (interfaces.md) through real Redis."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import pytest
import redis.asyncio as aioredis

from gateway.attempts import Attempt, AttemptReporter, AttemptsConfig
from tests.gateway.harness import free_port, need_redis

pytestmark = pytest.mark.redis


def _attempt(i: int) -> Attempt:
    return Attempt(
        ts_unix=1_700_000_000.0 + i,
        caller="cell42",
        dialled="07700 900123",
        matched="+447700900123",
        call_id=f"call-{i}",
    )


async def test_attempts_written_with_the_agreed_fields() -> None:
    need_redis()
    prefix = f"upcs-test-{uuid.uuid4().hex}"
    client = aioredis.Redis(host="127.0.0.1", port=6379)
    reported: list[int] = []
    reporter = AttemptReporter(
        client, AttemptsConfig(site="hmp-test", key_prefix=prefix), on_reported=reported.append
    )
    task = asyncio.create_task(reporter.run())
    for i in range(3):
        reporter.report(_attempt(i))
    await reporter.flush(5.0)
    check = aioredis.Redis(host="127.0.0.1", port=6379, decode_responses=True)
    try:
        entries = await check.xrange(f"{prefix}:attempts") or []
        assert [e[1] for e in entries] == [
            {
                "site": "hmp-test",
                "ts": repr(1_700_000_000.0 + i),
                "caller": "cell42",
                "dialled": "07700 900123",
                "matched": "+447700900123",
                "call_id": f"call-{i}",
            }
            for i in range(3)
        ]
        assert sum(reported) == 3
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await reporter.aclose()
        await check.delete(f"{prefix}:attempts")
        await check.aclose()


async def test_redis_down_drops_and_counts_without_blocking_the_caller() -> None:
    port = free_port(host="127.0.0.1")  # nothing listens there
    client = aioredis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.2)
    dropped: dict[str, int] = {}

    def on_dropped(reason: str, n: int) -> None:
        dropped[reason] = dropped.get(reason, 0) + n

    cfg = AttemptsConfig(site="hmp-test", queue_max=5, backoff_initial_s=0.01)
    reporter = AttemptReporter(client, cfg, on_dropped=on_dropped)
    loop = asyncio.get_running_loop()
    start = loop.time()
    for i in range(8):  # 3 more than the queue holds
        reporter.report(_attempt(i))
    assert loop.time() - start < 0.01  # report() never waits on Redis
    assert dropped == {"queue_full": 3}
    task = asyncio.create_task(reporter.run())
    await reporter.flush(3.0)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await reporter.aclose()
    assert dropped["redis_error"] == 5
    await reporter.aclose()  # idempotent
    reporter.report(_attempt(9))
    assert dropped["closed"] == 1
