"""The audit log (Data Protection Act 2018 s.62): who, when, what and why, append-only.

s.62 requires logs of collection, alteration, consultation, disclosure and erasure, from which the
justification for, and the date and time of, a consultation or disclosure can be established, with
the identity of the person who did it and of any recipient. So every hub operation on a case writes
its row here in the same transaction as the operation itself: a view whose log row cannot be
written returns nothing. There is no update or delete path in this module, and the database
refuses both with a trigger (hub/migrations).

Details never hold a contact detail in clear (safety invariant 4): a number is named by `tag`, a
keyed hash that lets an auditor match rows about the same number without seeing it.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from hub.schema import audit_log

__all__ = [
    "NO_REASON_GIVEN",
    "TAG_HEX_CHARS",
    "AuditAction",
    "AuditEntry",
    "read_audit",
    "record",
    "tag",
]

TAG_HEX_CHARS = 12  # 48 bits: no collisions in practice among a few million numbers, not reversible
# The "why" of a view whose user gave no reason (the read-only CLI commands let them): the row says
# so in plain words rather than carrying an invented justification, so an auditor can find them.
NO_REASON_GIVEN = "no reason given"


class AuditAction(enum.StrEnum):
    CASE_CREATE = "case.create"  # collection
    CASE_TRANSITION = "case.transition"  # alteration (assess, approve, decline, lift, expire)
    CASE_TRANSFER = "case.transfer"  # alteration: the offender moved establishment
    CASE_VIEW = "case.view"  # consultation of one whole case
    CASE_LIST = "case.list"  # consultation: the case appeared in a listing
    AUDIT_VIEW = "audit.view"  # consultation of the audit log itself
    ALERT_VIEW = "alert.view"  # consultation of a case's attempted-contact alerts
    ALERT_RECORD = "alert.record"  # collection: an attempt linked to the case
    DISCLOSE = "disclose"  # disclosure: barred numbers published to the prison gateways
    SCHEMA_MIGRATE = "schema.migrate"  # the database was created or migrated


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    at: dt.datetime
    actor: str
    action: str
    case_id: int | None
    reason: str
    detail: Mapping[str, Any]

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at.isoformat(),
            "actor": self.actor,
            "action": self.action,
            "case": self.case_id,
            "reason": self.reason,
            "detail": dict(self.detail),
        }


def tag(key: bytes, value: str) -> str:
    """A short keyed hash of a contact detail, for logs and audit details."""
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()[:TAG_HEX_CHARS]


def record(
    conn: Connection,
    *,
    at: dt.datetime,
    actor: str,
    action: AuditAction,
    reason: str,
    case_ids: Sequence[int | None] = (None,),
    detail: Mapping[str, Any] | None = None,
) -> None:
    """Append one row per case in `case_ids` (None: not about one case), in `conn`'s transaction."""
    if not actor.strip():
        raise ValueError("an audit row needs the person or process that acted")
    if not reason.strip():
        raise ValueError("an audit row needs the reason for the action")
    text = json.dumps(dict(detail or {}), sort_keys=True, separators=(",", ":"))
    rows = [
        {
            "at": at,
            "actor": actor,
            "action": action.value,
            "case_id": case_id,
            "reason": reason,
            "detail": text,
        }
        for case_id in case_ids
    ]
    if rows:
        conn.execute(audit_log.insert(), rows)


def read_audit(
    conn: Connection, *, case_id: int | None = None, limit: int | None = None
) -> list[AuditEntry]:
    """Audit rows oldest first, all or those about one case."""
    query = select(audit_log).order_by(audit_log.c.id)
    if case_id is not None:
        query = query.where(audit_log.c.case_id == case_id)
    if limit is not None:
        query = query.limit(limit)
    return [
        AuditEntry(
            id=row.id,
            at=row.at,
            actor=row.actor,
            action=row.action,
            case_id=row.case_id,
            reason=row.reason,
            detail=json.loads(row.detail),
        )
        for row in conn.execute(query)
    ]
