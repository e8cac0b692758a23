"""The core driver on a real event loop: timers fire on time (never early) and in batches, and the
serving heap policy (`settle_heap`) is what the gateway runs with."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from gateway.app import GC_THRESHOLDS, settle_heap
from gateway.transport.driver import TIMER_GRANULARITY_S, CoreDriver


class _TimerCore:
    """A stand-in for ProxyCore that only has deadlines: each `receive` adds one."""

    def __init__(self) -> None:
        self.deadlines: list[float] = []
        self.fired: list[tuple[float, float]] = []  # (deadline, the `now` it was handled at)
        self.handle_calls = 0

    def receive(self, data: bytes, transport: str, source: tuple[str, int], now: float) -> None:
        self.deadlines.append(now + float(data.decode()))
        self.deadlines.sort()

    def handle_timer(self, now: float) -> None:
        self.handle_calls += 1
        while self.deadlines and self.deadlines[0] <= now:
            self.fired.append((self.deadlines.pop(0), now))

    def outgoing(self) -> Sequence[Any]:
        return ()

    def next_timer(self) -> float | None:
        return self.deadlines[0] if self.deadlines else None

    def events(self) -> Sequence[Any]:
        return ()

    def drain(self, now: float, retry_after_s: int) -> None:
        pass

    @property
    def active_transactions(self) -> int:
        return len(self.deadlines)


async def test_timers_fire_never_early_and_in_batches() -> None:
    loop = asyncio.get_running_loop()
    core = _TimerCore()
    driver = CoreDriver(core, loop, lambda events: None)
    # Twenty deadlines spread over 4 ms: at most two grid steps, so at most a few wake-ups.
    for i in range(20):
        driver.receive(f"{0.02 + i * 0.0002:.4f}".encode(), "udp", ("127.0.0.1", 5060))
    await asyncio.sleep(0.02 + 0.004 + 2 * TIMER_GRANULARITY_S + 0.05)
    assert len(core.fired) == 20
    assert all(now >= deadline for deadline, now in core.fired)
    assert core.handle_calls <= 4
    driver.close()


async def test_a_lone_timer_fires_within_a_grid_step() -> None:
    loop = asyncio.get_running_loop()
    core = _TimerCore()
    driver = CoreDriver(core, loop, lambda events: None)
    driver.receive(b"0.0300", "udp", ("127.0.0.1", 5060))
    await asyncio.sleep(0.03 + TIMER_GRANULARITY_S + 0.05)
    ((deadline, now),) = core.fired
    # Never early; late by at most the grid step plus the event loop's own slack.
    assert deadline <= now < deadline + TIMER_GRANULARITY_S + 0.04
    driver.close()


@pytest.fixture
def restore_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restore_gc")
def test_settle_heap_freezes_start_up_and_sets_the_serving_thresholds() -> None:
    settle_heap()
    assert gc.get_threshold() == GC_THRESHOLDS
    assert gc.get_freeze_count() > 0
    # A full collection is considered only after many middle ones (see GC_THRESHOLDS).
    assert GC_THRESHOLDS[2] > 10
