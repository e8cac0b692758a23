"""Several gateway processes sharing the listen ports with SO_REUSEPORT (`--workers N`).

The kernel spreads new flows over the workers by a hash of the 4-tuple, so every datagram of one
source lands on the same worker, but the trunk's answers would land on whichever worker its own
address hashes to. So each worker also binds a private UDP port on the listen host and puts that
port in its Via and Record-Route: responses (RFC 3261 §18.2.2) and in-dialog requests (§16.12)
come back to the worker that holds the transaction and the dialog. Each worker serves its own
metrics on the metrics port plus its index (worker 0 on the given port).

A PBX sending from one address hashes to one worker: workers help when many PBXs (or a load
generator with one socket per call) send at once.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import replace
from types import FrameType
from typing import Any

from gateway.settings import GatewaySettings

__all__ = ["run_workers", "worker_settings"]

# A worker drains for up to drain_timeout_s; give it that plus a margin before killing it.
WORKER_STOP_MARGIN_S = 5.0


def worker_settings(settings: GatewaySettings, index: int) -> GatewaySettings:
    """Settings for worker `index`: shared listen ports, own Via port, own metrics port."""
    metrics = settings.metrics
    if metrics is not None and metrics[1] != 0:
        metrics = (metrics[0], metrics[1] + index)
    return replace(settings, metrics=metrics, worker_index=index)


def run_workers(settings: GatewaySettings, main: Callable[[GatewaySettings], int]) -> int:
    """Fork `settings.workers` processes running `main(worker_settings)`; forward signals."""
    ctx = multiprocessing.get_context("fork")  # the loaded list is shared copy-on-write
    procs: list[Any] = []  # ForkProcess; typeshed's context types do not line up

    def child(index: int) -> None:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        sys.exit(main(worker_settings(settings, index)))

    def forward(signum: int, frame: FrameType | None) -> None:
        for proc in procs:
            if proc.pid is not None and proc.is_alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signum)

    old_term = signal.signal(signal.SIGTERM, forward)
    old_int = signal.signal(signal.SIGINT, forward)
    try:
        for index in range(settings.workers):
            proc = ctx.Process(target=child, args=(index,), name=f"upcs-gateway-{index}")
            proc.start()
            procs.append(proc)
        codes = []
        for proc in procs:
            proc.join()
            codes.append(proc.exitcode or 0)
    finally:
        signal.signal(signal.SIGTERM, old_term)
        signal.signal(signal.SIGINT, old_int)
        for proc in procs:
            if proc.is_alive():
                proc.join(settings.drain_timeout_s + WORKER_STOP_MARGIN_S)
            if proc.is_alive():
                proc.kill()
    return 1 if any(c != 0 for c in codes) else 0
