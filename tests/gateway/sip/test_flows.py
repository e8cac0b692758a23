"""Round trips through the harness: fake PBX <-> ProxyCore <-> fake trunk (hand-driven clock)."""

from __future__ import annotations

from gateway.sip import Refused, Screened
from tests.gateway.sip.harness import GW, Harness, methods, request, response_to, statuses

ROUTE_US = f"Route: <sip:{GW[0]}:{GW[1]};lr>"


def _allowed_invite(h: Harness, ruri: str = "sip:07700900123@127.0.0.1:5060", **kw: object) -> None:
    h.pbx_send(request("INVITE", ruri, **kw))  # type: ignore[arg-type]


def test_allowed_call_100_180_200_ack_bye() -> None:
    h = Harness()
    _allowed_invite(h)
    assert statuses(h.take_pbx()) == [100]
    [inv] = h.take_trunk()
    assert inv.method == "INVITE" and inv.uri == "sip:07700900123@127.0.0.1:5060"
    assert inv.max_forwards == 69
    assert inv.get("record-route") == "<sip:127.0.0.1:5060;lr>"
    top = inv.top_via()
    assert top.sent_by == "127.0.0.1:5060" and (top.branch or "").startswith("z9hG4bK")
    # RFC 3581: the PBX's Via got rport and received filled in.
    assert "rport=5070" in inv.via_values()[1]

    h.trunk_send(response_to(inv, 100, to_tag=None))
    h.trunk_send(response_to(inv, 180))
    h.trunk_send(response_to(inv, 200))
    got = h.take_pbx()
    assert statuses(got) == [180, 200]
    ok = got[-1]
    assert len(ok.via_values()) == 1 and ok.to().tag == "trunktag"
    assert ok.get("record-route") == "<sip:127.0.0.1:5060;lr>"

    h.pbx_send(
        request(
            "ACK",
            "sip:callee@192.0.2.50:5060",
            to_tag="trunktag",
            branch="z9hG4bKack",
            extra=(ROUTE_US,),
        )
    )
    [ack] = h.take_trunk()
    assert ack.method == "ACK" and ack.get("route") is None

    h.pbx_send(
        request(
            "BYE",
            "sip:callee@192.0.2.50:5060",
            to_tag="trunktag",
            branch="z9hG4bKbye",
            cseq=2,
            extra=(ROUTE_US,),
        )
    )
    [bye] = h.take_trunk()
    assert bye.method == "BYE"
    h.trunk_send(response_to(bye, 200, to_tag=None))
    assert statuses(h.take_pbx()) == [200]
    assert h.screened == ["07700900123"]
    h.advance(40)
    assert h.core.active_transactions == 0


def test_blocked_call_gets_403_and_its_ack_is_absorbed() -> None:
    h = Harness()
    h.pbx_send(request("INVITE", "sip:9%2B447700900666@127.0.0.1:5060"))
    [resp] = h.take_pbx()
    assert (resp.status, resp.reason) == (403, "Forbidden")
    assert resp.to().tag
    assert h.to_trunk == []
    screened = [e for e in h.all_events if isinstance(e, Screened)]
    assert [(e.verdict, e.dialled, e.caller) for e in screened] == [
        ("blocked", "9+447700900666", "2001")
    ]
    assert any(isinstance(e, Refused) and e.why == "screen" for e in h.all_events)
    h.pbx_send(request("ACK", "sip:9%2B447700900666@127.0.0.1:5060", to_tag=resp.to().tag))
    assert h.take_trunk() == [] and h.take_pbx() == []
    # the transaction is Confirmed, then gone after Timer I
    h.advance(10)
    assert h.core.active_transactions == 0
    assert methods(h.to_trunk) == []
