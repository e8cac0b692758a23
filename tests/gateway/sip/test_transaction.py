"""The transaction table (RFC 3261 §17, RFC 6026) and its timers."""

from __future__ import annotations

import pytest

from gateway.sip.transaction import TRANSITIONS, Event, Kind, State, Timers, Transaction

T = Timers(0.5, 4.0, 5.0)


def test_every_state_but_terminated_has_a_way_out() -> None:
    for kind in Kind:
        states = {s for (k, s, _) in TRANSITIONS if k is kind}
        for state in states:
            nexts = {
                TRANSITIONS[(kind, state, e)][0]
                for (k, s, e) in TRANSITIONS
                if (k, s) == (kind, state)
            }
            assert nexts - {state}, f"{kind} {state} can never leave"


def test_missing_transition_is_an_error() -> None:
    tx = Transaction.server(True, ("k",), False, T)
    assert not tx.accepts(Event.TIMER_A)
    with pytest.raises(KeyError):
        tx.handle(Event.TIMER_A, 0.0)


def test_invite_client_timer_a_doubles_until_b() -> None:
    tx = Transaction.client(True, ("b", "INVITE"), False, T, 0.0)
    fired = []
    now = 0.0
    while not tx.terminated:
        now = tx.next_deadline() or now
        for ev in tx.due(now):
            if tx.accepts(ev):
                fired.append((now, ev.value, tx.handle(ev, now)))
    assert [t for t, e, _ in fired if e == "A"] == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert fired[-1][1:] == ("B", ("timeout",))
    assert fired[-1][0] == 32.0


def test_invite_client_reliable_has_no_timer_a_and_d_is_zero() -> None:
    tx = Transaction.client(True, ("b", "INVITE"), True, T, 0.0)
    assert set(tx.deadlines) == {"B"}
    assert tx.handle(Event.RECV_FINAL, 1.0) == ("send_ack", "pass_up")
    assert tx.deadlines == {"D": 1.0}


def test_invite_server_non_2xx_g_capped_at_t2_then_h() -> None:
    tx = Transaction.server(True, ("k",), False, T)
    tx.handle(Event.SEND_FINAL, 0.0)
    assert tx.state is State.COMPLETED
    times = []
    now = 0.0
    while tx.state is State.COMPLETED:
        now = tx.next_deadline() or now
        for ev in tx.due(now):
            if tx.accepts(ev):
                tx.handle(ev, now)
                times.append((now, ev.value))
    gs = [t for t, e in times if e == "G"]
    assert gs[:5] == [0.5, 1.5, 3.5, 7.5, 11.5]  # 0.5, 1, 2, 4, 4 ...
    assert times[-1] == (32.0, "H")


def test_rfc6026_accepted_absorbs_invite_and_forwards_2xx() -> None:
    tx = Transaction.server(True, ("k",), False, T)
    assert tx.handle(Event.SEND_2XX, 0.0) == ()
    assert tx.state is State.ACCEPTED and tx.deadlines == {"L": 32.0}
    assert tx.handle(Event.REQUEST, 1.0) == ()  # retransmitted INVITE absorbed
    assert tx.accepts(Event.SEND_2XX)


def test_non_invite_client_e_goes_to_t2_in_proceeding() -> None:
    tx = Transaction.client(False, ("b", "BYE"), False, T, 0.0)
    tx.handle(Event.RECV_1XX, 0.1)
    assert tx.state is State.PROCEEDING
    tx.due(0.5)
    assert tx.handle(Event.TIMER_E, 0.5) == ("resend_request",)
    assert tx.deadlines["E"] == 4.5
