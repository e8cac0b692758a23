"""`upcs gateway run`: the screening gateway (DESIGN.md "Contracts").

This is where the layers meet: the gateway gets its list follower (`sync`) and its Redis client
from here, as objects, so `gateway` never imports `sync` (DESIGN.md "Components").
Exit codes: 0 after a clean shutdown, 1 on a runtime failure, 2 on a usage error.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any

import typer

from blocklist import DialPlan, ListHolder, ListSnapshot
from gateway.app import Follower, Gateway, GatewayStartError, load_initial_snapshot, settle_heap
from gateway.attempts import AttemptReporter, AttemptsConfig
from gateway.metrics import GatewayMetrics
from gateway.options import CliGatewayArgs, UsageError, resolve_settings
from gateway.settings import GatewaySettings
from upcs.config import ConfigError, UpcsConfig, load_config

__all__ = ["app", "run_event_loop", "setup_logging"]

app = typer.Typer(help="The SIP screening gateway.", no_args_is_help=True)
LOG_LEVELS = ("debug", "info", "warning", "error")
REDIS_SOCKET_TIMEOUT_S = 2.0  # attempts writes: a Redis slower than this counts as down


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )


def run_event_loop(main: Callable[[], Coroutine[Any, Any, int]]) -> int:
    """Run `main` on uvloop when installed (3-4x asyncio's datagram rate, issue 3), else asyncio."""
    try:
        import uvloop

        factory: Callable[[], asyncio.AbstractEventLoop] | None = uvloop.new_event_loop
    except ImportError:
        factory = None
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main())


def _usage(message: str) -> typer.Exit:
    typer.echo(f"Error: {message}", err=True)
    return typer.Exit(2)


def _runtime(message: str) -> typer.Exit:
    typer.echo(f"upcs gateway: {message}", err=True)
    return typer.Exit(1)


def _follower_factory(
    settings: GatewaySettings, cfg: UpcsConfig
) -> Callable[[ListHolder], Follower] | None:
    """The list follower: the hub over Redis, or the snapshot file (single-site default)."""
    import sync

    path = settings.snapshot_path
    if settings.redis_url is not None and settings.site is not None and path is not None:
        redis_url, site = settings.redis_url, settings.site
        follower_config = sync.FollowerConfig.from_section(cfg.section("sync"))

        def make_redis(holder: ListHolder) -> Follower:
            return sync.RedisFollower(redis_url, site, holder, path, follower_config)

        return make_redis
    if path is None:
        return None

    def make_file(holder: ListHolder) -> Follower:
        return sync.SnapshotFileFollower(path, holder)

    return make_file


def _reporter(settings: GatewaySettings, metrics: GatewayMetrics) -> AttemptReporter | None:
    if settings.redis_url is None or settings.site is None:
        return None
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(
        settings.redis_url,
        socket_timeout=REDIS_SOCKET_TIMEOUT_S,
        socket_connect_timeout=REDIS_SOCKET_TIMEOUT_S,
    )
    return AttemptReporter(
        client,
        AttemptsConfig(site=settings.site, key_prefix=settings.key_prefix),
        on_reported=metrics.attempts_reported.inc,
        on_dropped=lambda reason, n: metrics.attempts_dropped.labels(reason).inc(n),
    )


async def serve_gateway(
    settings: GatewaySettings,
    plan: DialPlan,
    snapshot: ListSnapshot,
    cfg: UpcsConfig,
    announce: Callable[[Gateway], None] | None = None,
) -> int:
    metrics = GatewayMetrics()
    gateway = Gateway(
        settings,
        plan,
        snapshot,
        follower_factory=_follower_factory(settings, cfg),
        reporter=_reporter(settings, metrics),
        metrics=metrics,
    )
    try:
        await gateway.start()
    except GatewayStartError:
        await gateway.shutdown()
        raise
    if announce is not None:
        announce(gateway)
    settle_heap()
    await gateway.serve()
    return 0


def _announce(gateway: Gateway) -> None:
    parts = [f"udp {h}:{p}" for h, p in gateway.udp_addresses]
    parts += [f"tcp {h}:{p}" for h, p in gateway.tcp_addresses]
    line = f"upcs gateway: listening on {', '.join(parts)}"
    if gateway.metrics_port is not None and gateway.settings.metrics is not None:
        host = gateway.settings.metrics[0]
        host = f"[{host}]" if ":" in host else host
        line += f"; metrics at http://{host}:{gateway.metrics_port}/metrics"
    typer.echo(line, err=True)


