"""What the core keeps after a call ends: lingering transactions hold wire bytes, not messages.

RFC 3261 §17 keeps completed transactions for up to 32 s (Timers H, J, L, M) to absorb
retransmissions; at thousands of calls a second that state must be small, and the drain must
be able to tell lingering transactions from unfinished ones.
"""

from __future__ import annotations

import gc

from gateway.sip import Message
from tests.gateway.sip.harness import GW, Harness, request, response_to

ROUTE_US = f"Route: <sip:{GW[0]}:{GW[1]};lr>"
ALLOWED_URI = "sip:07700900123@127.0.0.1:5060"


def _reachable_messages(root: object, skip: object) -> int:
    """Messages reachable from `root` (not through `skip`, the harness that holds test data)."""
    seen = {id(root), id(skip)}
    todo = [root]
    found = 0
    while todo:
        obj = todo.pop()
        if isinstance(obj, Message):
            found += 1
        for ref in gc.get_referents(obj):
            if id(ref) in seen or isinstance(ref, type) or type(ref).__name__ == "module":
                continue
            seen.add(id(ref))
            todo.append(ref)
    return found


def _in_dialog(method: str, cseq: int, branch: str) -> bytes:
    return request(
        method,
        "sip:callee@192.0.2.50:5060",
        cseq=cseq,
        branch=branch,
        to_tag="trunktag",
        extra=(ROUTE_US,),
    )


def _allowed_call(h: Harness) -> None:
    h.pbx_send(request("INVITE", ALLOWED_URI))
    [inv] = h.take_trunk()
    h.trunk_send(response_to(inv, 180))
    h.trunk_send(response_to(inv, 200))
    h.pbx_send(_in_dialog("ACK", 1, "z9hG4bKack"))
    h.pbx_send(_in_dialog("BYE", 2, "z9hG4bKbye"))
    [bye] = [m for m in h.take_trunk() if m.method == "BYE"]
    h.trunk_send(response_to(bye, 200, to_tag=None))
    h.take_pbx()


def test_an_ended_call_lingers_without_its_messages() -> None:
    h = Harness()
    h.pbx_send(request("INVITE", ALLOWED_URI))
    assert _reachable_messages(h.core, h) > 0  # in flight: the request is kept (CANCEL, 408)
    h.take_trunk()
    h.take_pbx()
    h = Harness()
    _allowed_call(h)
    assert h.core.active_transactions > 0  # lingering for retransmissions (§17)
    assert _reachable_messages(h.core, h) == 0
    h.advance(40)
    assert h.core.active_transactions == 0


def test_retransmissions_are_still_absorbed_after_the_messages_are_dropped() -> None:
    h = Harness()
    _allowed_call(h)
    # The PBX retransmits its BYE (lost 200): answered from the lingering transaction.
    h.pbx_send(_in_dialog("BYE", 2, "z9hG4bKbye"))
    assert [m.status for m in h.take_pbx()] == [200]
    assert h.take_trunk() == []
    # A retransmitted INVITE is absorbed, never screened into a second call.
    h.pbx_send(request("INVITE", ALLOWED_URI))
    assert h.take_trunk() == [] and h.take_pbx() == []
    assert h.screened == ["07700900123"]
