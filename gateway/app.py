"""Wiring: the list, the screener, the proxy core, its transports, metrics, signals and drain.

The gateway never imports `sync` or `hub` (DESIGN.md "Components"): the list follower is handed in
by `upcs/cli_gateway.py` as a factory that takes the `ListHolder` and returns an object with
`async run()` and `status()`. The attempts reporter is handed in the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import ipaddress
import logging
import signal
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from blocklist import DialPlan, ListHolder, ListSnapshot, Screener, SnapshotFileError, read_snapshot
from gateway.attempts import AttemptReporter
from gateway.http import MetricsHttpServer
from gateway.logs import NumberTagger, log_event
from gateway.metrics import FollowerStatusLike, GatewayMetrics, ListView
from gateway.observe import EventObserver, TimedScreen
from gateway.settings import GatewaySettings
from gateway.sip import ProxyConfig, ProxyCore, SipError, StreamFramer
from gateway.transport.driver import CoreDriver
from gateway.transport.endpoint import Endpoint
from gateway.transport.overload import (
    SHED_MIN_CPU_SHARE,
    SHED_TAG,
    SHED_WINDOW_S,
    LoadMeter,
    RecentInvites,
    shed_response,
    udp_backlog_bytes,
)
from gateway.transport.tcp import TcpTransport
from gateway.transport.udp import UdpListener, UdpSenders

__all__ = [
    "GC_THRESHOLDS",
    "Follower",
    "Gateway",
    "GatewayStartError",
    "load_initial_snapshot",
    "settle_heap",
]

_log = logging.getLogger("upcs.gateway")
_SHED_TAG_BYTES = f";tag={SHED_TAG}".encode()
DRAIN_POLL_S = 0.05  # how often the drain checks whether in-flight transactions have ended
FOLLOWER_STOP_TIMEOUT_S = 10.0  # the follower persists its snapshot on the way out: allow a write
ATTEMPTS_FLUSH_TIMEOUT_S = 2.0  # queued attempt reports get this long to reach Redis at shutdown
# The cyclic collector's thresholds while serving: CPython's (700, 10, 10), but a full collection
# is considered only after 100 middle ones instead of 10. Every call leaves transactions behind
# for 32 s (RFC 3261 Timers J, L, M; RFC 6026), so under load the heap grows for half a minute
# and each full collection walks all of it while every call in flight waits: bench.sip_core,
# 60,000 calls at 2,000/s, saw 10 full collections (1.7 s, the longest 332 ms) with the
# default and 1 (266 ms) with this. Reference counting frees what a finished call leaves (the
# core breaks its own cycles); only cyclic garbage waits longer for a full collection.
GC_THRESHOLDS = (700, 10, 100)


class GatewayStartError(RuntimeError):
    """The gateway cannot start (bad snapshot, port in use...); the message says what and where."""


class Follower(Protocol):
    """What the gateway needs of `sync.RedisFollower` / `sync.SnapshotFileFollower`."""

    async def run(self) -> None: ...
    def status(self) -> FollowerStatusLike: ...


def load_initial_snapshot(path: Path | None, allow_empty: bool) -> ListSnapshot:
    """The list to start with; refuses to start on a missing or damaged file unless told."""
    if path is None or not path.exists():
        if allow_empty:
            return ListSnapshot.empty()
        where = "no --snapshot given" if path is None else f"{path}: no such snapshot file"
        raise GatewayStartError(f"{where}; refusing to start unscreened (use --allow-empty)")
    try:
        return read_snapshot(path)
    except SnapshotFileError as exc:
        if allow_empty:
            raise GatewayStartError(f"{exc} (--allow-empty does not cover damage)") from None
        raise GatewayStartError(str(exc)) from None
    except OSError as exc:
        raise GatewayStartError(f"{path}: cannot read snapshot: {exc.strerror}") from None


def settle_heap() -> None:
    """Call once start-up is done. What is loaded by then (modules, phonenumbers' metadata, the
    list) lives as long as the process: take it out of the cyclic collector's sight (gc.freeze)
    so collections only walk what calls allocate, and set GC_THRESHOLDS."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def _is_wildcard(host: str) -> bool:
    with contextlib.suppress(ValueError):
        return ipaddress.ip_address(host).is_unspecified
    return False


