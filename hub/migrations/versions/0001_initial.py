"""The initial hub schema: cases, protected people, bars, outbox, append-only audit, alerts.

Revision ID: 0001
Revises:
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from hub.schema import AUDIT_APPEND_ONLY_MESSAGE, UTCDateTime

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

E164 = 16  # hub.schema.E164_MAX_CHARS at the time of this revision


def upgrade() -> None:
    op.create_table(
        "hub_meta",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    op.create_table(
        "cases",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.Column("requester_type", sa.String(32), nullable=False),
        sa.Column("requester_name", sa.Text, nullable=False),
        sa.Column("requester_contact", sa.Text, nullable=False),
        sa.Column("victim_consent", sa.Boolean, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("offender_name", sa.Text, nullable=False),
        sa.Column("prison_number", sa.String(7), nullable=False),
        sa.Column("offender_dob", sa.Date, nullable=False),
        sa.Column("establishment", sa.Text, nullable=True),
        sa.Column("review_date", sa.Date, nullable=True),
    )
    op.create_index("ix_cases_state", "cases", ["state"])
    op.create_index("ix_cases_prison_number", "cases", ["prison_number"])
    op.create_table(
        "case_transitions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("case_id", sa.Integer, sa.ForeignKey("cases.id"), nullable=False),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("handler", sa.Text, nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("from_state", sa.String(16), nullable=False),
        sa.Column("to_state", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
    )
    op.create_index("ix_case_transitions_case_id", "case_transitions", ["case_id"])
    op.create_table(
        "transfers",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("case_id", sa.Integer, sa.ForeignKey("cases.id"), nullable=False),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("from_establishment", sa.Text, nullable=True),
        sa.Column("to_establishment", sa.Text, nullable=False),
        sa.Column("handler", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
    )
    op.create_index("ix_transfers_case_id", "transfers", ["case_id"])
    op.create_table(
        "protected_people",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("case_id", sa.Integer, sa.ForeignKey("cases.id"), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
    )
    op.create_index("ix_protected_people_case_id", "protected_people", ["case_id"])
    for table, column, kind in (
        ("protected_phones", "e164", sa.String(E164)),
        ("protected_addresses", "address", sa.Text()),
        ("protected_emails", "email", sa.Text()),
    ):
        extra = [sa.Column("unallocated", sa.Boolean, nullable=False)] if column == "e164" else []
        op.create_table(
            table,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column(
                "person_id", sa.Integer, sa.ForeignKey("protected_people.id"), nullable=False
            ),
            sa.Column("position", sa.Integer, nullable=False),
            sa.Column(column, kind, nullable=False),
            *extra,
        )
        op.create_index(f"ix_{table}_person_id", table, ["person_id"])
    op.create_table(
        "bars",
        sa.Column("number", sa.String(E164), primary_key=True),
        sa.Column("case_id", sa.Integer, sa.ForeignKey("cases.id"), primary_key=True),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("barred_at", UTCDateTime, nullable=False),
        sa.Column("released_at", UTCDateTime, nullable=True),
    )
    op.create_index("ix_bars_number_active", "bars", ["number", "active"])
    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("case_id", sa.Integer, sa.ForeignKey("cases.id"), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("changes", sa.Text, nullable=False),
        sa.Column("published_at", UTCDateTime, nullable=True),
        sa.Column("version", sa.BigInteger, nullable=True),
    )
    op.create_index("ix_outbox_published_at", "outbox", ["published_at"])
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("case_id", sa.Integer, nullable=True),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
    )
    op.create_index("ix_audit_log_case_id", "audit_log", ["case_id"])
    op.create_table(
        "attempts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("stream_id", sa.String(32), nullable=False, unique=True),
        sa.Column("site", sa.Text, nullable=False),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("caller", sa.Text, nullable=False),
        sa.Column("dialled", sa.Text, nullable=False),
        sa.Column("matched", sa.String(E164), nullable=False),
        sa.Column("call_id", sa.Text, nullable=False),
        sa.Column("received_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_attempts_matched", "attempts", ["matched"])
    op.create_table(
        "alerts",
        sa.Column("attempt_id", sa.Integer, sa.ForeignKey("attempts.id"), primary_key=True),
        sa.Column("case_id", sa.Integer, sa.ForeignKey("cases.id"), primary_key=True),
    )
    op.create_index("ix_alerts_case_id", "alerts", ["case_id"])
    _audit_append_only()


def _audit_append_only() -> None:
    # The second lock on the audit log (the first is that the code has no update/delete path):
    # the database itself refuses to change or remove an audit row.
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
            f"BEGIN RAISE EXCEPTION '{AUDIT_APPEND_ONLY_MESSAGE}'; END $$"
        )
        op.execute(
            "CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log "
            "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()"
        )
        op.execute(
            "CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log "
            "FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()"
        )
    else:
        for event in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER audit_log_no_{event.lower()} BEFORE {event} ON audit_log "
                f"BEGIN SELECT RAISE(ABORT, '{AUDIT_APPEND_ONLY_MESSAGE}'); END"
            )


def downgrade() -> None:
    # Dropping the hub schema would destroy the audit trail the law requires us to keep.
    raise RuntimeError("the initial hub schema cannot be downgraded: the audit log must be kept")
