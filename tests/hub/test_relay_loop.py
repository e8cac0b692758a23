"""The relay loop's policies: backoff bounds, and stopping by event even while steps fail (the
way `upcs hub relay` stops on SIGTERM)."""

from __future__ import annotations

import asyncio
import random

from hub import Backoff, RelayConfig, run_loop


def test_backoff_is_capped_and_jittered() -> None:
    policy = Backoff(initial_s=0.2, max_s=10.0, jitter=0.5)
    rng = random.Random(1)
    delays = [policy.delay_s(n, rng) for n in range(1, 30)]
    assert all(0.1 <= d <= 15.0 for d in delays)
    assert max(delays[10:]) > 5.0  # it does grow to the cap
    assert Backoff(initial_s=0.0, jitter=0.0).delay_s(5, rng) == 0.0


async def test_stop_ends_the_loop_while_steps_keep_failing() -> None:
    calls = 0

    async def always_fails() -> int:
        nonlocal calls
        calls += 1
        raise ConnectionError("redis down")

    stop = asyncio.Event()
    config = RelayConfig(backoff=Backoff(initial_s=0.01, max_s=0.05))
    task = asyncio.create_task(run_loop([always_fails], config, stop))
    await asyncio.sleep(0.2)
    stop.set()
    await asyncio.wait_for(task, timeout=2)
    assert calls >= 3  # it kept retrying until told to stop


async def test_idle_loop_polls_and_stops_promptly() -> None:
    calls = 0

    async def idle() -> int:
        nonlocal calls
        calls += 1
        return 0

    stop = asyncio.Event()
    task = asyncio.create_task(run_loop([idle], RelayConfig(poll_interval_s=10.0), stop))
    await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(task, timeout=1)  # the 10 s poll wait is cut short
    assert calls == 1
