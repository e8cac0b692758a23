"""The workflow graph: every (state, action) pair, legal and illegal, in the table and on a DB."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from hub import Action, Hub, IllegalTransition, State, TransitionRefused, parse_case_request
from hub.schema import audit_log, case_transitions, cases
from hub.workflow import TERMINAL_STATES, TRANSITIONS, allowed_actions, next_state
from tests.hub.conftest import FakeClock, make_request

# The graph of issue 5, written out independently of hub/workflow.py.
LEGAL = {
    (State.RECEIVED, Action.ASSESS): State.ASSESSING,
    (State.ASSESSING, Action.APPROVE): State.APPROVED,
    (State.ASSESSING, Action.DECLINE): State.DECLINED,
    (State.APPROVED, Action.LIFT): State.LIFTED,
    (State.APPROVED, Action.EXPIRE): State.EXPIRED,
}
ALL_PAIRS = list(itertools.product(State, Action))
# How to reach each state from `received`.
PATH = {
    State.RECEIVED: [],
    State.ASSESSING: [Action.ASSESS],
    State.APPROVED: [Action.ASSESS, Action.APPROVE],
    State.DECLINED: [Action.ASSESS, Action.DECLINE],
    State.LIFTED: [Action.ASSESS, Action.APPROVE, Action.LIFT],
    State.EXPIRED: [Action.ASSESS, Action.APPROVE, Action.EXPIRE],
}


def test_table_is_exactly_the_issue_graph() -> None:
    assert dict(TRANSITIONS) == LEGAL
    assert {State.DECLINED, State.LIFTED, State.EXPIRED} == TERMINAL_STATES


@pytest.mark.parametrize(("state", "action"), ALL_PAIRS, ids=str)
def test_every_pair_in_the_table(state: State, action: Action) -> None:
    if (state, action) in LEGAL:
        assert next_state(state, action) is LEGAL[(state, action)]
        return
    with pytest.raises(IllegalTransition) as info:
        next_state(state, action)
    message = str(info.value)
    assert f"cannot {action.value} a case that is {state.value}" in message
    allowed = [a.value for (s, a) in LEGAL if s is state]
    if allowed:
        assert f"allowed from {state.value}: {', '.join(allowed)}" in message
    else:
        assert "none: the case is closed" in message
    assert info.value.allowed == allowed_actions(state)


def _case_in(hub: Hub, clock: FakeClock, state: State) -> int:
    case_id = hub.create_case(parse_case_request(make_request()), handler="h.one", reason="intake")
    for action in PATH[state]:
        if action is Action.EXPIRE:
            clock.advance(days=400)  # past the default yearly review date
        hub.transition(case_id, action, handler="h.one", reason=f"to {action.value}")
    return case_id


def _count(engine: Engine, table: object) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())  # type: ignore[arg-type]


def test_every_pair_on_the_database(hub: Hub, clock: FakeClock, engine: Engine) -> None:
    """Each illegal pair is refused with the state unchanged and nothing written; each legal
    pair moves the case and records the handler, the reason and the history."""
    for state, action in ALL_PAIRS:
        case_id = _case_in(hub, clock, state)
        if action is Action.EXPIRE:
            clock.advance(days=400)
        before_audit = _count(engine, audit_log)
        before_hist = _count(engine, case_transitions)
        if (state, action) in LEGAL:
            result = hub.transition(case_id, action, handler="h.two", reason="why not")
            assert (result.from_state, result.to_state) == (state.value, LEGAL[(state, action)])
            assert _count(engine, audit_log) == before_audit + 1
            assert _count(engine, case_transitions) == before_hist + 1
        else:
            with pytest.raises(IllegalTransition, match=f"that is {state.value}"):
                hub.transition(case_id, action, handler="h.two", reason="why not")
            assert _count(engine, audit_log) == before_audit
            assert _count(engine, case_transitions) == before_hist
        with engine.connect() as conn:
            now = conn.execute(select(cases.c.state).where(cases.c.id == case_id)).scalar_one()
        expected = LEGAL.get((state, action), state)
        assert now == expected.value


def test_expire_waits_for_the_review_date(hub: Hub, clock: FakeClock) -> None:
    case_id = _case_in(hub, clock, State.APPROVED)
    review = clock.now.date() + dt.timedelta(days=365)
    with pytest.raises(TransitionRefused, match=f"review date is {review.isoformat()}"):
        hub.transition(case_id, Action.EXPIRE, handler="h", reason="early")
    assert hub.expire_due(handler="h", reason="sweep") == []
    clock.advance(days=365)
    done = hub.expire_due(handler="h", reason="sweep")
    assert [(r.case_id, r.to_state) for r in done] == [(case_id, "expired")]


def test_review_date_must_be_future_and_only_on_approval(hub: Hub, clock: FakeClock) -> None:
    case_id = _case_in(hub, clock, State.ASSESSING)
    with pytest.raises(TransitionRefused, match="not in the future"):
        hub.transition(
            case_id, Action.APPROVE, handler="h", reason="r", review_date=clock.now.date()
        )
    other = _case_in(hub, clock, State.RECEIVED)
    with pytest.raises(TransitionRefused, match="only when approving"):
        hub.transition(
            other, Action.ASSESS, handler="h", reason="r", review_date=dt.date(2030, 1, 1)
        )
    result = hub.transition(
        case_id, Action.APPROVE, handler="h", reason="r", review_date=dt.date(2027, 6, 1)
    )
    assert result.to_state == "approved"


def test_transition_needs_a_handler_and_a_reason(hub: Hub, clock: FakeClock) -> None:
    case_id = _case_in(hub, clock, State.RECEIVED)
    with pytest.raises(ValueError, match="handler"):
        hub.transition(case_id, Action.ASSESS, handler=" ", reason="r")
    with pytest.raises(ValueError, match="reason"):
        hub.transition(case_id, Action.ASSESS, handler="h", reason="")


def test_a_case_keeps_everything_the_request_said(hub: Hub, clock: FakeClock) -> None:
    """Who asked, how to reach them, consent, why, the offender and every protected person's
    phones, addresses and emails (issue 5, "Cases") come back whole from the database."""
    people = [
        {
            "name": "Victim One",
            "phones": ["07700 900001", "020 7946 0001"],
            "addresses": ["1 Drama Street, Leeds LS1 1AA", "2 Other Road, York YO1 1AA"],
            "emails": ["victim.one@example.org"],
        },
        {"name": "Child Two", "addresses": ["1 Drama Street, Leeds LS1 1AA"]},
    ]
    request = make_request(requester_type="on_behalf_with_consent", consent=True, people=people)
    case_id = hub.create_case(parse_case_request(request), handler="h", reason="intake")
    shown = hub.show_case(case_id, handler="h", reason="check").as_json()
    assert shown["requester"] == {
        "type": "on_behalf_with_consent",
        "name": "PC Drama",
        "contact": "020 7946 0999",
    }
    assert shown["victim_consent"] is True
    assert shown["reason"] == "repeated threatening calls from prison"
    assert shown["offender"] == {
        "name": "Joe Bloggs",
        "prison_number": "A1234BC",
        "date_of_birth": "1985-04-01",
        "establishment": "HMP Leeds",
    }
    assert [
        (p["name"], [ph["e164"] for ph in p["phones"]], p["addresses"], p["emails"])
        for p in shown["protected"]
    ] == [
        (
            "Victim One",
            ["+447700900001", "+442079460001"],
            people[0]["addresses"],
            people[0]["emails"],
        ),
        ("Child Two", [], people[1]["addresses"], []),
    ]
    assert (shown["state"], shown["people"], shown["numbers"]) == ("received", 2, 2)
