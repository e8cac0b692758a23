"""Attempted-contact alerts: blocked dials reported by the gateways, linked to the cases.

Each gateway XADDs one entry per blocked dial to the Redis stream `{prefix}:attempts` with fields
site, ts, caller, dialled, matched, call_id (interfaces.md). `AttemptPuller.pull` reads the
stream from the cursor kept in the hub database, stores each attempt, links it to every case whose
bar on `matched` covered the time of the attempt (or, failing that, every case barring it now),
and moves the cursor, all in one transaction per batch, so an attempt is stored exactly once
however often the puller dies. `list_alerts` shows them to a handler, audited per case.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from sqlalchemy import and_, or_, select
from sqlalchemy.engine import Connection, Engine

from hub.audit import AuditAction, record
from hub.db import READ_ONLY, get_meta, set_meta
from hub.schema import alerts, attempts, bars

__all__ = [
    "ATTEMPTS_BATCH",
    "AlertRecord",
    "Attempt",
    "AttemptPuller",
    "attempts_stream_key",
    "list_alerts",
    "parse_attempt",
    "record_attempts",
]

log = logging.getLogger("hub.alerts")

ATTEMPTS_BATCH = 500  # stream entries per XRANGE and per transaction
META_CURSOR = "attempts_cursor"
ALERTS_ACTOR = "alerts"  # the audit actor for recording attempts: a process, not a person
MAX_FIELD_CHARS = 256  # a gateway field longer than this is cut, never trusted to be short


def attempts_stream_key(prefix: str) -> str:
    return f"{prefix}:attempts"


@dataclass(frozen=True, slots=True)
class Attempt:
    stream_id: str
    site: str
    at: dt.datetime
    caller: str
    dialled: str
    matched: str
    call_id: str


@dataclass(frozen=True, slots=True)
class AlertRecord:
    case_id: int
    site: str
    at: dt.datetime
    caller: str
    dialled: str
    matched: str
    call_id: str
    stream_id: str

    def as_json(self) -> dict[str, Any]:
        return {
            "case": self.case_id,
            "site": self.site,
            "at": self.at.isoformat(),
            "caller": self.caller,
            "dialled": self.dialled,
            "matched": self.matched,
            "call_id": self.call_id,
            "stream_id": self.stream_id,
        }


def _text(fields: Mapping[str, str], name: str) -> str:
    return fields.get(name, "")[:MAX_FIELD_CHARS]


def parse_attempt(stream_id: str, raw: Mapping[Any, Any], received_at: dt.datetime) -> Attempt:
    """One stream entry as an Attempt. A missing or bad timestamp becomes the receipt time: a
    malformed report is still evidence and is kept, never dropped."""
    fields = {
        (k.decode() if isinstance(k, bytes) else str(k)): (
            v.decode(errors="replace") if isinstance(v, bytes) else str(v)
        )
        for k, v in raw.items()
    }
    try:
        at = dt.datetime.fromtimestamp(float(fields.get("ts", "")), dt.UTC)
    except (ValueError, OverflowError, OSError):
        at = received_at
    return Attempt(
        stream_id=stream_id,
        site=_text(fields, "site"),
        at=at,
        caller=_text(fields, "caller"),
        dialled=_text(fields, "dialled"),
        matched=_text(fields, "matched")[:16],
        call_id=_text(fields, "call_id"),
    )


def _cases_for(conn: Connection, attempt: Attempt) -> list[int]:
    covering = select(bars.c.case_id).where(
        and_(
            bars.c.number == attempt.matched,
            bars.c.barred_at <= attempt.at,
            or_(bars.c.released_at.is_(None), bars.c.released_at > attempt.at),
        )
    )
    found = sorted(set(conn.execute(covering).scalars()))
    if not found:
        # Clocks at the sites and the hub differ a little; a bar that is active now still tells
        # the handler whose case the attempt concerns.
        found = sorted(
            set(
                conn.execute(
                    select(bars.c.case_id).where(
                        and_(bars.c.number == attempt.matched, bars.c.active)
                    )
                ).scalars()
            )
        )
    return found


def record_attempts(conn: Connection, batch: Sequence[Attempt], received_at: dt.datetime) -> int:
    """Store new attempts and their alerts in `conn`'s transaction; how many alerts were made."""
    made = 0
    for attempt in batch:
        exists = conn.execute(
            select(attempts.c.id).where(attempts.c.stream_id == attempt.stream_id)
        ).scalar_one_or_none()
        if exists is not None:
            continue
        result = conn.execute(
            attempts.insert().values(
                stream_id=attempt.stream_id,
                site=attempt.site,
                at=attempt.at,
                caller=attempt.caller,
                dialled=attempt.dialled,
                matched=attempt.matched,
                call_id=attempt.call_id,
                received_at=received_at,
            )
        )
        key = result.inserted_primary_key
        assert key is not None
        case_ids = _cases_for(conn, attempt)
        if case_ids:
            conn.execute(
                alerts.insert(), [{"attempt_id": int(key[0]), "case_id": c} for c in case_ids]
            )
            record(
                conn,
                at=received_at,
                actor=ALERTS_ACTOR,
                action=AuditAction.ALERT_RECORD,
                reason="attempted contact reported by a prison gateway",
                case_ids=case_ids,
                detail={"site": attempt.site, "stream_id": attempt.stream_id},
            )
            made += len(case_ids)
    return made


