"""Turns the core's typed events into metrics, logs and attempt reports (STYLE.md rule 9).

Also wraps the screening function: it times every call into the latency histogram and remembers
which barred entry a blocked dial matched, so the attempt report can name it (the core's
`Screened` event carries the verdict, not the entry).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from blocklist import Screener
from gateway.attempts import Attempt, AttemptReporter
from gateway.logs import NumberTagger, log_event
from gateway.metrics import GatewayMetrics
from gateway.sip import (
    MessageReceived,
    MessageSent,
    ParseFailed,
    Refused,
    Screened,
    TransactionTimedOut,
)

__all__ = ["EventObserver", "TimedScreen"]

_log = logging.getLogger("upcs.gateway")
# Matched entries remembered between a screen() call and its Screened event; both happen in the
# same receive() cycle, so the map only ever holds a few entries. The bound is belt and braces.
_MAX_PENDING_MATCHES = 1024


class TimedScreen:
    """`screen(dialled) -> verdict` for the core, timed, remembering blocked matches."""

    __slots__ = ("_check", "_matches", "_observe")

    def __init__(self, screener: Screener, metrics: GatewayMetrics) -> None:
        self._check = screener.check
        self._observe = metrics.screen_latency.observe
        self._matches: dict[str, int] = {}

    def __call__(self, dialled: str) -> str:
        start = time.perf_counter()
        result = self._check(dialled)
        self._observe(time.perf_counter() - start)
        if result.matched is not None:
            if len(self._matches) >= _MAX_PENDING_MATCHES:
                self._matches.clear()
            self._matches[dialled] = result.matched
        return result.verdict.value

    def take_match(self, dialled: str) -> int | None:
        return self._matches.pop(dialled, None)

    def clear(self) -> None:
        self._matches.clear()


class EventObserver:
    """Consumes the core's events after each driver cycle."""

    def __init__(
        self,
        metrics: GatewayMetrics,
        screen: TimedScreen,
        tagger: NumberTagger,
        reporter: AttemptReporter | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._metrics = metrics
        self._screen = screen
        self._tag = tagger.tag
        self._reporter = reporter
        self._clock = clock

    def __call__(self, events: Sequence[Any]) -> None:
        m = self._metrics
        for ev in events:
            if isinstance(ev, MessageReceived):
                m.messages_in.inc((ev.transport, ev.method, ev.status))
            elif isinstance(ev, MessageSent):
                m.messages_out.inc((ev.method, ev.status))
            elif isinstance(ev, Screened):
                self._screened(ev)
            elif isinstance(ev, Refused):
                m.refused.inc((ev.why, ev.status))
                if ev.why == "overload":
                    m.overload_shed.inc()
                level = logging.DEBUG if ev.why == "screen" else logging.INFO
                log_event(
                    _log, level, "sip_refused",
                    call_id=ev.call_id, method=ev.method, status=ev.status, why=ev.why,
                )  # fmt: skip
            elif isinstance(ev, TransactionTimedOut):
                m.timeouts.inc((ev.timer,))
                log_event(
                    _log, logging.INFO, "sip_timeout",
                    call_id=ev.call_id, method=ev.method, timer=ev.timer,
                )  # fmt: skip
            elif isinstance(ev, ParseFailed):
                m.parse_errors.inc((ev.status,))
                log_event(_log, logging.DEBUG, "sip_parse_failed", status=ev.status)
        self._screen.clear()

    def _screened(self, ev: Screened) -> None:
        self._metrics.calls_screened.inc((ev.verdict, ev.method))
        matched = self._screen.take_match(ev.dialled)
        if ev.verdict == "allowed":
            if _log.isEnabledFor(logging.DEBUG):
                log_event(
                    _log, logging.DEBUG, "call_screened", call_id=ev.call_id, method=ev.method,
                    verdict=ev.verdict, dialled_tag=self._tag(ev.dialled),
                )  # fmt: skip
            return
        # Blocked and invalid look the same to the caller (safety invariant 3) but not to ops.
        if _log.isEnabledFor(logging.INFO):
            log_event(
                _log, logging.INFO, "call_screened", call_id=ev.call_id, method=ev.method,
                verdict=ev.verdict, dialled_tag=self._tag(ev.dialled),
            )  # fmt: skip
        if ev.verdict == "blocked" and matched is not None and self._reporter is not None:
            self._reporter.report(
                Attempt(
                    ts_unix=self._clock(),
                    caller=ev.caller,
                    dialled=ev.dialled,
                    matched=f"+{matched}",
                    call_id=ev.call_id,
                )
            )
