"""Resolve `upcs gateway run` settings: flags over the `[gateway]` config section over defaults.

Kept apart from the Typer command so the precedence rules are plain functions with plain errors:
`UsageError(flag_or_key, message)` becomes exit 2 naming the flag or key.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.settings import DEFAULT_ALLOW_FROM, GatewaySettings, Network
from gateway.transport.endpoint import Endpoint, EndpointError, parse_endpoint, parse_network

__all__ = ["GATEWAY_KEYS", "CliGatewayArgs", "UsageError", "parse_hostport", "resolve_settings"]

# [gateway] keys and what they set. Flags of the same meaning override them.
GATEWAY_KEYS = frozenset(
    {
        "snapshot", "listen", "upstream", "allow_from", "metrics", "record_route",
        "refusal_status", "refusal_reason", "workers", "max_list_age_s", "drain_timeout_s",
        "retry_after_s", "max_transactions", "allow_empty", "advertise_host", "redis", "site",
        "shed_backlog_bytes", "t1_s", "t2_s", "t4_s", "timer_c_s", "log_level",
    }
)  # fmt: skip
TIMER_KEYS = ("t1_s", "t2_s", "t4_s", "timer_c_s")
MAX_WORKERS = 64  # more processes than this is a typo, not a deployment
# RFC 3261 §21.4 / §21.5: a refusal must be a 4xx-6xx final status.
MIN_REFUSAL_STATUS, MAX_REFUSAL_STATUS = 400, 699


class UsageError(ValueError):
    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}")
        self.where = where
        self.message = message


@dataclass(frozen=True)
class CliGatewayArgs:
    """Raw flag values; None means "not given on the command line"."""

    snapshot: Path | None = None
    listen: Sequence[str] = ()
    upstream: str | None = None
    allow_from: Sequence[str] = ()
    metrics: str | None = None
    redis: str | None = None
    site: str | None = None
    allow_empty: bool | None = None
    record_route: bool | None = None
    workers: int | None = None
    refusal_status: int | None = None
    max_list_age_s: float | None = None
    advertise_host: str | None = None


def parse_hostport(text: str, where: str) -> tuple[str, int]:
    try:
        ep = parse_endpoint(f"tcp:{text}")
    except EndpointError as exc:
        raise UsageError(where, f"{text!r} is not HOST:PORT ({exc})") from None
    return ep.host, ep.port


def _strings(value: Any, where: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(x, str) for x in value):
        return list(value)
    raise UsageError(where, "must be a string or a list of strings")


def _typed(section: Mapping[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    value = section.get(key)
    if value is None:
        return None
    if isinstance(value, bool) and kind is not bool:
        raise UsageError(f"[gateway] {key}", "must be a number, not true/false")
    if not isinstance(value, kind):
        want = kind.__name__ if isinstance(kind, type) else "a number"
        raise UsageError(f"[gateway] {key}", f"must be {want}, got {value!r}")
    return value


def resolve_settings(args: CliGatewayArgs, section: Mapping[str, Any]) -> GatewaySettings:
    unknown = sorted(set(section) - GATEWAY_KEYS)
    if unknown:
        raise UsageError("[gateway]", f"unknown key(s) {', '.join(unknown)}")

    def pick(flag_value: Any, key: str, kind: type | tuple[type, ...]) -> Any:
        return flag_value if flag_value is not None else _typed(section, key, kind)

    listen_src, listen_where = (args.listen, "--listen") if args.listen else (
        _strings(section.get("listen", []), "[gateway] listen"), "[gateway] listen"
    )  # fmt: skip
    if not listen_src:
        raise UsageError("--listen", "at least one udp:HOST:PORT or tcp:HOST:PORT is required")
    listen: list[Endpoint] = []
    for text in listen_src:
        try:
            listen.append(parse_endpoint(text))
        except EndpointError as exc:
            raise UsageError(listen_where, str(exc)) from None
    if len(set(listen)) != len(listen):
        raise UsageError(listen_where, "the same address is given twice")

    upstream_text = pick(args.upstream, "upstream", str)
    up_where = "--upstream" if args.upstream is not None else "[gateway] upstream"
    if upstream_text is None:
        raise UsageError("--upstream", "the carrier trunk udp:HOST:PORT is required")
    try:
        upstream = parse_endpoint(upstream_text, allow_port_zero=False)
    except EndpointError as exc:
        raise UsageError(up_where, str(exc)) from None

    allow_where = "--allow-from" if args.allow_from else "[gateway] allow_from"
    allow_src = list(args.allow_from) or _strings(section.get("allow_from", []), allow_where)
    allow: tuple[Network, ...] = DEFAULT_ALLOW_FROM
    if allow_src:
        try:
            allow = tuple(parse_network(x) for x in allow_src)
        except EndpointError as exc:
            raise UsageError(allow_where, str(exc)) from None

    metrics_text = pick(args.metrics, "metrics", str)
    metrics_where = "--metrics" if args.metrics is not None else "[gateway] metrics"
    metrics = parse_hostport(metrics_text, metrics_where) if metrics_text else None

    snapshot = args.snapshot
    if snapshot is None and (text := _typed(section, "snapshot", str)) is not None:
        snapshot = Path(text)
    allow_empty = bool(pick(args.allow_empty, "allow_empty", bool) or False)
    if snapshot is None and not allow_empty:
        raise UsageError("--snapshot", "a snapshot file is required (or --allow-empty)")

    record_route = pick(args.record_route, "record_route", bool)
    workers = pick(args.workers, "workers", int)
    workers = 1 if workers is None else workers
    if not 1 <= workers <= MAX_WORKERS:
        raise UsageError("--workers", f"must be 1 to {MAX_WORKERS}, got {workers}")
    refusal = pick(args.refusal_status, "refusal_status", int)
    refusal = 403 if refusal is None else refusal
    if not MIN_REFUSAL_STATUS <= refusal <= MAX_REFUSAL_STATUS:
        raise UsageError("--refusal-status", f"must be a 4xx-6xx status, got {refusal}")
    max_age = pick(args.max_list_age_s, "max_list_age_s", (int, float))
    if max_age is not None and max_age <= 0:
        raise UsageError("--max-list-age", "must be a positive number of seconds")

    redis_url = pick(args.redis, "redis", str)
    site = pick(args.site, "site", str)
    if redis_url is not None and not site:
        raise UsageError("--site", "--redis needs --site NAME (this prison's name at the hub)")
    if site is not None and redis_url is None:
        raise UsageError("--site", "only means something with --redis")

    timers: dict[str, float] = {}
    for key in TIMER_KEYS:
        value = _typed(section, key, (int, float))
        if value is not None:
            if value <= 0:
                raise UsageError(f"[gateway] {key}", "must be positive")
            timers[key] = float(value)

    extra: dict[str, Any] = {}
    for key, kind in (
        ("drain_timeout_s", (int, float)),
        ("retry_after_s", int),
        ("max_transactions", int),
        ("shed_backlog_bytes", int),
        ("refusal_reason", str),
    ):
        value = _typed(section, key, kind)
        if value is not None:
            extra[key] = value
    if extra.get("shed_backlog_bytes", 0) < 0:
        raise UsageError("[gateway] shed_backlog_bytes", "must be 0 (off) or a byte count")
    if extra.get("retry_after_s", 1) < 0 or extra.get("drain_timeout_s", 1) < 0:
        raise UsageError("[gateway]", "retry_after_s and drain_timeout_s must not be negative")

    return GatewaySettings(
        listen=tuple(listen),
        upstream=upstream,
        snapshot_path=snapshot,
        allow_from=allow,
        metrics=metrics,
        record_route=True if record_route is None else bool(record_route),
        refusal_status=refusal,
        workers=workers,
        max_list_age_s=None if max_age is None else float(max_age),
        allow_empty=allow_empty,
        advertise_host=pick(args.advertise_host, "advertise_host", str),
        redis_url=redis_url,
        site=site,
        timers_s=timers,
        **extra,
    )
