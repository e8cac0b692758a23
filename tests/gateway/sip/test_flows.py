"""Round trips through the harness: fake PBX <-> ProxyCore <-> fake trunk (hand-driven clock)."""

from __future__ import annotations

import ipaddress

from gateway.sip import Message, Refused, Screened, TransactionTimedOut
from gateway.sip import parse_message as parse_message_
from tests.gateway.sip.harness import (
    GW,
    PBX,
    TRUNK,
    Harness,
    make_config,
    methods,
    request,
    response_to,
    statuses,
)

ROUTE_US = f"Route: <sip:{GW[0]}:{GW[1]};lr>"
ALLOWED_URI = "sip:07700900123@127.0.0.1:5060"
BLOCKED_URI = "sip:07700900666@127.0.0.1:5060"


def _invite(h: Harness, ruri: str = ALLOWED_URI, **kw: object) -> Message | None:
    """PBX sends an INVITE; returns what reached the trunk (None if nothing did)."""
    h.pbx_send(request("INVITE", ruri, **kw))  # type: ignore[arg-type]
    got = h.take_trunk()
    assert len(got) <= 1
    return got[0] if got else None


def _establish(h: Harness) -> Message:
    inv = _invite(h)
    assert inv is not None
    h.trunk_send(response_to(inv, 180))
    h.trunk_send(response_to(inv, 200))
    assert statuses(h.take_pbx()) == [100, 180, 200]
    h.pbx_send(
        request("ACK", "sip:callee@192.0.2.50:5060", to_tag="trunktag", branch="z9hG4bKack",
                extra=(ROUTE_US,))
    )  # fmt: skip
    assert methods(h.take_trunk()) == ["ACK"]
    return inv


def _in_dialog(method: str, cseq: int, branch: str, extra: tuple[str, ...] = ()) -> bytes:
    return request(
        method, "sip:callee@192.0.2.50:5060", to_tag="trunktag", branch=branch, cseq=cseq,
        extra=(ROUTE_US, *extra),
    )  # fmt: skip


