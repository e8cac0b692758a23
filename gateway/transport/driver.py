"""One cycle, as in aioquic's asyncio adapter: feed the core, flush what it sends, re-arm its timer.

The driver owns the proxy core and the single timer handle. Transports call `receive()` with
bytes and a source; the driver stamps `loop.time()`, hands the core's outgoing messages to the
sender registered for their transport, passes events to the app, and schedules one `call_at`
for the core's earliest deadline. The core never reads a clock (STYLE.md rule 1).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Sequence
from typing import Any, Protocol

__all__ = ["TIMER_GRANULARITY_S", "CoreDriver", "ProxyCoreLike", "SendFn"]

SendFn = Callable[[bytes, tuple[str, int]], None]

# The loop timer is armed on a grid of this step (deadlines rounded up), so the core's timers
# are fired in batches. At 2,000 calls/s the core's earliest deadline moves every fraction of a
# millisecond, and each move cost a cancel, a new timer handle and a loop wake-up of its own
# (measured together with GC_THRESHOLDS in gateway/app.py). RFC 3261's timers start at T1 = 500 ms
# (§17.1.1.1) and a peer cannot tell one fired up to 5 ms late; Timer C is minutes (§16.6).
TIMER_GRANULARITY_S = 0.005


class OutgoingLike(Protocol):
    @property
    def data(self) -> bytes: ...
    @property
    def transport(self) -> str: ...
    @property
    def dest(self) -> tuple[str, int]: ...


class ProxyCoreLike(Protocol):
    """The part of `gateway.sip.ProxyCore` the adapters drive (interfaces.md)."""

    def receive(self, data: bytes, transport: str, source: tuple[str, int], now: float) -> None: ...
    def handle_timer(self, now: float) -> None: ...
    def outgoing(self) -> Sequence[OutgoingLike]: ...
    def next_timer(self) -> float | None: ...
    def events(self) -> Sequence[Any]: ...
    def drain(self, now: float, retry_after_s: int) -> None: ...
    @property
    def active_transactions(self) -> int: ...


class CoreDriver:
    """Drives one `ProxyCore` on one event loop."""

    __slots__ = (
        "_core", "_loop", "_on_events", "_on_unroutable", "_senders", "_timer", "_timer_at",
    )  # fmt: skip

    def __init__(
        self,
        core: ProxyCoreLike,
        loop: asyncio.AbstractEventLoop,
        on_events: Callable[[Sequence[Any]], None],
        on_unroutable: Callable[[str], None] = lambda transport: None,
    ) -> None:
        self._core = core
        self._loop = loop
        self._on_events = on_events
        self._on_unroutable = on_unroutable
        self._senders: dict[str, SendFn] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None

    @property
    def core(self) -> ProxyCoreLike:
        return self._core

    def register_sender(self, transport: str, send: SendFn) -> None:
        self._senders[transport] = send

    def receive(self, data: bytes, transport: str, source: tuple[str, int]) -> None:
        self._core.receive(data, transport, source, self._loop.time())
        self._cycle()

    def drain(self, retry_after_s: int) -> None:
        self._core.drain(self._loop.time(), retry_after_s)
        self._cycle()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        self._timer_at = None

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self._core.handle_timer(self._loop.time())
        self._cycle()

    def _cycle(self) -> None:
        core = self._core
        senders = self._senders
        for out in core.outgoing():
            send = senders.get(out.transport)
            if send is None:
                self._on_unroutable(out.transport)
                continue
            send(out.data, out.dest)
        events = core.events()
        if events:
            self._on_events(events)
        deadline = core.next_timer()
        if deadline is not None:
            deadline = math.ceil(deadline / TIMER_GRANULARITY_S) * TIMER_GRANULARITY_S
        if deadline == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
        if deadline is None:
            self._timer = None
        else:
            self._timer = self._loop.call_at(deadline, self._on_timer)
        self._timer_at = deadline
