"""`upcs sync ...`: publish changes and whole lists to the hub's Redis, and show every site.

Exit codes (DESIGN.md): 0 success, 1 runtime error (Redis unreachable, hub data damaged, a bad
snapshot file), 2 usage error (bad option, or a number that can never be barred: nothing is
published then). Numbers are never echoed back: a refusal names the argument's position.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import redis.asyncio as aioredis
import redis.exceptions
import typer
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from blocklist import IntakeError, SnapshotFileError, canonicalise, read_snapshot
from sync import (
    Change,
    HubStatus,
    Publisher,
    PublishError,
    SyncConfig,
    SyncConfigError,
    SyncError,
    WireError,
    read_hub_status,
)
from sync.redisio import REDIS_ERRORS
from upcs.config import ConfigError, load_config

__all__ = ["app"]

app = typer.Typer(
    help="Publish bars to every prison through the hub's Redis, and watch the sites follow.",
    no_args_is_help=True,
)

DEFAULT_TIMEOUT_S = 10.0  # an operator at a terminal waits this long for Redis, then is told
# Followers report every second (sync.config DEFAULT_REPORT_INTERVAL_S) and reconnect within 10 s
# (the backoff cap); 30 s without a report means the site is down or cut off from the hub.
DEFAULT_SILENT_AFTER_S = 30.0

T = TypeVar("T")

RedisOpt = Annotated[
    str,
    typer.Option("--redis", envvar="UPCS_REDIS", help="Hub Redis URL, e.g. redis://host:6379/0."),
]
ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", envvar="UPCS_CONFIG", help="TOML config (default ./upcs.toml)."),
]
PrefixOpt = Annotated[
    str | None,
    typer.Option(
        "--key-prefix",
        envvar="UPCS_SYNC_KEY_PREFIX",
        help="Redis key prefix (default: \\[sync] key_prefix, else 'upcs').",
    ),
]
TimeoutOpt = Annotated[
    float,
    typer.Option("--timeout-s", min=0.0, help="Give up after Redis is unreachable this long."),
]


class _Fail(Exception):
    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def _die(command: str, message: str, code: int) -> typer.Exit:
    typer.echo(f"upcs sync {command}: {message}", err=True)
    return typer.Exit(code)


def _settings(config: Path | None, prefix: str | None, timeout_s: float) -> tuple[Any, SyncConfig]:
    try:
        loaded = load_config(config)
        section = dict(loaded.section("sync"))
        overrides: dict[str, Any] = {"publish_timeout_s": timeout_s}
        if prefix is not None:
            overrides["key_prefix"] = prefix
        return loaded, SyncConfig.from_section(section, **overrides)
    except (ConfigError, SyncConfigError) as exc:
        raise _Fail(str(exc), 2) from None


def _client(url: str, timeout_s: float) -> aioredis.Redis:
    try:
        return aioredis.Redis.from_url(
            url,
            socket_connect_timeout=max(timeout_s, 0.1),
            socket_timeout=max(timeout_s, 0.1),
            retry=Retry(NoBackoff(), 0),
            decode_responses=False,
        )
    except ValueError as exc:
        raise _Fail(f"--redis: not a Redis URL ({exc})", 2) from None


def _run(
    command: str, url: str, timeout_s: float, body: Callable[[aioredis.Redis], Awaitable[T]]
) -> T:
    async def main() -> T:
        client = _client(url, timeout_s)
        try:
            return await body(client)
        finally:
            await client.aclose()

    try:
        return asyncio.run(main())
    except _Fail as exc:
        raise _die(command, str(exc), exc.code) from None
    except PublishError as exc:
        raise _die(command, str(exc), 1) from None
    except (SyncError, WireError, redis.exceptions.ResponseError) as exc:
        raise _die(command, f"hub data in Redis unusable: {exc}", 1) from None
    except REDIS_ERRORS as exc:
        raise _die(command, f"cannot reach Redis ({_redacted(url)}): {exc}", 1) from None


def _redacted(url: str) -> str:
    # Never print a password from the URL.
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.rsplit("@", 1)[1]
    return scheme + sep + rest


def _changes(op: Literal["add", "remove"], numbers: list[str], ref: str, plan: Any) -> list[Change]:
    out = []
    for index, raw in enumerate(numbers, 1):
        try:
            result = canonicalise(raw, plan)
        except IntakeError as exc:
            raise _Fail(
                f"number {index} of {len(numbers)} refused: {exc.reason}; nothing published", 2
            ) from None
        for warning in result.warnings:
            typer.echo(f"upcs sync {op}: number {index}: warning: {warning}", err=True)
        try:
            out.append(Change(op, result.e164, ref))
        except ValueError as exc:
            raise _Fail(f"number {index}: {exc}; nothing published", 2) from None
    return out


def _publish_changes(
    op: Literal["add", "remove"],
    numbers: list[str],
    *,
    redis_url: str,
    ref: str,
    idempotency_key: str | None,
    config: Path | None,
    key_prefix: str | None,
    timeout_s: float,
    as_json: bool,
) -> None:
    try:
        loaded, sync_config = _settings(config, key_prefix, timeout_s)
        changes = _changes(op, numbers, ref, loaded.dialplan)
    except _Fail as exc:
        raise _die(op, str(exc), exc.code) from None

    async def body(client: aioredis.Redis) -> int:
        try:
            publisher = Publisher(client, sync_config)
            return await publisher.publish(changes, idempotency_key=idempotency_key)
        except ValueError as exc:
            raise _Fail(str(exc), 2) from None

    last = _run(op, redis_url, timeout_s, body)
    first = last - len(changes) + 1
    if as_json:
        typer.echo(
            json.dumps(
                {"op": op, "changes": len(changes), "first_version": first, "last_version": last}
            )
        )
    else:
        typer.echo(f"published {len(changes)} {op} change(s) as versions {first}..{last}")


NumbersArg = Annotated[list[str], typer.Argument(help="Numbers in any human format.")]
RefOpt = Annotated[str, typer.Option("--ref", help="Opaque case reference (never a name).")]
KeyOpt = Annotated[
    str | None,
    typer.Option(
        "--idempotency-key", help="Publishing again with the same key adds nothing (retries)."
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON Lines.")]


@app.command()
def add(
    numbers: NumbersArg,
    *,
    redis_url: RedisOpt,
    ref: RefOpt = "",
    idempotency_key: KeyOpt = None,
    config: ConfigOpt = None,
    key_prefix: PrefixOpt = None,
    timeout_s: TimeoutOpt = DEFAULT_TIMEOUT_S,
    as_json: JsonOpt = False,
) -> None:
    """Bar NUMBER... at every prison (one new list version each)."""
    _publish_changes(
        "add",
        numbers,
        redis_url=redis_url,
        ref=ref,
        idempotency_key=idempotency_key,
        config=config,
        key_prefix=key_prefix,
        timeout_s=timeout_s,
        as_json=as_json,
    )


@app.command()
def remove(
    numbers: NumbersArg,
    *,
    redis_url: RedisOpt,
    ref: RefOpt = "",
    idempotency_key: KeyOpt = None,
    config: ConfigOpt = None,
    key_prefix: PrefixOpt = None,
    timeout_s: TimeoutOpt = DEFAULT_TIMEOUT_S,
    as_json: JsonOpt = False,
) -> None:
    """Lift the bar on NUMBER... at every prison (one new list version each)."""
    _publish_changes(
        "remove",
        numbers,
        redis_url=redis_url,
        ref=ref,
        idempotency_key=idempotency_key,
        config=config,
        key_prefix=key_prefix,
        timeout_s=timeout_s,
        as_json=as_json,
    )


@app.command()
def publish(
    *,
    redis_url: RedisOpt,
    snapshot: Annotated[
        Path, typer.Option("--snapshot", help="Snapshot file (upcs blocklist build).")
    ],
    config: ConfigOpt = None,
    key_prefix: PrefixOpt = None,
    timeout_s: TimeoutOpt = DEFAULT_TIMEOUT_S,
    as_json: JsonOpt = False,
) -> None:
    """Replace the whole national list with SNAPSHOT's entries; every prison reloads it."""
    try:
        _, sync_config = _settings(config, key_prefix, timeout_s)
    except _Fail as exc:
        raise _die("publish", str(exc), exc.code) from None
    try:
        snap = read_snapshot(snapshot)
    except SnapshotFileError as exc:
        raise _die("publish", str(exc), 1) from None

    async def body(client: aioredis.Redis) -> int:
        return await Publisher(client, sync_config).publish_snapshot(snap)

    version = _run("publish", redis_url, timeout_s, body)
    if as_json:
        typer.echo(
            json.dumps({"version": version, "entries": len(snap), "checksum": snap.checksum})
        )
    else:
        typer.echo(
            f"published {len(snap)} entries as list version {version} (checksum {snap.checksum})"
        )