def _from_trunk(method: str, cseq: int, branch: str, extra: tuple[str, ...] = ()) -> bytes:
    """An in-dialog request the callee side sends back towards the PBX."""
    lines = [
        f"{method} sip:2001@127.0.0.1:5070 SIP/2.0",
        f"Via: SIP/2.0/UDP 192.0.2.50:5060;branch={branch}",
        "From: <sip:someone@gw>;tag=trunktag",
        'To: "Wing 3" <sip:2001@pbx.example>;tag=pbxtag',
        "Call-ID: call-1@pbx",
        f"CSeq: {cseq} {method}",
        "Max-Forwards: 70",
        ROUTE_US,
        *extra,
        "Content-Length: 0",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _refusals(h: Harness) -> list[str]:
    return [e.why for e in h.all_events if isinstance(e, Refused)]


def _shape(m: Message) -> tuple[int, str, tuple[str, ...]]:
    """What a refusal looks like, tags and Call-IDs aside (safety invariant 3)."""
    return (m.status, m.reason, tuple(k for k, _, _ in m.headers))


# -- the main flows -------------------------------------------------------------------------


def test_allowed_call_100_180_200_ack_bye() -> None:
    h = Harness()
    inv = _invite(h)
    assert statuses(h.take_pbx()) == [100]
    assert inv is not None and inv.uri == ALLOWED_URI and inv.max_forwards == 69
    assert inv.get("record-route") == "<sip:127.0.0.1:5060;lr>"
    top = inv.top_via()
    assert top.sent_by == "127.0.0.1:5060" and (top.branch or "").startswith("z9hG4bK")
    assert "rport=5070" in inv.via_values()[1]  # RFC 3581 on the PBX's Via

    h.trunk_send(response_to(inv, 100, to_tag=None))  # hop by hop: not relayed
    h.trunk_send(response_to(inv, 180))
    h.trunk_send(response_to(inv, 200))
    got = h.take_pbx()
    assert statuses(got) == [180, 200]
    ok = got[-1]
    assert len(ok.via_values()) == 1 and ok.to().tag == "trunktag"
    assert ok.get("record-route") == "<sip:127.0.0.1:5060;lr>"

    h.pbx_send(_in_dialog("ACK", 1, "z9hG4bKack"))
    [ack] = h.take_trunk()
    assert ack.method == "ACK" and ack.get("route") is None and ack.max_forwards == 69

    h.pbx_send(_in_dialog("BYE", 2, "z9hG4bKbye"))
    [bye] = h.take_trunk()
    h.trunk_send(response_to(bye, 200, to_tag=None))
    assert statuses(h.take_pbx()) == [200]
    assert h.screened == ["07700900123"]
    h.advance(40)
    assert h.core.active_transactions == 0


def test_blocked_call_gets_403_and_its_ack_is_absorbed() -> None:
    h = Harness()
    assert _invite(h, "sip:9%2B447700900666@127.0.0.1:5060") is None
    [resp] = h.take_pbx()
    assert (resp.status, resp.reason) == (403, "Forbidden") and resp.to().tag
    screened = [e for e in h.all_events if isinstance(e, Screened)]
    assert [(e.verdict, e.dialled, e.caller) for e in screened] == [
        ("blocked", "9+447700900666", "2001")
    ]
    assert _refusals(h) == ["screen"]
    h.pbx_send(request("ACK", "sip:9%2B447700900666@127.0.0.1:5060", to_tag=resp.to().tag))
    assert h.take_trunk() == [] and h.take_pbx() == []
    h.advance(10)  # Timer I ends the Confirmed transaction
    assert h.core.active_transactions == 0


def test_invalid_and_blocked_refusals_look_the_same() -> None:
    h = Harness()
    _invite(h, BLOCKED_URI, call_id="a", branch="z9hG4bKa")
    _invite(h, "sip:alice@127.0.0.1:5060", call_id="b", branch="z9hG4bKb")
    _invite(h, "sip:127.0.0.1:5060", call_id="c", branch="z9hG4bKc")  # no user part
    _invite(h, "sip:0770090%41123@127.0.0.1", call_id="d", branch="z9hG4bKd")  # a letter
    _invite(h, "tel:+44-20-7946-0666", call_id="e", branch="z9hG4bKe")
    _invite(h, "sip:+447700900123;foo=bar@127.0.0.1;user=phone", call_id="f", branch="z9hG4bKf")
    got = h.take_pbx()
    assert h.to_trunk == []
    assert len({_shape(m) for m in got}) == 1 and got[0].status == 403
    verdicts = [e.verdict for e in h.all_events if isinstance(e, Screened)]
    assert verdicts == ["blocked", "invalid", "invalid", "invalid", "blocked", "invalid"]


def test_custom_refusal_status() -> None:
    h = Harness(config=make_config(refusal_status=404, refusal_reason="Not Found"))
    _invite(h, BLOCKED_URI)
    assert [(m.status, m.reason) for m in h.take_pbx()] == [(404, "Not Found")]


def test_request_uri_decides_never_to() -> None:
    h = Harness()
    data = request("INVITE", BLOCKED_URI).replace(
        b"To: <sip:someone@gw>", b"To: <sip:07700900123@gw>"
    )
    h.pbx_send(data)
    assert statuses(h.take_pbx()) == [403] and h.to_trunk == []


def test_never_block_numbers_pass() -> None:
    h = Harness(screen=lambda d: "blocked" if d != "999" else "allowed")
    assert _invite(h, "sip:999@127.0.0.1") is not None


def test_screen_that_raises_fails_closed() -> None:
    def broken(dialled: str) -> str:
        raise RuntimeError("list unavailable")

    h = Harness(screen=broken)
    assert _invite(h) is None
    assert statuses(h.take_pbx()) == [403]


def test_unknown_verdict_is_invalid() -> None:
    h = Harness(screen=lambda d: "maybe")
    assert _invite(h) is None and statuses(h.take_pbx()) == [403]


# -- CANCEL ---------------------------------------------------------------------------------


def test_cancel_after_provisional() -> None:
    h = Harness()
    inv = _invite(h)
    assert inv is not None
    h.trunk_send(response_to(inv, 180))
    h.take_pbx()
    h.pbx_send(request("CANCEL", ALLOWED_URI, cseq_method="CANCEL"))
    assert sorted(statuses(h.take_pbx())) == [200, 487]
    [cancel] = h.take_trunk()
    assert cancel.method == "CANCEL" and cancel.top_via().branch == inv.top_via().branch
    h.trunk_send(response_to(cancel, 200))
    h.trunk_send(response_to(inv, 487))
    assert methods(h.take_trunk()) == ["ACK"]  # hop-by-hop ACK for the trunk's 487
    assert h.take_pbx() == []  # the PBX already has its 487
    h.pbx_send(request("ACK", ALLOWED_URI, to_tag="x"))  # ACK for our 487: absorbed
    assert h.take_trunk() == []
    h.advance(40)
    assert h.core.active_transactions == 0


def test_cancel_before_provisional_waits_for_one() -> None:
    h = Harness()
    inv = _invite(h)
    assert inv is not None
    h.take_pbx()
    h.pbx_send(request("CANCEL", ALLOWED_URI, cseq_method="CANCEL"))
    assert sorted(statuses(h.take_pbx())) == [200, 487]
    assert h.take_trunk() == []  # §9.1: no CANCEL before a provisional
    h.trunk_send(response_to(inv, 180))
    assert methods(h.take_trunk()) == ["CANCEL"]
    assert h.take_pbx() == []


def test_cancel_without_invite_gets_481() -> None:
    h = Harness()
    h.pbx_send(request("CANCEL", ALLOWED_URI, cseq_method="CANCEL"))
    assert statuses(h.take_pbx()) == [481]


def test_late_2xx_after_cancel_still_reaches_the_pbx() -> None:
    h = Harness()
    inv = _invite(h)
    assert inv is not None
    h.trunk_send(response_to(inv, 180))
    h.pbx_send(request("CANCEL", ALLOWED_URI, cseq_method="CANCEL"))
    h.take_pbx()
    h.take_trunk()
    h.trunk_send(response_to(inv, 200))  # the callee answered as the CANCEL crossed
    assert statuses(h.take_pbx()) == [200]  # the PBX must see it to ACK and BYE it


# -- timeouts -------------------------------------------------------------------------------


def test_unanswered_trunk_timer_b_gives_408_and_retransmits_meanwhile() -> None:
    h = Harness()
    inv = _invite(h)
    assert inv is not None
    h.take_pbx()
    h.advance(31.0)
    resent = h.take_trunk()
    # Timer A doubles from T1: resent at 0.5, 1.5, 3.5, 7.5, 15.5 (and 31.5) s
    assert methods(resent) == ["INVITE"] * 5
    assert all(m.render() == inv.render() for m in resent)
    h.advance(1.5)
    assert statuses(h.take_pbx())[0] == 408  # then Timer G repeats it until the PBX ACKs
    assert any(isinstance(e, TransactionTimedOut) and e.timer == "B" for e in h.all_events)


def test_ringing_forever_timer_c_cancels_and_gives_408() -> None:
    h = Harness(config=make_config(timer_c_s=181.0))
    inv = _invite(h)
    assert inv is not None
    h.trunk_send(response_to(inv, 180))
    h.take_pbx()
    h.advance(100)
    h.trunk_send(response_to(inv, 183))  # a provisional resets Timer C (§16.6 step 11)
    h.take_pbx()
    h.advance(180)
    assert h.take_trunk() == [] and h.take_pbx() == []
    h.advance(2)
    assert methods(h.take_trunk())[0] == "CANCEL"  # then Timer E repeats it: no answer here
    assert statuses(h.take_pbx())[0] == 408
    assert any(isinstance(e, TransactionTimedOut) and e.timer == "C" for e in h.all_events)


def test_timer_c_after_only_a_100_trying_cancels_and_gives_408() -> None:
    # Found by the session fuzz test: the trunk's 100 moves the client transaction to
    # Proceeding without resetting Timer C (§16.7 step 2); when C fires, a CANCEL is due (§16.8).
    h = Harness(config=make_config(timer_c_s=181.0))
    inv = _invite(h)
    assert inv is not None
    h.trunk_send(response_to(inv, 100))
    h.take_pbx()
    h.advance(182)
    assert methods(h.take_trunk())[0] == "CANCEL"
    assert statuses(h.take_pbx())[0] == 408
    h.trunk_send(response_to(inv, 487))
    assert methods(h.take_trunk()) == ["ACK"]  # hop-by-hop ACK for the 487
    assert h.take_pbx() == []  # the caller already has its 408


def test_non_invite_timeout_gives_408() -> None:
    h = Harness()
    h.pbx_send(request("MESSAGE", ALLOWED_URI, body=b"hello"))
    assert methods(h.take_trunk()) == ["MESSAGE"]
    h.advance(33)
    assert methods(h.take_trunk()) != []  # Timer E retransmissions
    assert statuses(h.take_pbx()) == [408]


# -- lost packets and retransmissions -------------------------------------------------------


def test_retransmitted_invite_is_screened_once_and_answered_from_the_transaction() -> None:
    h = Harness()
    inv = _invite(h)
    assert inv is not None
    h.pbx_send(request("INVITE", ALLOWED_URI))  # our 100 was lost
    assert statuses(h.take_pbx()) == [100, 100]
    assert h.take_trunk() == []
    h.trunk_send(response_to(inv, 180))
    h.pbx_send(request("INVITE", ALLOWED_URI))
    assert statuses(h.take_pbx()) == [180, 180]
    assert h.screened == ["07700900123"]


def test_retransmitted_blocked_invite_gets_the_same_403_and_is_screened_once() -> None:
    h = Harness()
    _invite(h, BLOCKED_URI)
    h.pbx_send(request("INVITE", BLOCKED_URI))
    first, second = h.take_pbx()
    assert first.render() == second.render()
    assert h.screened == ["07700900666"]


def test_lost_ack_for_403_means_the_403_is_retransmitted_until_timer_h() -> None:
    h = Harness()
    _invite(h, BLOCKED_URI)
    h.take_pbx()
    h.advance(31.0)
    assert statuses(h.take_pbx()) == [403] * 9  # Timer G: 0.5, 1, 2, 4, 4, 4 ... (capped at T2)
    h.advance(2.0)  # Timer H (32 s) gives up
    assert h.core.active_transactions == 0


def test_lost_ack_to_trunk_answered_again_and_not_relayed_twice() -> None:
    h = Harness()
    inv = _invite(h)
    assert inv is not None
    h.trunk_send(response_to(inv, 486, reason="Busy Here"))
    assert statuses(h.take_pbx()) == [100, 486]
    [ack] = h.take_trunk()
    assert ack.method == "ACK" and ack.top_via().branch == inv.top_via().branch
    h.trunk_send(response_to(inv, 486, reason="Busy Here"))  # our ACK was lost
    assert methods(h.take_trunk()) == ["ACK"]
    assert h.take_pbx() == []


def test_retransmitted_2xx_is_relayed_again() -> None:
    h = Harness()
    inv = _invite(h)
    assert inv is not None
    h.trunk_send(response_to(inv, 200))
    h.trunk_send(response_to(inv, 200))  # the PBX's ACK was slow
    assert statuses(h.take_pbx()) == [100, 200, 200]


def test_retransmitted_bye_is_absorbed_then_answered_from_the_transaction() -> None:
    h = Harness()
    _establish(h)
    h.pbx_send(_in_dialog("BYE", 2, "z9hG4bKbye"))
    h.pbx_send(_in_dialog("BYE", 2, "z9hG4bKbye"))
    [bye] = h.take_trunk()
    h.trunk_send(response_to(bye, 200, to_tag=None))
    h.pbx_send(_in_dialog("BYE", 2, "z9hG4bKbye"))
    assert statuses(h.take_pbx()) == [200, 200]
    assert h.take_trunk() == []


# -- redirects, REFER, MESSAGE, SUBSCRIBE ---------------------------------------------------


def test_3xx_with_a_blocked_contact_becomes_the_refusal() -> None:
    h = Harness()
    inv = _invite(h)
    assert inv is not None
    h.trunk_send(response_to(inv, 302, contact="<sip:07700900666@192.0.2.50>"))
    got = h.take_pbx()
    assert statuses(got) == [100, 403]
    assert got[1].get("contact") is None
    assert methods(h.take_trunk()) == ["ACK"]


def test_3xx_keeps_only_allowed_contacts() -> None:
    h = Harness()
    inv = _invite(h)
    assert inv is not None
    h.trunk_send(
        response_to(
            inv,
            300,
            contact="<sip:07700900666@192.0.2.50>, <sip:07700900124@192.0.2.50>, <sip:bob@x>",
        )
    )
    redirect = h.take_pbx()[-1]
    assert redirect.status == 300
    assert redirect.values("contact") == ["<sip:07700900124@192.0.2.50>"]


def test_refer_in_dialog_is_screened_on_refer_to() -> None:
    h = Harness()
    _establish(h)
    h.pbx_send(_in_dialog("REFER", 2, "z9hG4bKr1", extra=("Refer-To: <sip:07700900666@x>",)))
    assert statuses(h.take_pbx()) == [403] and h.take_trunk() == []
    h.pbx_send(_in_dialog("REFER", 3, "z9hG4bKr2", extra=("Refer-To: <tel:+447700900124>",)))
    assert methods(h.take_trunk()) == ["REFER"]
    h.pbx_send(_in_dialog("REFER", 4, "z9hG4bKr3", extra=("Refer-To: <sip:bob@example.com>",)))
    assert statuses(h.take_pbx()) == [403]


def test_refer_from_the_trunk_is_screened_too() -> None:
    h = Harness()
    _establish(h)
    h.trunk_send(_from_trunk("REFER", 1, "z9hG4bKt1", ("Refer-To: <sip:07700900666@x>",)))
    assert statuses(h.take_trunk()) == [403] and h.take_pbx() == []
    h.trunk_send(_from_trunk("REFER", 2, "z9hG4bKt2", ("Refer-To: <sip:07700900124@x>",)))
    [refer] = h.take_pbx()
    assert refer.method == "REFER" and refer.get("route") is None


def test_bye_from_the_trunk_reaches_the_pbx() -> None:
    h = Harness()
    _establish(h)
    h.trunk_send(_from_trunk("BYE", 1, "z9hG4bKt1"))
    [bye] = h.take_pbx()
    assert bye.method == "BYE" and bye.top_via().sent_by == "127.0.0.1:5060"
    lines = [
        f"{n}: {v}" for k, n, v in bye.headers if k in ("via", "from", "to", "call-id", "cseq")
    ]
    h.pbx_send(
        ("SIP/2.0 200 OK\r\n" + "\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode()
    )
    assert statuses(h.take_trunk()) == [200]
    # the dialog is over: the trunk cannot send into it any more
    h.trunk_send(_from_trunk("INFO", 2, "z9hG4bKt2"))
    assert statuses(h.take_trunk()) == [403]


def test_re_invite_rescreens_the_dialog_target() -> None:
    barred: set[str] = set()
    h = Harness(screen=lambda d: "blocked" if d in barred else "allowed")
    _establish(h)
    h.pbx_send(_in_dialog("INVITE", 2, "z9hG4bKre1"))
    assert methods(h.take_trunk()) == ["INVITE"]
    barred.add("07700900123")  # the number was barred mid-call
    h.pbx_send(_in_dialog("INVITE", 3, "z9hG4bKre2"))
    assert statuses(h.take_pbx())[-1] == 403
    assert h.take_trunk() == []


def test_message_and_subscribe_are_screened() -> None:
    h = Harness()
    h.pbx_send(request("MESSAGE", BLOCKED_URI, body=b"hi"))
    h.pbx_send(request("SUBSCRIBE", BLOCKED_URI, branch="z9hG4bKs", extra=("Event: presence",)))
    assert statuses(h.take_pbx()) == [403, 403] and h.to_trunk == []
    h.pbx_send(request("MESSAGE", ALLOWED_URI, branch="z9hG4bKm2", body=b"hi"))
    [msg] = h.take_trunk()
    assert msg.body == b"hi"
    h.trunk_send(response_to(msg, 202))
    assert statuses(h.take_pbx()) == [202]


# -- who may send what ----------------------------------------------------------------------


def test_sources_outside_allow_from_get_the_refusal() -> None:
    h = Harness()
    h.pbx_send(request("INVITE", ALLOWED_URI), source=("198.51.100.7", 5060))
    assert h.to_trunk == []
    [out] = h.elsewhere
    assert out.dest == ("198.51.100.7", 5060)
    refused = Harness()
    _invite(refused, BLOCKED_URI)
    assert _shape(parse_message_(out.data)) == _shape(refused.take_pbx()[0])
    assert _refusals(h) == ["allow_from"]
    assert h.screened == []


def test_unsolicited_requests_from_the_trunk_are_refused() -> None:
    h = Harness()
    h.trunk_send(
        request("INVITE", "sip:2001@127.0.0.1:5060", via_host="192.0.2.50:5060", from_tag="t")
    )
    assert statuses(h.take_trunk()) == [403] and h.to_pbx == []
    h.trunk_send(
        request(
            "BYE", "sip:2001@127.0.0.1", via_host="192.0.2.50", to_tag="nope", branch="z9hG4bKx"
        )
    )
    assert statuses(h.take_trunk()) == [403]
    assert _refusals(h) == ["trunk_unsolicited", "trunk_unsolicited"]


def test_options_keepalive_to_the_gateway() -> None:
    h = Harness()
    h.pbx_send(request("OPTIONS", "sip:127.0.0.1:5060"))
    [ok] = h.take_pbx()
    assert ok.status == 200 and "INVITE" in (ok.get("allow") or "")
    h.pbx_send(request("OPTIONS", "sip:127.0.0.1", branch="z9hG4bKo2", max_forwards=0))
    assert statuses(h.take_pbx()) == [200]
    assert h.to_trunk == [] and h.screened == []


def test_drain_refuses_new_invites_with_503_and_lets_calls_finish() -> None:
    h = Harness()
    inv = _invite(h)
    assert inv is not None
    h.core.drain(h.now, 30)
    _invite(h, call_id="new", branch="z9hG4bKnew", from_tag="n")
    got = h.take_pbx()
    assert statuses(got) == [100, 503] and got[-1].get("retry-after") == "30"
    h.trunk_send(response_to(inv, 200))
    assert statuses(h.take_pbx()) == [200]
    assert any(isinstance(e, Refused) and e.why == "draining" for e in h.all_events)


def test_register_is_refused_unless_configured() -> None:
    h = Harness()
    h.pbx_send(request("REGISTER", "sip:192.0.2.50"))
    assert statuses(h.take_pbx()) == [403]
    h2 = Harness(config=make_config(forward_register=True))
    h2.pbx_send(request("REGISTER", "sip:192.0.2.50"))
    assert methods(h2.take_trunk()) == ["REGISTER"]


# -- validation (§16.3) ---------------------------------------------------------------------


def test_max_forwards_zero_is_483_and_one_is_forwarded_as_zero() -> None:
    h = Harness()
    _invite(h, max_forwards=0)
    assert statuses(h.take_pbx()) == [483]
    inv = _invite(h, max_forwards=1, branch="z9hG4bKmf1", call_id="mf1")
    assert inv is not None and inv.max_forwards == 0
    missing = _invite(h, max_forwards=None, branch="z9hG4bKmf2", call_id="mf2")
    assert missing is not None and missing.max_forwards == 70


def test_a_request_that_comes_back_is_a_loop_482() -> None:
    h = Harness()
    inv = _invite(h)
    assert inv is not None
    h.pbx_send(inv.render())  # the trunk routed it straight back through us
    assert statuses(h.take_pbx())[-1] == 482
    assert h.take_trunk() == []


def test_unknown_scheme_416_and_proxy_require_420() -> None:
    h = Harness()
    h.pbx_send(request("INVITE", "mailto:someone@example.com"))
    h.pbx_send(request("INVITE", ALLOWED_URI, branch="z9hG4bK2", extra=("Proxy-Require: foo",)))
    got = h.take_pbx()
    assert statuses(got) == [416, 420] and got[1].get("unsupported") == "foo"
    assert h.to_trunk == [] and h.screened == []


def test_malformed_request_from_the_pbx_gets_400_never_forwarded() -> None:
    h = Harness()
    h.pbx_send(request("INVITE", ALLOWED_URI).replace(b"CSeq: 1 INVITE", b"CSeq: x INVITE"))
    [bad] = h.unparsable
    assert bad.data.startswith(b"SIP/2.0 400 ") and bad.dest == PBX and h.to_trunk == []
    h.pbx_send(request("INVITE", ALLOWED_URI, branch="z9hG4bK1").replace(b"To: <", b'To: "x <'))
    assert statuses(h.take_pbx()) == [400] and h.to_trunk == []
    h.pbx_send(request("INVITE", "sip:0770%zz@127.0.0.1", branch="z9hG4bK2"))
    assert statuses(h.take_pbx()) == [400] and h.to_trunk == []


def test_stray_and_forged_responses_are_dropped() -> None:
    h = Harness()
    inv = _invite(h)
    assert inv is not None
    h.take_pbx()
    h.trunk_send(response_to(inv, 200), source=("192.0.2.99", 5060))  # not the hop we used
    resp = response_to(inv, 200).replace(b"z9hG4bK", b"z9hG4bKX", 1)  # unknown branch
    h.trunk_send(resp)
    assert h.take_pbx() == []


def test_trunk_over_tcp_and_pbx_over_tcp() -> None:
    h = Harness(config=make_config(upstream=("tcp", TRUNK[0], TRUNK[1])))
    h.pbx_send(request("INVITE", ALLOWED_URI, transport="TCP"), transport="tcp")
    assert [o.transport for o in h.raw] == ["tcp", "tcp"]
    [inv] = h.take_trunk()
    assert inv.top_via().transport == "TCP"
    h.advance(10)
    assert h.take_trunk() == []  # no Timer A retransmissions on a reliable transport


def test_ipv4_mapped_pbx_source_is_allowed() -> None:
    h = Harness(config=make_config(allow_from=(ipaddress.ip_network("127.0.0.0/8"),)))
    h.pbx_send(request("OPTIONS", "sip:127.0.0.1"), source=("::ffff:127.0.0.1", PBX[1]))
    assert [o.data[:14] for o in h.elsewhere] == [b"SIP/2.0 200 OK"]


def test_options_to_our_host_with_a_user_part_is_answered_not_forwarded() -> None:
    h = Harness()
    h.pbx_send(request("OPTIONS", "sip:ping@127.0.0.1:5060"))
    assert statuses(h.take_pbx()) == [200] and h.to_trunk == []


def test_oversized_request_gets_513() -> None:
    h = Harness()
    h.pbx_send(request("MESSAGE", ALLOWED_URI, body=b"x" * 70_000), transport="tcp")
    assert statuses(h.take_pbx()) == [513] and h.to_trunk == []


def test_a_barred_request_uri_inside_a_dialog_is_refused() -> None:
    h = Harness()
    _establish(h)
    bad = request(
        "INFO", BLOCKED_URI, to_tag="trunktag", branch="z9hG4bKi1", cseq=2, extra=(ROUTE_US,)
    )
    h.pbx_send(bad)
    assert statuses(h.take_pbx()) == [403] and h.take_trunk() == []
    # ...but BYE always goes through: it can only end the call
    h.pbx_send(request("BYE", BLOCKED_URI, to_tag="trunktag", branch="z9hG4bKb", cseq=3))
    assert methods(h.take_trunk()) == ["BYE"]


def test_in_dialog_request_for_an_unknown_dialog_gets_481() -> None:
    h = Harness()
    h.pbx_send(_in_dialog("BYE", 2, "z9hG4bKbye"))
    assert statuses(h.take_pbx()) == [481] and h.to_trunk == []


def test_record_route_can_be_turned_off() -> None:
    h = Harness(config=make_config(record_route=False))
    inv = _invite(h)
    assert inv is not None and inv.get("record-route") is None


def test_cancel_of_a_refused_invite_gets_200_and_changes_nothing() -> None:
    h = Harness()
    _invite(h, BLOCKED_URI)
    h.pbx_send(request("CANCEL", BLOCKED_URI, cseq_method="CANCEL"))
    assert statuses(h.take_pbx()) == [403, 200] and h.to_trunk == []


def test_idle_dialog_expires_and_the_trunk_can_no_longer_use_it() -> None:
    h = Harness(config=make_config(dialog_idle_s=600.0))
    _establish(h)
    h.advance(300)
    h.trunk_send(_from_trunk("INFO", 1, "z9hG4bKt1"))  # in time: passes, and refreshes
    assert methods(h.take_pbx()) == ["INFO"]
    h.advance(615)
    assert statuses(h.take_trunk()) == [408]  # the PBX never answered that INFO (Timer F)
    h.trunk_send(_from_trunk("INFO", 2, "z9hG4bKt2"))
    assert statuses(h.take_trunk()) == [403]


def test_state_is_released_after_calls_end() -> None:
    h = Harness()
    for i in range(50):
        inv = _invite(h, call_id=f"c{i}", branch=f"z9hG4bKc{i}", from_tag=f"t{i}")
        assert inv is not None
        h.trunk_send(response_to(inv, 200))
        for method, cseq in (("ACK", 1), ("BYE", 2)):
            h.pbx_send(
                request(
                    method, "sip:callee@192.0.2.50", call_id=f"c{i}", from_tag=f"t{i}",
                    to_tag="trunktag", branch=f"z9hG4bK{method}{i}", cseq=cseq, extra=(ROUTE_US,),
                )
            )  # fmt: skip
        bye = next(m for m in h.take_trunk() if m.method == "BYE")
        h.trunk_send(response_to(bye, 200))
    assert len(h.core._dialogs) == 0
    h.advance(200)
    assert h.core.active_transactions == 0
    # Timer C tokens of finished calls no longer point at the calls
    assert all(not (isinstance(o, list) and o[0] is not None) for _, _, o in h.core._heap)


def test_timer_c_shorter_than_b_with_no_answer_gives_408_and_stops_retransmitting() -> None:
    h = Harness(config=make_config(timer_c_s=10.0))
    assert _invite(h) is not None
    h.take_pbx()
    h.advance(10.5)
    assert statuses(h.take_pbx())[0] == 408
    h.take_trunk()
    h.advance(30)
    assert methods(h.take_trunk()) == []


def test_ipv6_pbx_gateway_and_trunk() -> None:
    trunk = ("2001:db8::50", 5060)
    h = Harness(
        config=make_config(
            upstream=("udp", trunk[0], trunk[1]),
            local_host="::1",
            allow_from=(ipaddress.ip_network("::1/128"),),
        )
    )
    pbx = ("::1", 5070)
    h.core.receive(
        request("INVITE", "sip:07700900123@[::1]:5060", via_host="[::1]:5070"), "udp", pbx, h.now
    )
    out = h.core.outgoing()
    assert [o.dest for o in out] == [pbx, trunk]
    inv = parse_message_(out[1].data)
    assert inv.top_via().host == "[::1]" and inv.get("record-route") == "<sip:[::1]:5060;lr>"
    h.core.receive(response_to(inv, 200), "udp", trunk, h.now)
    [ok] = h.core.outgoing()
    assert ok.dest == pbx and ok.data.startswith(b"SIP/2.0 200")


def test_strict_routed_request_gets_its_uri_back_from_the_last_route() -> None:
    # §16.4: an RFC 2543 strict router puts our Record-Route in the Request-URI.
    h = Harness()
    _establish(h)
    h.pbx_send(
        request(
            "BYE", "sip:127.0.0.1:5060;lr", to_tag="trunktag", branch="z9hG4bKs", cseq=2,
            extra=("Route: <sip:callee@192.0.2.50:5060>",),
        )
    )  # fmt: skip
    [bye] = h.take_trunk()
    assert bye.uri == "sip:callee@192.0.2.50:5060" and bye.get("route") is None


def test_503_from_the_trunk_reaches_the_pbx_as_500() -> None:
    h = Harness()
    inv = _invite(h)
    assert inv is not None
    h.trunk_send(response_to(inv, 503, reason="Service Unavailable"))
    assert statuses(h.take_pbx()) == [100, 500]


def test_crlf_keepalive_is_ignored() -> None:
    h = Harness()
    h.pbx_send(b"\r\n\r\n")
    h.pbx_send(b"")
    assert h.raw == [] and h.all_events == []
