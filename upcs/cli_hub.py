"""`upcs hub ...`: case handling at the national hub (issue 5).

This is where the hub meets sync: the outbox relay gets `sync.Publisher.publish` as its publish
callable from here, so `hub` never imports `sync` (DESIGN.md "Components").

Every command takes `--db URL` (default `[hub] database`, else a SQLite file in the working
directory); those that publish take `--redis URL` (`[hub] redis`). Every command that reads or
changes a case writes its audit row: who, when, what and why (Data Protection Act 2018 s.62).
The workflow commands need `--handler NAME` and `--reason TEXT`: issue 5 names assess, approve,
decline and lift with them, and expire, transfer and expire-due (whose reason defaults to
"review date reached") follow. The commands issue 5 names without them (init, case new,
case list, case show, audit, alerts) run exactly as written there: `--handler` (or UPCS_HANDLER)
defaults to the operating-system login, recorded as `os:LOGIN`, and the views' `--reason` is
optional: without it the row says `hub.NO_REASON_GIVEN`, never an invented justification.
A disclosure (`case show --disclosed-to`, not in the issue) still needs `--reason`.
Approving, lifting and expiring publish at once when a Redis URL is known; otherwise, or if Redis
is down, the change waits in the outbox for `upcs hub relay` and the command says so.
Exit codes: 0 success, 1 runtime error or refused request (with field and reason), 2 usage error.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import getpass
import json
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Literal

import redis.asyncio as aioredis
import typer
from redis.exceptions import RedisError
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

import sync
from hub import (
    DEFAULT_DATABASE_URL,
    NO_REASON_GIVEN,
    Action,
    AttemptPuller,
    CaseNotFound,
    DatabaseError,
    Hub,
    IllegalTransition,
    IntakeRefused,
    PublishFn,
    Relay,
    RelayConfig,
    State,
    TransitionRefused,
    check_current,
    list_alerts,
    make_engine,
    migrate,
    parse_case_request,
    redact_url,
    run_loop,
)
from hub.bars import Change as HubChange
from hub.intake import request_from_flags
from upcs.config import ConfigError, UpcsConfig, load_config

__all__ = ["app", "make_publish"]

app = typer.Typer(help="The national hub: cases, bars, audit, alerts.", no_args_is_help=True)
case_app = typer.Typer(help="Case intake and workflow.", no_args_is_help=True)
app.add_typer(case_app, name="case")

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"  # the relay's default when nothing is configured
# An interactive approval waits at most this long for Redis before leaving the change to the relay.
INLINE_PUBLISH_TIMEOUT_S = 5.0
REDIS_SOCKET_TIMEOUT_S = 10.0  # one publish script is milliseconds; longer means Redis is gone
log = logging.getLogger("upcs.hub")

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", help="TOML config file (default ./upcs.toml).")
]
DbOpt = Annotated[
    str | None,
    typer.Option(
        "--db",
        envvar="UPCS_HUB_DB",
        help=f"SQLAlchemy URL; default \\[hub] database, else {DEFAULT_DATABASE_URL}.",
    ),
]
RedisOpt = Annotated[
    str | None,
    typer.Option("--redis", envvar="UPCS_HUB_REDIS", help="Redis URL; default \\[hub] redis."),
]
HandlerOpt = Annotated[
    str,
    typer.Option("--handler", envvar="UPCS_HANDLER", help="The case handler acting (audited)."),
]
# For the commands issue 5 names without --handler: resolved by _actor().
ActorOpt = Annotated[
    str | None,
    typer.Option(
        "--handler",
        envvar="UPCS_HANDLER",
        help="Who is acting (audited).",
        show_default="os:LOGIN, your operating-system login",
    ),
]
# For the views issue 5 names without --reason: s.62 wants the why, but the row must not lie.
ReasonView = Annotated[
    str,
    typer.Option(
        "--reason",
        help="Why you are looking (audited); without it the audit row says no reason was given.",
    ),
]
JsonOpt = Annotated[
    bool, typer.Option("--json", help="JSON Lines output.", show_default="off: text lines")
]
CaseArg = Annotated[int, typer.Argument(help="Case id.", min=1)]


class _Fail(Exception):
    """A runtime error for the user: printed as `upcs hub: MESSAGE`, exit 1."""


@contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except (_Fail, ConfigError, DatabaseError, CaseNotFound, IllegalTransition) as exc:
        _die(str(exc))
    except (TransitionRefused, ValueError) as exc:
        _die(str(exc))
    except SQLAlchemyError as exc:
        # Driver messages can quote statement parameters (contact details): name the class only.
        _die(f"database error ({exc.__class__.__name__}); the command did not complete")


def _die(message: str) -> None:
    typer.echo(f"upcs hub: {message}", err=True)
    raise typer.Exit(1)


def _actor(handler: str | None) -> str:
    """Who the audit row names: --handler / UPCS_HANDLER, else the OS login marked as such."""
    if handler is not None:
        return handler  # even "": the hub refuses a blank actor rather than guess one
    try:
        return f"os:{getpass.getuser()}"
    except (OSError, KeyError):  # no LOGNAME/USER and no passwd entry (3.13: OSError)
        raise _Fail("cannot tell who is acting from the OS login: give --handler NAME") from None


def _config(path: Path | None) -> UpcsConfig:
    return load_config(path)


def _db_url(cfg: UpcsConfig, db: str | None) -> str:
    if db:
        return db
    value = cfg.section("hub").get("database")
    if value is not None and not isinstance(value, str):
        raise _Fail("[hub] database must be a string (an SQLAlchemy URL)")
    return value or DEFAULT_DATABASE_URL


def _redis_url(cfg: UpcsConfig, redis_url: str | None) -> str | None:
    if redis_url:
        return redis_url
    value = cfg.section("hub").get("redis")
    if value is not None and not isinstance(value, str):
        raise _Fail("[hub] redis must be a string (a Redis URL)")
    return value


def _sync_config(cfg: UpcsConfig, **overrides: Any) -> sync.SyncConfig:
    try:
        return sync.SyncConfig.from_section(cfg.section("sync"), **overrides)
    except sync.SyncConfigError as exc:
        raise _Fail(str(exc)) from None


@contextmanager
def _engine(cfg: UpcsConfig, db: str | None, *, current: bool = True) -> Iterator[Engine]:
    engine = make_engine(_db_url(cfg, db))
    try:
        if current:
            check_current(engine)
        yield engine
    finally:
        engine.dispose()


def _emit(obj: dict[str, Any]) -> None:
    typer.echo(json.dumps(obj, ensure_ascii=False, separators=(",", ":")))


def make_publish(publisher: sync.Publisher) -> PublishFn:
    """The relay's publish callable, backed by the real sync publisher."""

    async def publish(changes: Sequence[HubChange], *, idempotency_key: str) -> int:
        batch = [sync.Change(_op(op), e164, ref) for op, e164, ref in changes]
        return await publisher.publish(batch, idempotency_key=idempotency_key)

    return publish


