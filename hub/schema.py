"""The hub's tables (SQLAlchemy Core). The Alembic migrations in hub/migrations build exactly this.

Contact details of protected people live only here, at the hub (issue 5, "Storage"). Timestamps
are stored in UTC and read back timezone-aware on every backend (`UTCDateTime`).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
)

__all__ = [
    "AUDIT_APPEND_ONLY_MESSAGE",
    "E164_MAX_CHARS",
    "UTCDateTime",
    "alerts",
    "attempts",
    "audit_log",
    "bars",
    "case_transitions",
    "cases",
    "hub_meta",
    "metadata",
    "outbox",
    "protected_addresses",
    "protected_emails",
    "protected_people",
    "protected_phones",
    "transfers",
]

E164_MAX_CHARS = 16  # ITU-T E.164 §6: at most 15 digits, plus the "+"
AUDIT_APPEND_ONLY_MESSAGE = "audit_log is append-only (Data Protection Act 2018 s.62)"


class UTCDateTime(TypeDecorator[dt.datetime]):
    """An aware datetime, stored as UTC; SQLite hands back naive values, made aware again here."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the hub: pass an aware UTC time")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        assert isinstance(value, dt.datetime)
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


metadata = MetaData()

# Small key/value facts about this hub: its instance id (part of every idempotency key), the
# audit tag key, and the attempts-stream cursor.
hub_meta = Table(
    "hub_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

cases = Table(
    "cases",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("state", String(16), nullable=False, index=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("requester_type", String(32), nullable=False),
    Column("requester_name", Text, nullable=False),
    Column("requester_contact", Text, nullable=False),
    Column("victim_consent", Boolean, nullable=False),
    Column("reason", Text, nullable=False),
    Column("offender_name", Text, nullable=False),
    Column("prison_number", String(7), nullable=False, index=True),
    Column("offender_dob", Date, nullable=False),
    Column("establishment", Text, nullable=True),
    Column("review_date", Date, nullable=True),
)

# The case's own history: one row per workflow transition (the audit log records it too).
case_transitions = Table(
    "case_transitions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("case_id", Integer, ForeignKey("cases.id"), nullable=False, index=True),
    Column("at", UTCDateTime, nullable=False),
    Column("handler", Text, nullable=False),
    Column("action", String(16), nullable=False),
    Column("from_state", String(16), nullable=False),
    Column("to_state", String(16), nullable=False),
    Column("reason", Text, nullable=False),
)

# Where the offender is held over time; the bar is national regardless (issue 5).
transfers = Table(
    "transfers",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("case_id", Integer, ForeignKey("cases.id"), nullable=False, index=True),
    Column("at", UTCDateTime, nullable=False),
    Column("from_establishment", Text, nullable=True),
    Column("to_establishment", Text, nullable=False),
    Column("handler", Text, nullable=False),
    Column("reason", Text, nullable=False),
)

protected_people = Table(
    "protected_people",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("case_id", Integer, ForeignKey("cases.id"), nullable=False, index=True),
    Column("position", Integer, nullable=False),
    Column("name", Text, nullable=False),
)

protected_phones = Table(
    "protected_phones",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("person_id", Integer, ForeignKey("protected_people.id"), nullable=False, index=True),
    Column("position", Integer, nullable=False),
    Column("e164", String(E164_MAX_CHARS), nullable=False),
    Column("unallocated", Boolean, nullable=False),
)

protected_addresses = Table(
    "protected_addresses",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("person_id", Integer, ForeignKey("protected_people.id"), nullable=False, index=True),
    Column("position", Integer, nullable=False),
    Column("address", Text, nullable=False),
)

protected_emails = Table(
    "protected_emails",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("person_id", Integer, ForeignKey("protected_people.id"), nullable=False, index=True),
    Column("position", Integer, nullable=False),
    Column("email", Text, nullable=False),
)

# Reference-counted bars: one row per (number, case). A number is barred while at least one of
# its rows is active; rows are released (never deleted) so an attempt can be linked to the cases
# that barred the number at the time of the attempt.
bars = Table(
    "bars",
    metadata,
    Column("number", String(E164_MAX_CHARS), primary_key=True),
    Column("case_id", Integer, ForeignKey("cases.id"), primary_key=True),
    Column("active", Boolean, nullable=False),
    Column("barred_at", UTCDateTime, nullable=False),
    Column("released_at", UTCDateTime, nullable=True),
    Index("ix_bars_number_active", "number", "active"),
)

# Changes to publish, written in the same transaction as the case change (transactional outbox).
# `changes` is JSON: [[op, e164, ref], ...]. Pending while published_at is NULL.
outbox = Table(
    "outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("case_id", Integer, ForeignKey("cases.id"), nullable=False),
    Column("action", String(16), nullable=False),
    Column("changes", Text, nullable=False),
    Column("published_at", UTCDateTime, nullable=True, index=True),
    Column("version", BigInteger, nullable=True),
)

# Data Protection Act 2018 s.62: who, when, what and why for every view, change and disclosure.
# Append-only: the code has no update or delete path and a trigger refuses both.
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime, nullable=False),
    Column("actor", Text, nullable=False),
    Column("action", String(32), nullable=False),
    Column("case_id", Integer, nullable=True, index=True),
    Column("reason", Text, nullable=False),
    Column("detail", Text, nullable=False),
)

# Blocked dials reported by the gateways (Redis stream `{prefix}:attempts`).
attempts = Table(
    "attempts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("stream_id", String(32), nullable=False, unique=True),
    Column("site", Text, nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("caller", Text, nullable=False),
    Column("dialled", Text, nullable=False),
    Column("matched", String(E164_MAX_CHARS), nullable=False, index=True),
    Column("call_id", Text, nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
)

# An attempt linked to each case that barred its number: the "attempted contact" alert.
alerts = Table(
    "alerts",
    metadata,
    Column("attempt_id", Integer, ForeignKey("attempts.id"), primary_key=True),
    Column("case_id", Integer, ForeignKey("cases.id"), primary_key=True, index=True),
)
