"""Report each blocked dial to the hub's attempts stream (`{prefix}:attempts`, interfaces.md).

The call path only does a `put_nowait` on a bounded queue: a slow or dead Redis can never slow or
fail a call. A background task drains the queue in pipelined batches; what cannot be queued or
written is counted as dropped (a metric), never retried into unbounded memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway.logs import log_event

__all__ = ["Attempt", "AttemptReporter", "AttemptsConfig"]

_log = logging.getLogger("upcs.gateway.attempts")


@dataclass(frozen=True, slots=True)
class AttemptsConfig:
    site: str
    key_prefix: str = "upcs"  # same default as sync.SyncConfig.key_prefix
    # interfaces.md: approximate trim at one million entries (~a week of blocked dials nationally).
    maxlen: int = 1_000_000
    # 10,000 queued attempts is ~minutes of a national blocked-dial peak; memory ~ a few MB.
    queue_max: int = 10_000
    batch_max: int = 500  # one pipeline round trip per batch; bounds the time one write holds
    write_timeout_s: float = 2.0  # a write slower than this is treated as Redis being down
    backoff_initial_s: float = 0.1
    backoff_max_s: float = 5.0  # capped so reporting resumes within seconds of Redis returning

    @property
    def stream_key(self) -> str:
        return f"{self.key_prefix}:attempts"


@dataclass(frozen=True, slots=True)
class Attempt:
    ts_unix: float
    caller: str
    dialled: str
    matched: str  # E.164 of the barred entry
    call_id: str


class AttemptReporter:
    """Non-blocking producer for the attempts stream.

    `redis` is a `redis.asyncio.Redis` (typed loosely: the gateway never needs more than
    `pipeline`, `xadd` and `aclose`). The reporter owns it and closes it in `aclose()`.
    """

    def __init__(
        self,
        redis: Any,
        config: AttemptsConfig,
        on_reported: Callable[[int], None] = lambda n: None,
        on_dropped: Callable[[str, int], None] = lambda reason, n: None,
    ) -> None:
        self._redis = redis
        self._config = config
        self._queue: asyncio.Queue[Attempt] = asyncio.Queue(maxsize=config.queue_max)
        self._on_reported = on_reported
        self._on_dropped = on_dropped
        self._closed = False
        self._idle = asyncio.Event()  # set when nothing is queued or being written
        self._idle.set()

    def report(self, attempt: Attempt) -> None:
        """Queue one attempt; never blocks, never raises."""
        if self._closed:
            self._on_dropped("closed", 1)
            return
        try:
            self._queue.put_nowait(attempt)
        except asyncio.QueueFull:
            self._on_dropped("queue_full", 1)
            return
        self._idle.clear()

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    async def run(self) -> None:
        """Drain the queue until cancelled."""
        backoff = self._config.backoff_initial_s
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._config.batch_max and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                async with asyncio.timeout(self._config.write_timeout_s):
                    await self._write(batch)
            except asyncio.CancelledError:
                self._on_dropped("shutdown", len(batch))
                raise
            except Exception as exc:  # Redis down, timeout, protocol error: drop, back off
                self._on_dropped("redis_error", len(batch))
                log_event(
                    _log, logging.WARNING, "attempts_write_failed",
                    error=type(exc).__name__, dropped=len(batch),
                )  # fmt: skip
                await asyncio.sleep(backoff * (0.5 + random.random()))  # jitter, not crypto
                backoff = min(backoff * 2, self._config.backoff_max_s)
            else:
                backoff = self._config.backoff_initial_s
                self._on_reported(len(batch))
            if self._queue.empty():
                self._idle.set()

    async def _write(self, batch: list[Attempt]) -> None:
        cfg = self._config
        pipe = self._redis.pipeline(transaction=False)
        for a in batch:
            pipe.xadd(
                cfg.stream_key,
                {
                    "site": cfg.site,
                    "ts": repr(a.ts_unix),
                    "caller": a.caller,
                    "dialled": a.dialled,
                    "matched": a.matched,
                    "call_id": a.call_id,
                },
                maxlen=cfg.maxlen,
                approximate=True,
            )
        await pipe.execute()

    async def flush(self, timeout_s: float) -> None:
        """Give the drain task up to `timeout_s` to write what is queued (shutdown)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._idle.wait()

    async def aclose(self) -> None:
        """Close the Redis client; idempotent and shielded from cancellation."""
        if self._closed:
            return
        self._closed = True
        leftover = self._queue.qsize()
        if leftover:
            self._on_dropped("shutdown", leftover)
        with contextlib.suppress(Exception):
            await asyncio.shield(self._redis.aclose())