def _op(op: str) -> Literal["add", "remove"]:
    if op == "add":
        return "add"
    if op == "remove":
        return "remove"
    raise ValueError(f"outbox holds an unknown operation {op!r}")


def _redis_client(url: str) -> aioredis.Redis:
    # Binary replies: the sync snapshot is binary (sync.redisio.check_binary_client).
    return aioredis.Redis.from_url(
        url, socket_timeout=REDIS_SOCKET_TIMEOUT_S, socket_connect_timeout=REDIS_SOCKET_TIMEOUT_S
    )


async def _with_redis(url: str, body: Callable[[aioredis.Redis], Awaitable[int]]) -> int:
    client = _redis_client(url)
    try:
        return await body(client)
    finally:
        await asyncio.shield(client.aclose())


# ---- init --------------------------------------------------------------------------------------


@app.command("init")
def init_cmd(
    *,
    db: DbOpt = None,
    config: ConfigOpt = None,
    handler: ActorOpt = None,
) -> None:
    """Create or migrate the hub database (Alembic)."""
    with _errors():
        cfg = _config(config)
        with _engine(cfg, db, current=False) as engine:
            before, after = migrate(engine, actor=_actor(handler))
            was = before or "empty"
            typer.echo(f"hub database {redact_url(str(engine.url))}: {was} -> revision {after}")


