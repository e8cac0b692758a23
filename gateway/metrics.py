"""Every gateway metric, declared in this one module on a private registry (STYLE.md rule 9).

Names are prefixed `upcs_`. Labels carry methods, statuses, verdicts and reasons only: never a
number or an address (safety invariant 4). Values that live elsewhere (the list in the holder,
the follower's status) are read at scrape time by a collector, so they are never stale and the
call path never pays for them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = [
    "KNOWN_METHODS",
    "SCREEN_LATENCY_BUCKETS_S",
    "FollowerStatusLike",
    "GatewayMetrics",
    "ListView",
    "method_label",
]

# RFC 3261 §27.4 methods plus the extensions a PBX sends (RFC 3262, 3265, 3311, 3428, 3515,
# 3903, 6086). Anything else is counted as "other" so a hostile peer cannot grow the label set.
KNOWN_METHODS = frozenset(
    {
        "INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "PRACK", "SUBSCRIBE",
        "NOTIFY", "PUBLISH", "INFO", "REFER", "MESSAGE", "UPDATE",
    }
)  # fmt: skip
# Screening costs single-digit µs (DESIGN.md target p99 < 5 µs); buckets from 1 µs to 10 ms
# so both the normal case and a pathological stall are visible.
SCREEN_LATENCY_BUCKETS_S = (
    1e-6, 2e-6, 3e-6, 5e-6, 7.5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 1e-3, 1e-2,
)  # fmt: skip
_MIN_STATUS, _MAX_STATUS = 100, 699  # RFC 3261 §7.2: status codes are 1xx-6xx


def method_label(method: str | None) -> str:
    if method is None:
        return ""
    return method if method in KNOWN_METHODS else "other"


def status_label(status: int | None) -> str:
    if status is None:
        return ""
    return str(status) if _MIN_STATUS <= status <= _MAX_STATUS else "other"


class FollowerStatusLike(Protocol):
    """The fields of `sync.FollowerStatus` the gateway reads (it never imports sync)."""

    @property
    def applied_version(self) -> int: ...
    @property
    def hub_version(self) -> int | None: ...
    @property
    def lag_versions(self) -> int | None: ...
    @property
    def lag_seconds(self) -> float | None: ...
    @property
    def reconnects(self) -> int: ...
    @property
    def resyncs(self) -> int: ...
    @property
    def last_sync_unix(self) -> float | None: ...
    @property
    def connected(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class ListView:
    """What the list collector reports, computed by the app at scrape time."""

    entries: int
    version: int
    age_s: float  # since the list was last known current (loaded, swapped or synced)


class _ScrapeCollector(Collector):
    """Reads the list and follower status when Prometheus scrapes."""

    def __init__(
        self,
        list_view: Callable[[], ListView],
        follower: Callable[[], FollowerStatusLike | None],
    ) -> None:
        self._list_view = list_view
        self._follower = follower

    def collect(self) -> Iterator[Metric]:
        view = self._list_view()
        yield GaugeMetricFamily(
            "upcs_blocklist_entries", "Barred numbers in the list in force.", value=view.entries
        )
        yield GaugeMetricFamily(
            "upcs_blocklist_version", "Version of the list in force.", value=view.version
        )
        yield GaugeMetricFamily(
            "upcs_blocklist_age_seconds",
            "Seconds since the list in force was last known current.",
            value=view.age_s,
        )
        status = self._follower()
        if status is None:
            return
        yield GaugeMetricFamily(
            "upcs_sync_applied_version",
            "List version the follower has applied.",
            value=status.applied_version,
        )
        if status.hub_version is not None:
            yield GaugeMetricFamily(
                "upcs_sync_hub_version", "Latest list version seen at the hub.",
                value=status.hub_version,
            )  # fmt: skip
        if status.lag_versions is not None:
            yield GaugeMetricFamily(
                "upcs_sync_lag_versions", "Versions the follower is behind the hub.",
                value=status.lag_versions,
            )  # fmt: skip
        if status.lag_seconds is not None:
            yield GaugeMetricFamily(
                "upcs_sync_lag_seconds", "Seconds the follower is behind the hub.",
                value=status.lag_seconds,
            )  # fmt: skip
        yield CounterMetricFamily(
            "upcs_sync_reconnects", "Follower reconnects to Redis.", value=status.reconnects
        )
        yield CounterMetricFamily(
            "upcs_sync_resyncs", "Follower full resyncs from the hub snapshot.",
            value=status.resyncs,
        )  # fmt: skip
        if status.last_sync_unix is not None:
            yield GaugeMetricFamily(
                "upcs_sync_last_sync_timestamp_seconds",
                "Unix time of the follower's last successful sync.",
                value=status.last_sync_unix,
            )
        yield GaugeMetricFamily(
            "upcs_sync_connected", "1 while the follower is connected to its source.",
            value=1.0 if status.connected else 0.0,
        )  # fmt: skip


class GatewayMetrics:
    """All gateway metrics on one private registry; label children cached for the hot path."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.calls_screened = Counter(
            "upcs_calls_screened", "Requests screened, by verdict and method.",
            ["verdict", "method"], registry=r,
        )  # fmt: skip
        self.messages_in = Counter(
            "upcs_sip_messages_received", "SIP messages received (method for requests, "
            "status for responses).", ["transport", "method", "status"], registry=r,
        )  # fmt: skip
        self.messages_out = Counter(
            "upcs_sip_messages_sent", "SIP messages sent.", ["method", "status"], registry=r
        )
        self.parse_errors = Counter(
            "upcs_sip_parse_errors", "Messages that could not be parsed, by answer status "
            "(empty: dropped unanswered).", ["status"], registry=r,
        )  # fmt: skip
        self.refused = Counter(
            "upcs_sip_refused", "Requests refused by the gateway, by reason and status.",
            ["why", "status"], registry=r,
        )  # fmt: skip
        self.timeouts = Counter(
            "upcs_sip_transaction_timeouts", "Transactions ended by a timer (B, C or F).",
            ["timer"], registry=r,
        )  # fmt: skip
        self.active_transactions = Gauge(
            "upcs_sip_active_transactions", "Transactions held by the proxy core.", registry=r
        )
        self.screen_latency = Histogram(
            "upcs_screen_latency_seconds", "Time to screen one dial string.",
            buckets=SCREEN_LATENCY_BUCKETS_S, registry=r,
        )  # fmt: skip
        self.overload_shed = Counter(
            "upcs_overload_shed", "New INVITEs answered 503 because the gateway was overloaded.",
            registry=r,
        )  # fmt: skip
        self.transport_errors = Counter(
            "upcs_transport_errors", "Socket-level send or receive failures.",
            ["transport", "kind"], registry=r,
        )  # fmt: skip
        self.tcp_connections = Gauge(
            "upcs_tcp_connections", "Open SIP TCP connections.", registry=r
        )
        self.attempts_reported = Counter(
            "upcs_attempts_reported", "Blocked dials written to the attempts stream.", registry=r
        )
        self.attempts_dropped = Counter(
            "upcs_attempts_dropped", "Blocked dials not reported (queue full or Redis down).",
            ["reason"], registry=r,
        )  # fmt: skip
        self.ready = Gauge("upcs_ready", "1 while /readyz answers 200.", registry=r)
        self.draining = Gauge("upcs_draining", "1 once a graceful shutdown began.", registry=r)
        for verdict in ("allowed", "blocked", "invalid"):  # visible at 0 before the first call
            self.calls_screened.labels(verdict, "INVITE")
        self._in: dict[tuple[str, str | None, int | None], Counter] = {}
        self._out: dict[tuple[str | None, int | None], Counter] = {}
        self._screened: dict[tuple[str, str], Counter] = {}

    def add_scrape_collector(
        self,
        list_view: Callable[[], ListView],
        follower: Callable[[], FollowerStatusLike | None],
    ) -> None:
        self.registry.register(_ScrapeCollector(list_view, follower))

    # -- hot path: cached label children ------------------------------------------------------

    def message_in(self, transport: str, method: str | None, status: int | None) -> None:
        key = (transport, method, status)
        child = self._in.get(key)
        if child is None:
            child = self.messages_in.labels(transport, method_label(method), status_label(status))
            if len(self._in) < 1024:  # bounded: labels are already bounded, this is belt and braces
                self._in[key] = child
        child.inc()

    def message_out(self, method: str | None, status: int | None) -> None:
        key = (method, status)
        child = self._out.get(key)
        if child is None:
            child = self.messages_out.labels(method_label(method), status_label(status))
            if len(self._out) < 1024:
                self._out[key] = child
        child.inc()

    def screened(self, verdict: str, method: str) -> None:
        key = (verdict, method)
        child = self._screened.get(key)
        if child is None:
            v = verdict if verdict in ("allowed", "blocked", "invalid") else "invalid"
            child = self.calls_screened.labels(v, method_label(method))
            if len(self._screened) < 256:
                self._screened[key] = child
        child.inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
