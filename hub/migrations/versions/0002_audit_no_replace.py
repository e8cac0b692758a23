"""SQLite: refuse INSERT OR REPLACE over an existing audit row.

SQLite's REPLACE conflict resolution deletes the conflicting row without firing DELETE triggers
(they fire for REPLACE only when `PRAGMA recursive_triggers` is on), so
`INSERT OR REPLACE INTO audit_log (id, ...)` rewrote an audit row past the triggers of 0001. A
BEFORE INSERT trigger runs before that conflict handling, whatever the connection's pragmas, and
refuses any insert that names an existing id. PostgreSQL has no REPLACE, and its
`INSERT ... ON CONFLICT DO UPDATE` fires the UPDATE trigger of 0001, so nothing changes there.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import op

from hub.schema import AUDIT_APPEND_ONLY_MESSAGE

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    op.execute(
        "CREATE TRIGGER audit_log_no_replace BEFORE INSERT ON audit_log "
        "WHEN NEW.id IS NOT NULL AND EXISTS (SELECT 1 FROM audit_log WHERE id = NEW.id) "
        f"BEGIN SELECT RAISE(ABORT, '{AUDIT_APPEND_ONLY_MESSAGE}'); END"
    )


def downgrade() -> None:
    # Removing a lock on the audit log would reopen a way to rewrite it.
    raise RuntimeError("the audit log's append-only triggers cannot be downgraded")