# ---- case intake -------------------------------------------------------------------------------


@case_app.command("new")
def case_new(
    *,
    handler: ActorOpt = None,
    from_json: Annotated[
        Path | None, typer.Option("--from-json", help="Request file ('-' reads stdin).")
    ] = None,
    requester_type: Annotated[str | None, typer.Option(help="Requester type.")] = None,
    requester_name: Annotated[str | None, typer.Option()] = None,
    requester_contact: Annotated[str | None, typer.Option()] = None,
    victim_consent: Annotated[
        bool | None, typer.Option("--victim-consent/--no-victim-consent")
    ] = None,
    reason: Annotated[str | None, typer.Option(help="Why the request is made.")] = None,
    offender_name: Annotated[str | None, typer.Option()] = None,
    prison_number: Annotated[str | None, typer.Option(help="e.g. A1234BC")] = None,
    date_of_birth: Annotated[str | None, typer.Option(help="Offender's, YYYY-MM-DD.")] = None,
    establishment: Annotated[str | None, typer.Option()] = None,
    protected_name: Annotated[str | None, typer.Option(help="One protected person.")] = None,
    phone: Annotated[list[str] | None, typer.Option(help="Repeat for each number.")] = None,
    address: Annotated[list[str] | None, typer.Option(help="Repeat for each address.")] = None,
    email: Annotated[list[str] | None, typer.Option(help="Repeat for each email.")] = None,
    db: DbOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Take a new request (from a JSON file, or one protected person as flags)."""
    flags = {
        "requester_type": requester_type,
        "requester_name": requester_name,
        "requester_contact": requester_contact,
        "victim_consent": victim_consent,
        "reason": reason,
        "offender_name": offender_name,
        "prison_number": prison_number,
        "date_of_birth": date_of_birth,
        "establishment": establishment,
        "protected_name": protected_name,
        "phone": phone,
        "address": address,
        "email": email,
    }
    given = {k: v for k, v in flags.items() if v not in (None, [])}
    if from_json is not None and given:
        typer.echo("Error: give --from-json or the fields as flags, not both", err=True)
        raise typer.Exit(2)
    with _errors():
        cfg = _config(config)
        if from_json is not None:
            data = _read_request(from_json)
        elif given:
            data = request_from_flags(given)
        else:
            typer.echo("Error: give --from-json FILE or the request fields as flags", err=True)
            raise typer.Exit(2)
        try:
            request = parse_case_request(data, cfg.dialplan)
        except IntakeRefused as exc:
            raise _Fail(f"request refused, no case created: {exc}") from None
        with _engine(cfg, db) as engine:
            case_id = Hub(engine).create_case(
                request,
                handler=_actor(handler),
                reason=f"intake of a request from {request.requester.type.value}",
            )
        for warning in request.warnings:
            typer.echo(f"upcs hub: warning: {warning}", err=True)
        if as_json:
            _emit({"id": case_id})
        else:
            typer.echo(case_id)


def _read_request(path: Path) -> object:
    where = "stdin" if str(path) == "-" else str(path)
    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise _Fail(f"{where}: cannot read: {exc.__class__.__name__}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        # Position only: the message must not quote the file's text (contact details).
        raise _Fail(f"{where}: not valid JSON at line {exc.lineno} column {exc.colno}") from None


# ---- workflow ----------------------------------------------------------------------------------


def _transition(
    *,
    action: Action,
    case_id: int,
    handler: str,
    reason: str,
    db: str | None,
    redis_url: str | None,
    config: Path | None,
    as_json: bool,
    review_date: str | None = None,
) -> None:
    with _errors():
        cfg = _config(config)
        review = _parse_date(review_date, "--review-date") if review_date else None
        with _engine(cfg, db) as engine:
            result = Hub(engine).transition(
                case_id, action, handler=handler, reason=reason, review_date=review
            )
            published = _publish_now(engine, cfg, redis_url) if result.outbox_id else None
        out = result.as_json()
        out["published"] = published
        if as_json:
            _emit(out)
            return
        line = f"case {case_id}: {result.from_state} -> {result.to_state}"
        if result.outbox_id is not None:
            line += f"; {result.adds} to bar, {result.removes} to unbar"
            if result.still_barred:
                line += f", {result.still_barred} stay barred by other cases"
            line += f" (outbox {result.outbox_id}: {published})"
        elif result.still_barred:
            line += f"; {result.still_barred} numbers stay barred by other cases"
        typer.echo(line)


def _publish_now(engine: Engine, cfg: UpcsConfig, redis_url: str | None) -> str:
    url = _redis_url(cfg, redis_url)
    if url is None:
        typer.echo("upcs hub: no Redis configured: run `upcs hub relay` to publish", err=True)
        return "pending"
    sync_config = _sync_config(cfg, publish_timeout_s=INLINE_PUBLISH_TIMEOUT_S)

    async def body(client: aioredis.Redis) -> int:
        relay = Relay(engine, make_publish(sync.Publisher(client, sync_config)))
        return await relay.publish_pending()

    try:
        asyncio.run(_with_redis(url, body))
    except (sync.PublishError, sync.SyncError, RedisError, OSError, SQLAlchemyError) as exc:
        typer.echo(
            f"upcs hub: not published yet ({exc.__class__.__name__}); the change is safe in the "
            "outbox: run `upcs hub relay` to publish it",
            err=True,
        )
        return "pending"
    return "published"


def _parse_date(value: str, option: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise _Fail(f"{option}: expected a date YYYY-MM-DD") from None


ReasonReq = Annotated[str, typer.Option("--reason", help="Why (audited).")]


def _workflow_command(action: Action, doc: str) -> None:
    def command(
        *,
        case_id: CaseArg,
        handler: HandlerOpt,
        reason: ReasonReq,
        db: DbOpt = None,
        redis: RedisOpt = None,
        config: ConfigOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        _transition(
            action=action,
            case_id=case_id,
            handler=handler,
            reason=reason,
            db=db,
            redis_url=redis,
            config=config,
            as_json=as_json,
        )

    command.__doc__ = doc
    case_app.command(action.value)(command)


def case_approve(
    *,
    case_id: CaseArg,
    handler: HandlerOpt,
    reason: ReasonReq,
    db: DbOpt = None,
    redis: RedisOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
    review_date: Annotated[
        str | None, typer.Option(help="YYYY-MM-DD; default a year from today.")
    ] = None,
) -> None:
    """assessing -> approved: bar the protected people's numbers everywhere."""
    _transition(
        action=Action.APPROVE,
        case_id=case_id,
        handler=handler,
        reason=reason,
        db=db,
        redis_url=redis,
        config=config,
        as_json=as_json,
        review_date=review_date,
    )


# The workflow commands, in the order of the graph; approve is its own (it takes --review-date).
for _action, _doc in (
    (Action.ASSESS, "received -> assessing."),
    (Action.APPROVE, ""),
    (Action.DECLINE, "assessing -> declined."),
    (Action.LIFT, "approved -> lifted: unbar numbers no other active case still bars."),
    (Action.EXPIRE, "approved -> expired, once the review date has come."),
):
    if _action is Action.APPROVE:
        case_app.command("approve")(case_approve)
    else:
        _workflow_command(_action, _doc)


@case_app.command("expire-due")
def case_expire_due(
    *,
    handler: HandlerOpt,
    reason: Annotated[str, typer.Option(help="Why (audited).")] = "review date reached",
    db: DbOpt = None,
    redis: RedisOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Expire every approved case whose review date has come."""
    with _errors():
        cfg = _config(config)
        with _engine(cfg, db) as engine:
            results = Hub(engine).expire_due(handler=handler, reason=reason)
            published = (
                _publish_now(engine, cfg, redis) if any(r.outbox_id for r in results) else None
            )
        for result in results:
            if as_json:
                _emit({**result.as_json(), "published": published})
            else:
                typer.echo(f"case {result.case_id}: approved -> expired")


@case_app.command("transfer")
def case_transfer(
    *,
    case_id: CaseArg,
    handler: HandlerOpt,
    reason: ReasonReq,
    establishment: Annotated[str, typer.Option(help="Where the offender is now held.")],
    db: DbOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Record the offender's move to another establishment (the bar is national regardless)."""
    with _errors():
        cfg = _config(config)
        with _engine(cfg, db) as engine:
            Hub(engine).transfer(case_id, establishment, handler=handler, reason=reason)
        typer.echo(f"case {case_id}: offender now at {establishment.strip()}")


# ---- views (each audited) ----------------------------------------------------------------------


@case_app.command("list")
def case_list(
    *,
    handler: ActorOpt = None,
    reason: ReasonView = NO_REASON_GIVEN,
    state: Annotated[
        State | None, typer.Option(help="Only cases in this state.", show_default="all states")
    ] = None,
    db: DbOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List cases (no contact details)."""
    with _errors():
        cfg = _config(config)
        with _engine(cfg, db) as engine:
            found = Hub(engine).list_cases(handler=_actor(handler), reason=reason, state=state)
        for s in found:
            if as_json:
                _emit(s.as_json())
            else:
                where = s.establishment or "establishment unknown"
                typer.echo(
                    f"{s.id}\t{s.state}\t{s.prison_number} {s.offender_name} ({where})\t"
                    f"{s.people} people, {s.numbers} numbers\treview {s.review_date or '-'}"
                )


@case_app.command("show")
def case_show(
    *,
    case_id: CaseArg,
    handler: ActorOpt = None,
    reason: ReasonView = NO_REASON_GIVEN,
    disclosed_to: Annotated[
        str | None,
        typer.Option(
            help="Recipient outside the hub this is for (audited as a disclosure; needs --reason).",
            show_default="none: not a disclosure",
        ),
    ] = None,
    db: DbOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show one case in full, contact details included."""
    if disclosed_to is not None and reason == NO_REASON_GIVEN:
        # Not in issue 5's contract, so no script relies on it without a reason: a disclosure
        # outside the hub keeps needing its justification (s.62).
        typer.echo("Error: --disclosed-to needs --reason (why the case is disclosed)", err=True)
        raise typer.Exit(2)
    with _errors():
        cfg = _config(config)
        with _engine(cfg, db) as engine:
            found = Hub(engine).show_case(
                case_id, handler=_actor(handler), reason=reason, disclosed_to=disclosed_to
            )
        if as_json:
            _emit(found.as_json())
        else:
            typer.echo(found.as_text())


@app.command("audit")
def audit_cmd(
    *,
    handler: ActorOpt = None,
    reason: ReasonView = NO_REASON_GIVEN,
    case: Annotated[
        int | None, typer.Option("--case", help="Only this case's rows.", show_default="all rows")
    ] = None,
    db: DbOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show the audit log (Data Protection Act 2018 s.62)."""
    with _errors():
        cfg = _config(config)
        with _engine(cfg, db) as engine:
            entries = Hub(engine).audit(handler=_actor(handler), reason=reason, case_id=case)
        for e in entries:
            if as_json:
                _emit(e.as_json())
            else:
                detail = json.dumps(dict(e.detail), sort_keys=True, separators=(",", ":"))
                about = f"case {e.case_id}" if e.case_id is not None else "-"
                typer.echo(
                    f"{e.id}\t{e.at.isoformat(timespec='seconds')}\t{e.actor}\t{e.action}\t"
                    f"{about}\t{e.reason}\t{detail}"
                )


@app.command("alerts")
def alerts_cmd(
    *,
    handler: ActorOpt = None,
    reason: ReasonView = NO_REASON_GIVEN,
    case: Annotated[
        int | None,
        typer.Option("--case", help="Only this case's alerts.", show_default="all cases"),
    ] = None,
    pull: Annotated[
        bool,
        typer.Option("--pull", help="First read new attempts from Redis.", show_default="off"),
    ] = False,
    redis: RedisOpt = None,
    db: DbOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Attempted-contact alerts: blocked dials linked to the cases barring the number."""
    with _errors():
        cfg = _config(config)
        with _engine(cfg, db) as engine:
            if pull:
                url = _redis_url(cfg, redis) or DEFAULT_REDIS_URL
                prefix = _sync_config(cfg).key_prefix
                try:
                    asyncio.run(_with_redis(url, lambda c: AttemptPuller(engine, c, prefix).pull()))
                except (RedisError, OSError) as exc:
                    name = exc.__class__.__name__
                    raise _Fail(f"cannot read attempts from Redis: {name}") from None
            found = list_alerts(
                engine,
                handler=_actor(handler),
                reason=reason,
                at=dt.datetime.now(dt.UTC),
                case_id=case,
            )
        for a in found:
            if as_json:
                _emit(a.as_json())
            else:
                typer.echo(
                    f"case {a.case_id}\t{a.at.isoformat(timespec='seconds')}\t{a.site}\t"
                    f"caller {a.caller}\tdialled {a.dialled}\tcall-id {a.call_id}"
                )


# ---- relay -------------------------------------------------------------------------------------


@app.command("relay")
def relay_cmd(
    *,
    once: Annotated[bool, typer.Option("--once", help="Drain pending rows and exit.")] = False,
    attempts: Annotated[
        bool, typer.Option("--attempts/--no-attempts", help="Also pull attempt alerts.")
    ] = True,
    redis: RedisOpt = None,
    db: DbOpt = None,
    config: ConfigOpt = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error")] = "info",
) -> None:
    """Publish pending outbox rows to Redis (and pull attempt alerts) until stopped."""
    logging.basicConfig(
        level=getattr(logging, log_level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)  # the schema check's chatter
    with _errors():
        cfg = _config(config)
        url = _redis_url(cfg, redis) or DEFAULT_REDIS_URL
        sync_config = _sync_config(cfg)
        with _engine(cfg, db) as engine:
            counts: list[int] = []

            async def body(client: aioredis.Redis) -> int:
                relay = Relay(engine, make_publish(sync.Publisher(client, sync_config)))
                steps: list[Callable[[], Awaitable[int]]] = [relay.publish_pending]
                if attempts:
                    steps.append(AttemptPuller(engine, client, sync_config.key_prefix).pull)
                if once:
                    counts.extend([await step() for step in steps])
                    return 0
                await _until_signalled(lambda stop: run_loop(steps, RelayConfig(), stop))
                return 0

            try:
                asyncio.run(_with_redis(url, body))
            except (sync.PublishError, sync.SyncError, RedisError, OSError) as exc:
                raise _Fail(
                    f"relay stopped: {exc.__class__.__name__}; pending rows stay in the outbox"
                ) from None
        if once:
            pulled = f"; {counts[1]} attempts pulled" if attempts else ""
            typer.echo(f"relay: {counts[0]} outbox rows published{pulled}")


async def _until_signalled(run: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run until SIGTERM or SIGINT (STYLE.md rule 8): the first signal asks the loop to stop
    after the step in hand; a second one cancels it outright."""
    stop = asyncio.Event()
    task = asyncio.ensure_future(run(stop))
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        if stop.is_set():
            task.cancel()
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    try:
        await task
    except asyncio.CancelledError:
        pass
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    log.info("relay.stopped")