class AttemptPuller:
    """Pulls `{prefix}:attempts` into the hub database from the stored cursor onwards."""

    def __init__(
        self,
        engine: Engine,
        redis: Redis,
        prefix: str = "upcs",
        clock: Callable[[], dt.datetime] | None = None,
        batch: int = ATTEMPTS_BATCH,
    ) -> None:
        self.engine = engine
        self.redis = redis
        self.key = attempts_stream_key(prefix)
        self.clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self.batch = batch

    async def pull(self) -> int:
        """Drain the stream past the cursor; how many attempts were read."""
        total = 0
        while True:
            with self.engine.connect().execution_options(**READ_ONLY) as conn:
                cursor = get_meta(conn, META_CURSOR)
                conn.rollback()
            low = f"({cursor}" if cursor else "-"
            entries = await self.redis.xrange(self.key, min=low, max="+", count=self.batch)
            if not entries:
                return total
            now = self.clock()
            parsed = []
            for raw_id, fields in entries:
                sid = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
                parsed.append(parse_attempt(sid, fields or {}, now))
            with self.engine.begin() as conn:
                made = record_attempts(conn, parsed, now)
                set_meta(conn, META_CURSOR, parsed[-1].stream_id)
            log.info("alerts.pulled attempts=%d alerts=%d", len(parsed), made)
            total += len(parsed)
            if len(entries) < self.batch:
                return total


def list_alerts(
    engine: Engine,
    *,
    handler: str,
    reason: str,
    at: dt.datetime,
    case_id: int | None = None,
) -> list[AlertRecord]:
    """Alerts newest last, all or one case's; the view is audited once per case shown."""
    if not handler.strip() or not reason.strip():
        raise ValueError("a handler and a reason are required to view alerts")
    query = (
        select(alerts.c.case_id, attempts)
        .join(attempts, attempts.c.id == alerts.c.attempt_id)
        .order_by(attempts.c.at, attempts.c.id, alerts.c.case_id)
    )
    if case_id is not None:
        query = query.where(alerts.c.case_id == case_id)
    with engine.begin() as conn:
        found = [
            AlertRecord(
                case_id=r.case_id,
                site=r.site,
                at=r.at,
                caller=r.caller,
                dialled=r.dialled,
                matched=r.matched,
                call_id=r.call_id,
                stream_id=r.stream_id,
            )
            for r in conn.execute(query)
        ]
        shown: list[int | None] = [*sorted({a.case_id for a in found})] or [case_id]
        record(
            conn,
            at=at,
            actor=handler,
            action=AuditAction.ALERT_VIEW,
            reason=reason,
            case_ids=shown,
            detail={"shown": len(found)},
        )
    return found
