"""The audit log is append-only (Data Protection Act 2018 s.62) and never holds a contact detail
in clear; every Hub operation writes its row in the same transaction."""

from __future__ import annotations

import ast
import logging
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from hub import Action, Hub, parse_case_request
from hub.audit import read_audit
from hub.schema import AUDIT_APPEND_ONLY_MESSAGE
from tests.hub.conftest import make_request

HUB = Path(__file__).resolve().parents[2] / "hub"
SECRETS = ("7700900001", "7700 900001", "2079460001", "victim.one@example.org", "Drama Street")


# Rewriting row 1 (the migration's own row) with an insert that names its id.
_ROW_1 = "(1, '2020-01-01 00:00:00', 'x', 'schema.migrate', NULL, 'rewritten', '{}')"
_COLUMNS = "audit_log (id, at, actor, action, case_id, reason, detail)"
UPSERT = f"INSERT INTO {_COLUMNS} VALUES {_ROW_1} ON CONFLICT (id) DO UPDATE SET reason = 'x'"
# SQLite's REPLACE deletes the old row without firing DELETE triggers (migration 0002).
SQLITE_REPLACE = (
    f"INSERT OR REPLACE INTO {_COLUMNS} VALUES {_ROW_1}",
    f"REPLACE INTO {_COLUMNS} VALUES {_ROW_1}",
)


@pytest.mark.parametrize(
    "statement",
    ["UPDATE audit_log SET reason = 'rewritten'", "DELETE FROM audit_log", UPSERT, *SQLITE_REPLACE],
    ids=["update", "delete", "upsert", "insert-or-replace", "replace"],
)
def test_database_refuses_to_change_the_audit_log(hub: Hub, engine: Engine, statement: str) -> None:
    if statement in SQLITE_REPLACE and engine.dialect.name != "sqlite":
        pytest.skip("REPLACE is SQLite's own syntax")
    hub.create_case(parse_case_request(make_request()), handler="h", reason="r")
    with engine.connect() as conn:
        before = [(e.id, e.reason) for e in read_audit(conn)]
    with pytest.raises(DBAPIError, match=r"append-only"), engine.begin() as conn:
        conn.execute(text(statement))
    with engine.connect() as conn:
        assert [(e.id, e.reason) for e in read_audit(conn)] == before
    with engine.connect() as conn:
        assert [e.reason for e in read_audit(conn)][-1] == "r"


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # SQLite has no TRUNCATE
def test_postgresql_refuses_truncate(hub: Hub, engine: Engine) -> None:
    assert engine.dialect.name == "postgresql"
    with pytest.raises(DBAPIError, match=AUDIT_APPEND_ONLY_MESSAGE[:20]), engine.begin() as conn:
        conn.execute(text("TRUNCATE audit_log"))


def test_no_update_or_delete_path_in_the_code() -> None:
    """Nothing in hub/ builds an UPDATE or DELETE of audit_log (the trigger is the second lock)."""
    offences = []
    for path in HUB.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and node.attr in ("update", "delete")
                and isinstance(node.value, ast.Name)
                and node.value.id == "audit_log"
            ):
                offences.append(f"{path.name}:{node.lineno}")
    assert not offences


def test_every_operation_is_audited_without_contact_details(
    hub: Hub, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    a = hub.create_case(parse_case_request(make_request()), handler="ann", reason="intake")
    hub.transition(a, Action.ASSESS, handler="ann", reason="assess")
    hub.transition(a, Action.APPROVE, handler="bob", reason="approve")
    hub.transfer(a, "HMP Hull", handler="bob", reason="moved")
    hub.list_cases(handler="cat", reason="review")
    hub.show_case(a, handler="cat", reason="police evidence request")
    hub.audit(handler="dan", reason="monthly audit", case_id=a)
    hub.transition(a, Action.LIFT, handler="bob", reason="lift")
    with engine.connect() as conn:
        entries = [e for e in read_audit(conn) if e.case_id == a]
    assert [(e.actor, e.action, e.reason) for e in entries] == [
        ("ann", "case.create", "intake"),
        ("ann", "case.transition", "assess"),
        ("bob", "case.transition", "approve"),
        ("bob", "case.transfer", "moved"),
        ("cat", "case.list", "review"),
        ("cat", "case.view", "police evidence request"),
        ("dan", "audit.view", "monthly audit"),
        ("bob", "case.transition", "lift"),
    ]
    times = [e.at for e in entries]
    assert times == sorted(times) and all(t.tzinfo is not None for t in times)
    blob = repr([e.as_json() for e in entries]) + caplog.text
    for secret in SECRETS:
        assert secret not in blob
    # Numbers are named by keyed tag: the same number, the same tag, within one database.
    created = entries[0].detail["numbers"]
    assert len(created) == 2 and all(len(t) == 12 for t in created)


def test_a_view_of_a_missing_case_discloses_nothing_and_logs_nothing(
    hub: Hub, engine: Engine
) -> None:
    with engine.connect() as conn:
        before = len(read_audit(conn))
    with pytest.raises(LookupError, match="no case 42"):
        hub.show_case(42, handler="h", reason="r")
    with engine.connect() as conn:
        assert len(read_audit(conn)) == before