async def _resolve(host: str) -> str:
    """An IP literal for `host`: sending to a name would resolve it on every datagram."""
    with contextlib.suppress(ValueError):
        return str(ipaddress.ip_address(host))
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_DGRAM)
    except OSError as exc:
        raise GatewayStartError(f"cannot resolve upstream host {host!r}: {exc}") from None
    return str(infos[0][4][0])


def _core_kwargs(s: GatewaySettings) -> dict[str, Any]:
    """Settings passed to the core only when set, so its own defaults stay the defaults."""
    out: dict[str, Any] = {k: float(v) for k, v in s.timers_s.items()}
    if s.max_transactions is not None:
        out["max_transactions"] = s.max_transactions
    return out


@dataclass
class _State:
    started: bool = False
    draining: bool = False
    follower_error: str | None = None
    list_current_unix: float = 0.0  # last load or swap, when the follower reports no sync time


class Gateway:
    """One gateway process: `await start()`, then `await serve()` until a signal, or `stop()`."""

    def __init__(
        self,
        settings: GatewaySettings,
        plan: DialPlan,
        snapshot: ListSnapshot,
        *,
        follower_factory: Callable[[ListHolder], Follower] | None = None,
        reporter: AttemptReporter | None = None,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics or GatewayMetrics()
        self.holder = ListHolder(snapshot)
        self.screener = Screener(plan, self.holder)
        self._screen = TimedScreen(self.screener, self.metrics)
        self._follower = follower_factory(self.holder) if follower_factory else None
        self._reporter = reporter
        self._state = _State(list_current_unix=time.time())
        self.holder.on_swap(self._on_swap)
        self._observer = EventObserver(
            self.metrics, self._screen, NumberTagger(settings.log_key), reporter
        )
        self._udp: list[UdpListener] = []
        self._tcp: TcpTransport | None = None
        self._http: MetricsHttpServer | None = None
        self._driver: CoreDriver | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._listeners: list[Callable[[Sequence[Any]], None]] = []
        self._senders: dict[str, Callable[[bytes, tuple[str, int]], None]] = {}
        self._meter = LoadMeter(high_bytes=max(1, settings.shed_backlog_bytes))
        self._recent = RecentInvites()  # INVITEs handed to the core
        self._refused = RecentInvites()  # INVITEs shed with 503
        self._stop = asyncio.Event()
        self._hurry = asyncio.Event()
        self.metrics.add_scrape_collector(self._list_view, self._follower_status)

    # -- observation ------------------------------------------------------------------------

    def add_event_listener(self, listener: Callable[[Sequence[Any]], None]) -> None:
        """Also pass the core's events to `listener` (the demo prints verdicts this way)."""
        self._listeners.append(listener)

    def _on_events(self, events: Sequence[Any]) -> None:
        self._observer(events)
        for listener in self._listeners:
            listener(events)

    def _on_swap(self, snap: ListSnapshot) -> None:
        self._state.list_current_unix = time.time()
        log_event(_log, logging.INFO, "list_swapped", version=snap.version, entries=len(snap))

    def _follower_status(self) -> FollowerStatusLike | None:
        return self._follower.status() if self._follower is not None else None

    def list_age_s(self) -> float:
        status = self._follower_status()
        last = self._state.list_current_unix
        if status is not None and status.last_sync_unix is not None:
            last = max(last, status.last_sync_unix)
        return max(0.0, time.time() - last)

    def _list_view(self) -> ListView:
        snap = self.holder.current
        return ListView(entries=len(snap), version=snap.version, age_s=self.list_age_s())

    def readiness(self) -> tuple[bool, str]:
        s = self._state
        if not s.started:
            why = "starting"
        elif s.draining:
            why = "draining"
        elif s.follower_error is not None:
            why = f"list follower stopped: {s.follower_error}"
        elif len(self.holder.current) == 0 and not self.settings.allow_empty:
            why = "no list loaded"
        elif (limit := self.settings.max_list_age_s) is not None and self.list_age_s() > limit:
            why = f"list stale: {self.list_age_s():.0f} s old, limit {limit:.0f} s"
        else:
            self.metrics.ready.set(1)
            return True, "ready"
        self.metrics.ready.set(0)
        return False, why

    def _render_metrics(self) -> bytes:
        if self._driver is not None:
            self.metrics.active_transactions.set(self._driver.core.active_transactions)
        self.readiness()
        return self.metrics.render()

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def udp_addresses(self) -> list[tuple[str, int]]:
        return [x.bound for x in self._udp]

    @property
    def tcp_addresses(self) -> list[tuple[str, int]]:
        return list(self._tcp.bound) if self._tcp is not None else []

    @property
    def metrics_port(self) -> int | None:
        return self._http.port if self._http is not None else None

    @property
    def load_meter(self) -> LoadMeter:
        """The overload meter (fed by the backlog watch; exposed for operators' tools and tests)."""
        return self._meter

    @property
    def active_transactions(self) -> int:
        return self._driver.core.active_transactions if self._driver is not None else 0

    async def start(self) -> None:
        """Bind everything; raises GatewayStartError with a clear message on failure."""
        try:
            await self._start()
        except OSError as exc:
            await self._close_transports()
            raise GatewayStartError(f"cannot bind: {exc.strerror or exc}") from None
        except BaseException:
            await self._close_transports()
            raise
        self._state.started = True
        log_event(
            _log, logging.INFO, "gateway_started",
            udp=",".join(f"{h}:{p}" for h, p in self.udp_addresses) or None,
            tcp=",".join(f"{h}:{p}" for h, p in self.tcp_addresses) or None,
            upstream=str(self.settings.upstream), metrics_port=self.metrics_port,
            entries=len(self.holder.current), version=self.holder.current.version,
        )  # fmt: skip

    async def _start(self) -> None:
        s = self.settings
        loop = asyncio.get_running_loop()
        upstream_host = await _resolve(s.upstream.host)
        metrics = self.metrics
        receive = self._receive

        def on_udp_error(kind: str) -> None:
            metrics.transport_errors.labels("udp", kind).inc()

        def on_tcp_error(kind: str) -> None:
            metrics.transport_errors.labels("tcp", kind).inc()

        udp_eps = [ep for ep in s.listen if ep.transport == "udp"]
        if s.worker_index is not None and udp_eps:
            # One of several workers: a private port first, so it is our Via / Record-Route
            # port and our source port, and the trunk's answers come back here (gateway/workers).
            own = UdpListener(Endpoint("udp", udp_eps[0].host, 0), receive, on_udp_error)
            await own.start()
            self._udp.append(own)
        for ep in udp_eps:
            listener = UdpListener(ep, receive, on_udp_error, reuse_port=s.workers > 1)
            await listener.start()
            self._udp.append(listener)
        tcp_eps = [ep for ep in s.listen if ep.transport == "tcp"]
        if tcp_eps or s.upstream.transport == "tcp":
            self._tcp = TcpTransport(
                receive, StreamFramer, SipError, on_tcp_error, metrics.tcp_connections.set
            )
            for ep in tcp_eps:
                await self._tcp.listen(ep, reuse_port=s.workers > 1)
        local = self._local_address()
        # The trunk answers, and sends in-dialog requests, to our Via / Record-Route address over
        # its own transport (RFC 3261 §18.2.2, §16.6 step 4): listen there on that transport too.
        bind_host = self._listen_host()
        if s.upstream.transport == "udp" and not self._udp:
            extra = UdpListener(Endpoint("udp", bind_host, local[1]), receive, on_udp_error)
            await extra.start()
            self._udp.append(extra)
        elif s.upstream.transport == "tcp" and self._tcp is not None and not self._tcp.bound:
            await self._tcp.listen(Endpoint("tcp", bind_host, local[1]))
        config = ProxyConfig(
            upstream=(s.upstream.transport, upstream_host, s.upstream.port),
            local_host=local[0],
            local_port=local[1],
            allow_from=s.allow_from,
            refusal_status=s.refusal_status,
            refusal_reason=s.refusal_reason,
            record_route=s.record_route,
            retry_after_s=s.retry_after_s,
            **_core_kwargs(s),
        )
        core = ProxyCore(config, self._screen)
        self._driver = CoreDriver(
            core, loop, self._on_events, lambda t: on_udp_error("unroutable_" + t)
        )
        if self._udp:
            self._senders["udp"] = UdpSenders(self._udp, on_udp_error).send
        if self._tcp is not None:
            self._senders["tcp"] = self._tcp.send
        for name, send in self._senders.items():
            self._driver.register_sender(name, send)
        if s.metrics is not None:
            self._http = MetricsHttpServer(
                s.metrics[0], s.metrics[1], self._render_metrics, self.readiness
            )
            await self._http.start()
        if self._follower is not None:
            self._tasks.append(asyncio.create_task(self._run_follower(), name="list-follower"))
        if s.shed_backlog_bytes > 0 and self._udp:
            self._tasks.append(asyncio.create_task(self._watch_overload(), name="overload-watch"))
        if self._reporter is not None:
            self._tasks.append(asyncio.create_task(self._reporter.run(), name="attempts"))

    def _listen_host(self) -> str:
        if self._udp:
            return self._udp[0].bound[0]
        if self._tcp is not None and self._tcp.bound:
            return self._tcp.bound[0][0]
        raise GatewayStartError("no --listen address given")

    def _local_address(self) -> tuple[str, int]:
        """Host and port for our Via and Record-Route: the first listener, or --advertise."""
        if self._udp:
            host, port = self._udp[0].bound
        elif self._tcp is not None and self._tcp.bound:
            host, port = self._tcp.bound[0]
        else:
            raise GatewayStartError("no --listen address given")
        if self.settings.advertise_host:
            return self.settings.advertise_host, port
        if _is_wildcard(host):
            raise GatewayStartError(
                f"listening on wildcard {host}: set advertise_host in [gateway] (or --advertise)"
                " to the address the PBX and trunk reach this gateway at"
            )
        return host, port

    def _receive(self, data: bytes, transport: str, source: tuple[str, int]) -> None:
        driver = self._driver
        if driver is None:
            return
        if data.startswith(b"ACK ") and self._refused and _SHED_TAG_BYTES in data:
            return  # the ACK for one of our 503s ends here (RFC 3261 §17.1.1.3: hop by hop)
        if data.startswith(b"INVITE "):
            now = time.monotonic()
            refused = self._refused
            # A refused INVITE stays refused: its retransmissions get the 503 again, never the
            # core (the PBX has ACKed the 503 and ended the call, RFC 3261 §17.1.1.3).
            if data in refused:
                self._shed(data, transport, source)
                return
            meter = self._meter
            if (
                meter.overloaded
                and data not in self._recent
                and meter.should_shed()
                and self._shed(data, transport, source)
            ):
                refused.add(data, now)
                return
            self._recent.add(data, now)
        driver.receive(data, transport, source)

    async def _watch_overload(self) -> None:
        """Read the UDP receive backlog every window and steer the shedding ratio."""
        inodes = {x.inode for x in self._udp}
        meter = self._meter
        loop = asyncio.get_running_loop()
        cpu0, wall0 = time.process_time(), loop.time()
        while True:
            await asyncio.sleep(SHED_WINDOW_S)
            backlog = udp_backlog_bytes(inodes)  # one small /proc read, ~50 µs
            if backlog is None:
                log_event(
                    _log, logging.WARNING, "overload_watch_unavailable", source="/proc/net/udp"
                )
                return
            cpu1, wall1 = time.process_time(), loop.time()
            cpu_share = (cpu1 - cpu0) / max(wall1 - wall0, 1e-6)
            cpu0, wall0 = cpu1, wall1
            # A backlog while this process is not using its CPU means the machine, not the
            # gateway, is the bottleneck: refusing calls would not drain it (measured).
            if cpu_share < SHED_MIN_CPU_SHARE:
                backlog = min(backlog, meter.last_backlog)
            if meter.update(backlog):
                log_event(
                    _log, logging.WARNING,
                    "overload_started" if meter.overloaded else "overload_ended",
                    backlog_bytes=backlog, shed_ratio=round(meter.shed_ratio, 2),
                    cpu_share=round(cpu_share, 2),
                )  # fmt: skip

    def _shed(self, data: bytes, transport: str, source: tuple[str, int]) -> bool:
        """Refuse a new INVITE 503 + Retry-After without involving the core (overload.py)."""
        shed = shed_response(data, self.settings.retry_after_s)
        send = self._senders.get(transport)
        if shed is None or send is None:
            return False
        response, call_id = shed
        send(response, source)
        self.metrics.overload_shed.inc()
        self.metrics.refused.inc(("overload", 503))
        log_event(_log, logging.DEBUG, "sip_shed", call_id=call_id, why="overload")
        return True

    async def _run_follower(self) -> None:
        assert self._follower is not None
        try:
            await self._follower.run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # Calls keep being screened against the last list; /readyz tells the operator.
            self._state.follower_error = type(exc).__name__
            log_event(_log, logging.ERROR, "list_follower_failed", error=repr(exc)[:200])

    def request_stop(self, *, hurry: bool = False) -> None:
        """Begin the graceful shutdown (what SIGTERM/SIGINT do); a second request hurries it."""
        if self._stop.is_set() or hurry:
            self._hurry.set()
        self._stop.set()

    async def serve(self, *, install_signals: bool = True) -> None:
        """Serve until SIGTERM/SIGINT (or `request_stop()`), then drain and close."""
        loop = asyncio.get_running_loop()
        installed: list[signal.Signals] = []
        if install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.add_signal_handler(sig, self.request_stop)
                    installed.append(sig)
        try:
            await self._stop.wait()
            await self.shutdown()
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)

    async def shutdown(self) -> None:
        """Drain: new INVITEs get 503 + Retry-After; wait (bounded) for in-flight transactions."""
        s = self.settings
        if self._state.draining:
            return
        self._state.draining = True
        self.metrics.draining.set(1)
        self.metrics.ready.set(0)
        driver = self._driver
        if driver is not None:
            driver.drain(s.retry_after_s)
            start = time.monotonic()
            log_event(
                _log, logging.INFO, "gateway_draining",
                in_flight=driver.core.active_transactions, timeout_s=s.drain_timeout_s,
            )  # fmt: skip
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(s.drain_timeout_s):
                    # The core is sans-I/O and signals nothing: poll its counter.
                    while driver.core.active_transactions > 0 and not self._hurry.is_set():  # noqa: ASYNC110
                        await asyncio.sleep(DRAIN_POLL_S)
            log_event(
                _log, logging.INFO, "gateway_drained",
                left=driver.core.active_transactions, took_s=round(time.monotonic() - start, 3),
            )  # fmt: skip
        await self._close_transports()
        await self._stop_tasks()
        log_event(_log, logging.INFO, "gateway_stopped")

    async def _close_transports(self) -> None:
        for listener in self._udp:
            listener.close()
        if self._tcp is not None:
            await self._tcp.aclose()
        if self._driver is not None:
            self._driver.close()
        if self._http is not None:
            await self._http.aclose()

    async def _stop_tasks(self) -> None:
        if self._reporter is not None:
            await self._reporter.flush(ATTEMPTS_FLUSH_TIMEOUT_S)
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            # The follower persists its snapshot and closes Redis on the way out: let it finish.
            await asyncio.wait(self._tasks, timeout=FOLLOWER_STOP_TIMEOUT_S)
        self._tasks.clear()
        if self._reporter is not None:
            await self._reporter.aclose()