@app.command()
def status(
    *,
    redis_url: RedisOpt,
    config: ConfigOpt = None,
    key_prefix: PrefixOpt = None,
    timeout_s: TimeoutOpt = DEFAULT_TIMEOUT_S,
    as_json: JsonOpt = False,
    silent_after_s: Annotated[
        float,
        typer.Option(
            "--silent-after-s", min=0.0, help="A site not heard from for this long is SILENT."
        ),
    ] = DEFAULT_SILENT_AFTER_S,
) -> None:
    """The hub's list version and checksum, and every site with its applied version and lag."""
    try:
        _, sync_config = _settings(config, key_prefix, timeout_s)
    except _Fail as exc:
        raise _die("status", str(exc), exc.code) from None

    async def body(client: aioredis.Redis) -> HubStatus:
        return await read_hub_status(client, sync_config, now_unix=time.time())

    hub = _run("status", redis_url, timeout_s, body)
    out = sys.stdout
    if as_json:
        out.write(
            json.dumps(
                {
                    "kind": "hub",
                    "version": hub.version,
                    "checksum": hub.checksum,
                    "published_unix": hub.published_unix,
                    "snapshot_version": hub.snapshot_version,
                    "snapshot_entries": hub.snapshot_entries,
                    "sites": len(hub.sites),
                }
            )
            + "\n"
        )
        for s in hub.sites:
            out.write(
                json.dumps(
                    {
                        "kind": "site",
                        "site": s.site,
                        "applied_version": s.applied_version,
                        "checksum": s.checksum,
                        "checksum_version": s.checksum_version,
                        "entries": s.entries,
                        "lag_versions": s.lag_versions,
                        "lag_seconds": s.lag_seconds,
                        "last_seen_s": round(s.last_seen_s, 3),
                        "in_sync": s.in_sync,
                        "reporting": s.last_seen_s <= silent_after_s,
                    }
                )
                + "\n"
            )
        return
    age = "never" if hub.published_unix is None else f"{time.time() - hub.published_unix:.1f}s ago"
    out.write(
        f"hub: version {hub.version} checksum {hub.checksum or '-'} last published {age}; "
        f"snapshot version {hub.snapshot_version if hub.snapshot_version is not None else '-'}; "
        f"{len(hub.sites)} site(s)\n"
    )
    for s in hub.sites:
        if s.in_sync:
            state = "in sync"
        elif s.lag_versions:
            state = "BEHIND"
        elif s.checksum_version != s.applied_version:
            # Hashing the whole list waits for a quiet log (or verify_interval_s): not yet known.
            state = f"checksum not yet compared (last hashed version {s.checksum_version})"
        else:
            state = "CHECKSUM DIFFERS"
        if s.last_seen_s > silent_after_s:
            # Its last report may say "in sync", but a silent site may be down or cut off.
            state = f"SILENT (last report: {state})"
        lag_s = "-" if s.lag_seconds is None else f"{s.lag_seconds:.1f}s"
        out.write(
            f"site {s.site}: applied {s.applied_version} ({s.entries} entries) "
            f"lag {s.lag_versions} versions / {lag_s}; last seen {s.last_seen_s:.1f}s ago; "
            f"{state}\n"
        )