@app.command("run")
def run(  # noqa: PLR0917 - one parameter per flag is how Typer declares a command
    config: Annotated[
        Path | None, typer.Option("--config", help="TOML config file (default ./upcs.toml).")
    ] = None,
    snapshot: Annotated[
        Path | None, typer.Option("--snapshot", help="List snapshot file to screen against.")
    ] = None,
    listen: Annotated[
        list[str] | None,
        typer.Option("--listen", help="udp:HOST:PORT or tcp:HOST:PORT (repeat; IPv6 as [::1])."),
    ] = None,
    upstream: Annotated[
        str | None, typer.Option("--upstream", help="The carrier trunk, udp:HOST:PORT.")
    ] = None,
    allow_from: Annotated[
        list[str] | None,
        typer.Option("--allow-from", help="PBX source CIDR (repeat). Default: loopback only."),
    ] = None,
    metrics: Annotated[
        str | None, typer.Option("--metrics", help="HOST:PORT for /metrics, /healthz, /readyz.")
    ] = None,
    redis_url: Annotated[
        str | None, typer.Option("--redis", help="Hub Redis URL: follow the national list.")
    ] = None,
    site: Annotated[str | None, typer.Option("--site", help="This prison's name at the hub.")] = (
        None
    ),
    allow_empty: Annotated[
        bool | None,
        typer.Option("--allow-empty", help="Start with an empty list if there is no snapshot."),
    ] = None,
    record_route: Annotated[
        bool | None,
        typer.Option(
            "--record-route/--no-record-route",
            help="Stay in the dialog path (needed to screen in-dialog REFER). Default: on.",
        ),
    ] = None,
    workers: Annotated[
        int | None, typer.Option("--workers", help="Worker processes (SO_REUSEPORT). Default 1.")
    ] = None,
    refusal_status: Annotated[
        int | None, typer.Option("--refusal-status", help="Status for refused dials. Default 403.")
    ] = None,
    max_list_age: Annotated[
        float | None,
        typer.Option("--max-list-age", help="Seconds after which /readyz calls the list stale."),
    ] = None,
    advertise: Annotated[
        str | None,
        typer.Option("--advertise", help="Host for Via/Record-Route when listening on 0.0.0.0."),
    ] = None,
    log_level: Annotated[
        str | None, typer.Option("--log-level", help="debug, info, warning or error. Default info.")
    ] = None,
) -> None:
    """Screen every call from the PBX and forward only allowed ones to the trunk."""
    try:
        cfg = load_config(config)
    except ConfigError as exc:
        raise _usage(f"--config: {exc}") from None
    section = cfg.section("gateway")
    args = CliGatewayArgs(
        snapshot=snapshot,
        listen=listen or (),
        upstream=upstream,
        allow_from=allow_from or (),
        metrics=metrics,
        redis=redis_url,
        site=site,
        allow_empty=allow_empty,
        record_route=record_route,
        workers=workers,
        refusal_status=refusal_status,
        max_list_age_s=max_list_age,
        advertise_host=advertise,
    )
    try:
        settings = resolve_settings(args, section)
    except UsageError as exc:
        raise _usage(str(exc)) from None
    if settings.redis_url is not None:
        import sync

        try:
            # The attempts stream lives beside the list's keys: one prefix for both (interfaces.md).
            prefix = sync.FollowerConfig.from_section(cfg.section("sync")).sync.key_prefix
        except (sync.SyncConfigError, TypeError, ValueError) as exc:
            raise _usage(f"[sync]: {exc}") from None
        settings = dataclasses.replace(settings, key_prefix=prefix)
    level = (log_level or str(section.get("log_level", "info"))).lower()
    if level not in LOG_LEVELS:
        raise _usage(f"--log-level: {level!r} is not one of {', '.join(LOG_LEVELS)}")
    setup_logging(level)
    try:
        initial = load_initial_snapshot(settings.snapshot_path, settings.allow_empty)
    except GatewayStartError as exc:
        raise _runtime(str(exc)) from None
    if settings.workers > 1:
        from gateway.workers import run_workers

        code = run_workers(settings, lambda ws: _worker_main(ws, cfg, initial))
        raise typer.Exit(code)
    code = _worker_main(settings, cfg, initial)
    raise typer.Exit(code)


def _worker_main(settings: GatewaySettings, cfg: UpcsConfig, initial: ListSnapshot) -> int:
    try:
        return run_event_loop(
            lambda: serve_gateway(settings, cfg.dialplan, initial, cfg, _announce)
        )
    except GatewayStartError as exc:
        typer.echo(f"upcs gateway: {exc}", err=True)
        return 1
