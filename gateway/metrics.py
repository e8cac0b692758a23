"""Every gateway metric, declared in this one module on a private registry (STYLE.md rule 9).

Names are prefixed `upcs_`. Labels carry methods, statuses, verdicts and reasons only: never a
number or an address (safety invariant 4). Values that live elsewhere (the list in the holder,
the follower's status) are read at scrape time by a collector, so they are never stale and the
call path never pays for them.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

__all__ = [
    "KNOWN_METHODS",
    "SCREEN_LATENCY_BUCKETS_S",
    "FastHistogram",
    "FollowerStatusLike",
    "GatewayMetrics",
    "HotCounter",
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
_MIN_STATUS, _MAX_STATUS = 100, 699
VERDICTS = ("allowed", "blocked", "invalid")
# Refusal reasons the core names (gateway/sip/events.py Refused.why); others count as "other".
REFUSAL_REASONS = frozenset(
    {"screen", "allow_from", "trunk_unsolicited", "draining", "overload", "register"}
)  # RFC 3261 §7.2: status codes are 1xx-6xx


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


class HotCounter:
    """A labelled counter for the event loop's hot path: a plain dict of ints, no lock.

    The gateway counts from one thread (its event loop), so prometheus_client's per-sample lock
    and label validation (~1-3 µs each, several per message) buy nothing here. Keys are the raw
    values; `normalise` maps them to label values at scrape time. New keys beyond `max_keys` are
    counted under `overflow_key` so a peer inventing methods cannot grow memory.
    """

    __slots__ = ("counts", "doc", "labelnames", "max_keys", "name", "normalise", "overflow_key")

    def __init__(
        self,
        name: str,
        doc: str,
        labelnames: tuple[str, ...],
        normalise: Callable[[tuple[Any, ...]], tuple[str, ...]],
        max_keys: int = 1024,
    ) -> None:
        self.name = name
        self.doc = doc
        self.labelnames = labelnames
        self.normalise = normalise
        self.max_keys = max_keys
        self.overflow_key: tuple[Any, ...] = ("other",) * len(labelnames)
        self.counts: dict[tuple[Any, ...], int] = {}

    def inc(self, key: tuple[Any, ...]) -> None:
        counts = self.counts
        if key in counts:
            counts[key] += 1
        elif len(counts) < self.max_keys:
            counts[key] = 1
        else:
            counts[self.overflow_key] = counts.get(self.overflow_key, 0) + 1

    def value(self, **labels: str) -> int:
        """Sum over samples whose labels include `labels` (for tests and the demo)."""
        total = 0
        for key, n in self.counts.items():
            got = dict(zip(self.labelnames, self.normalise(key), strict=True))
            if all(got.get(k) == v for k, v in labels.items()):
                total += n
        return total

    def family(self) -> CounterMetricFamily:
        merged: dict[tuple[str, ...], int] = {}
        for key, n in self.counts.items():
            labels = self.normalise(key) if key != self.overflow_key else key
            merged[labels] = merged.get(labels, 0) + n
        fam = CounterMetricFamily(self.name, self.doc, labels=self.labelnames)
        for labels, n in sorted(merged.items()):
            fam.add_metric(labels, n)
        return fam


class FastHistogram:
    """A histogram for the hot path (one bisect and two additions per observation, no lock)."""

    __slots__ = ("bounds", "counts", "doc", "name", "total")

    def __init__(self, name: str, doc: str, bounds: tuple[float, ...]) -> None:
        self.name = name
        self.doc = doc
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # last: above every bound (+Inf)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def family(self) -> HistogramMetricFamily:
        buckets: list[tuple[str, float]] = []
        running = 0
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += n
            # repr() of these bounds is what prometheus_client writes for `le` ("1e-06", "0.01").
            buckets.append(("+Inf" if bound == float("inf") else repr(float(bound)), running))
        return HistogramMetricFamily(self.name, self.doc, buckets=buckets, sum_value=self.total)


def _verdict_method(key: tuple[Any, ...]) -> tuple[str, ...]:
    verdict, method = key
    return (verdict if verdict in VERDICTS else "invalid", method_label(method))


def _transport_method_status(key: tuple[Any, ...]) -> tuple[str, ...]:
    transport, method, status = key
    return (transport if transport in ("udp", "tcp") else "other", method_label(method),
            status_label(status))  # fmt: skip


def _method_status(key: tuple[Any, ...]) -> tuple[str, ...]:
    return (method_label(key[0]), status_label(key[1]))


def _why_status(key: tuple[Any, ...]) -> tuple[str, ...]:
    why, status = key
    return (why if why in REFUSAL_REASONS else "other", status_label(status))


def _status(key: tuple[Any, ...]) -> tuple[str, ...]:
    return (status_label(key[0]),)


def _timer(key: tuple[Any, ...]) -> tuple[str, ...]:
    return (key[0] if key[0] in ("B", "C", "F") else "other",)


class _HotCollector(Collector):
    def __init__(self, metrics: GatewayMetrics) -> None:
        self._m = metrics

    def collect(self) -> Iterator[Metric]:
        m = self._m
        for counter in m.hot_counters:
            yield counter.family()
        yield m.screen_latency.family()


class GatewayMetrics:
    """All gateway metrics on one private registry.

    Per-message metrics are `HotCounter`/`FastHistogram` (exported by a collector at scrape
    time); rare events use prometheus_client's own types.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.calls_screened = HotCounter(
            "upcs_calls_screened", "Requests screened, by verdict and method.",
            ("verdict", "method"), _verdict_method,
        )  # fmt: skip
        for verdict in VERDICTS:  # visible at 0 before the first call
            self.calls_screened.counts[(verdict, "INVITE")] = 0
        self.messages_in = HotCounter(
            "upcs_sip_messages_received", "SIP messages received (method for requests, "
            "status for responses).", ("transport", "method", "status"), _transport_method_status,
        )  # fmt: skip
        self.messages_out = HotCounter(
            "upcs_sip_messages_sent", "SIP messages sent.", ("method", "status"), _method_status
        )
        self.parse_errors = HotCounter(
            "upcs_sip_parse_errors", "Messages that could not be parsed, by answer status "
            "(empty: dropped unanswered).", ("status",), _status,
        )  # fmt: skip
        self.refused = HotCounter(
            "upcs_sip_refused", "Requests refused by the gateway, by reason and status.",
            ("why", "status"), _why_status,
        )  # fmt: skip
        self.timeouts = HotCounter(
            "upcs_sip_transaction_timeouts", "Transactions ended by a timer (B, C or F).",
            ("timer",), _timer,
        )  # fmt: skip
        self.hot_counters = (
            self.calls_screened, self.messages_in, self.messages_out, self.parse_errors,
            self.refused, self.timeouts,
        )  # fmt: skip
        self.screen_latency = FastHistogram(
            "upcs_screen_latency_seconds", "Time to screen one dial string.",
            SCREEN_LATENCY_BUCKETS_S,
        )  # fmt: skip
        r.register(_HotCollector(self))
        self.active_transactions = Gauge(
            "upcs_sip_active_transactions", "Transactions held by the proxy core.", registry=r
        )
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

    def add_scrape_collector(
        self,
        list_view: Callable[[], ListView],
        follower: Callable[[], FollowerStatusLike | None],
    ) -> None:
        self.registry.register(_ScrapeCollector(list_view, follower))

    def render(self) -> bytes:
        return generate_latest(self.registry)
