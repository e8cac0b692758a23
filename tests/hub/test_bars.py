"""Reference-counted bars and the outbox they write (safety invariant 5: a 'remove' is queued
only when no active case still bars the number)."""

from __future__ import annotations

import json
import threading

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine

from hub import Action, Hub, parse_case_request
from hub import cases as cases_mod
from hub.bars import barred_numbers, release_bars
from hub.db import lock_bars
from hub.schema import cases, outbox
from tests.hub.conftest import FakeClock, make_request

SHARED = "+447700900001"  # barred by both cases
ONLY_A = "+442079460001"
ONLY_B = "+441134960001"


def _approved(hub: Hub, phones: list[str]) -> int:
    case_id = hub.create_case(parse_case_request(make_request(phones)), handler="h", reason="r")
    hub.transition(case_id, Action.ASSESS, handler="h", reason="assess")
    hub.transition(case_id, Action.APPROVE, handler="h", reason="approve")
    return case_id


def _outbox(engine: Engine) -> list[tuple[int, str, list[list[str]]]]:
    with engine.connect() as conn:
        rows = conn.execute(select(outbox).order_by(outbox.c.id)).all()
    return [(r.case_id, r.action, json.loads(r.changes)) for r in rows]


def _barred(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return barred_numbers(conn)


def test_two_cases_one_lifted_still_barred_both_lifted_unbarred(hub: Hub, engine: Engine) -> None:
    a = _approved(hub, ["07700 900001", "020 7946 0001"])
    b = _approved(hub, ["+44 7700 900001", "0113 496 0001"])
    assert _barred(engine) == {SHARED, ONLY_A, ONLY_B}

    lifted_a = hub.transition(a, Action.LIFT, handler="h", reason="victim asked")
    assert (lifted_a.removes, lifted_a.still_barred) == (1, 1)
    assert _barred(engine) == {SHARED, ONLY_B}

    lifted_b = hub.transition(b, Action.LIFT, handler="h", reason="victim asked")
    assert (lifted_b.removes, lifted_b.still_barred) == (2, 0)
    assert _barred(engine) == set()

    assert _outbox(engine) == [
        (a, "approve", [["add", ONLY_A, f"case:{a}"], ["add", SHARED, f"case:{a}"]]),
        (b, "approve", [["add", ONLY_B, f"case:{b}"], ["add", SHARED, f"case:{b}"]]),
        (a, "lift", [["remove", ONLY_A, f"case:{a}"]]),
        (b, "lift", [["remove", ONLY_B, f"case:{b}"], ["remove", SHARED, f"case:{b}"]]),
    ]


def test_a_fully_shared_lift_publishes_nothing(hub: Hub, engine: Engine) -> None:
    a = _approved(hub, ["07700 900001"])
    _approved(hub, ["07700 900001"])
    result = hub.transition(a, Action.LIFT, handler="h", reason="r")
    assert result.outbox_id is None
    assert (result.removes, result.still_barred) == (0, 1)
    assert _barred(engine) == {SHARED}
    assert [action for _, action, _ in _outbox(engine)] == ["approve", "approve"]


def test_expiry_releases_like_a_lift(hub: Hub, engine: Engine, clock: FakeClock) -> None:
    a = _approved(hub, ["07700 900001", "020 7946 0001"])
    clock.advance(days=30)
    b = _approved(hub, ["07700 900001"])
    clock.advance(days=340)  # a's yearly review has come, b's has not
    expired = hub.expire_due(handler="h", reason="review date reached")
    assert [r.case_id for r in expired] == [a]
    assert _barred(engine) == {SHARED}
    assert _outbox(engine)[-1] == (a, "expire", [["remove", ONLY_A, f"case:{a}"]])
    clock.advance(days=30)
    assert [r.case_id for r in hub.expire_due(handler="h", reason="sweep")] == [b]
    assert _barred(engine) == set()


def test_declined_and_unapproved_cases_bar_nothing(hub: Hub, engine: Engine) -> None:
    c = hub.create_case(parse_case_request(make_request()), handler="h", reason="r")
    hub.transition(c, Action.ASSESS, handler="h", reason="r")
    assert _barred(engine) == set()
    hub.transition(c, Action.DECLINE, handler="h", reason="not substantiated")
    assert _barred(engine) == set()
    assert _outbox(engine) == []


def test_duplicate_numbers_in_one_case_count_once(hub: Hub, engine: Engine) -> None:
    people = [
        {"name": "One", "phones": ["07700 900001", "07700900001"]},
        {"name": "Two", "phones": ["+447700900001"]},
    ]
    c = hub.create_case(parse_case_request(make_request(people=people)), handler="h", reason="r")
    hub.transition(c, Action.ASSESS, handler="h", reason="r")
    result = hub.transition(c, Action.APPROVE, handler="h", reason="r")
    assert result.adds == 1
    lifted = hub.transition(c, Action.LIFT, handler="h", reason="r")
    assert lifted.removes == 1
    assert _barred(engine) == set()


def test_bar_changes_are_serialised(hub: Hub, engine: Engine) -> None:
    """While one transaction holds the bars lock, a transition waits for it (so two handlers can
    never both read a count of one and both publish a 'remove', or lose an 'add')."""
    a = _approved(hub, ["07700 900001"])
    b = _approved(hub, ["07700 900001"])
    finished = threading.Event()

    def lift_b() -> None:
        hub.transition(b, Action.LIFT, handler="h2", reason="r")
        finished.set()

    with engine.connect() as holder:
        holder.begin()  # SQLite: BEGIN IMMEDIATE takes the write lock
        lock_bars(holder)  # PostgreSQL: the table lock every bar-changing transaction takes
        worker = threading.Thread(target=lift_b)
        worker.start()
        assert not finished.wait(0.5), "a transition ran while another held the bars lock"
        # The holder lifts a meanwhile: b's lift, once it runs, must see a's bar released.
        release_bars(holder, a, hub.clock())
        holder.commit()
    worker.join(timeout=30)
    assert finished.is_set()
    assert _barred(engine) == set()
    assert _outbox(engine)[-1] == (b, "lift", [["remove", SHARED, f"case:{b}"]])


def test_outbox_row_commits_with_the_case_change_or_not_at_all(
    hub: Hub, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The outbox is written in the transaction of the case change (issue 5, "Publishing without
    loss"): if anything after it fails, neither the bars, nor the state, nor the 'add' remain."""
    c = hub.create_case(parse_case_request(make_request()), handler="h", reason="r")
    hub.transition(c, Action.ASSESS, handler="h", reason="r")

    def audit_fails(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("audit write failed")

    monkeypatch.setattr(cases_mod, "record", audit_fails)
    with pytest.raises(RuntimeError, match="audit write failed"):
        hub.transition(c, Action.APPROVE, handler="h", reason="r")
    monkeypatch.undo()
    assert _outbox(engine) == []
    assert _barred(engine) == set()
    with engine.connect() as conn:
        assert conn.execute(select(cases.c.state).where(cases.c.id == c)).scalar_one() == (
            "assessing"
        )
    # And once the failure is gone the same approval goes through whole.
    assert hub.transition(c, Action.APPROVE, handler="h", reason="r").adds == 2
    assert [action for _, action, _ in _outbox(engine)] == ["approve"]
