"""Turning a received request into the one sent on (RFC 3261 §16.6), and loop detection (§16.3).

Branch ids are keyed hashes (§16.11): the same incoming transaction always gets the same
outgoing branch, so a CANCEL lands on its INVITE's branch and a stateless retransmission
matches, and nobody without the key can forge one. The part after the '.' is the loop hash of
§16.6 step 8: a request that comes back carrying our Via with the same loop hash is a loop.
"""

from __future__ import annotations

from gateway.sip import build
from gateway.sip.build import MAGIC_COOKIE, branch_material, keyed_hash
from gateway.sip.errors import SipError
from gateway.sip.headers import parse_name_addr, parse_via
from gateway.sip.limits import DEFAULT_MAX_FORWARDS
from gateway.sip.message import Message
from gateway.sip.uri import format_host, parse_uri

__all__ = ["Forwarder"]


class Forwarder:
    """What the gateway stamps on what it forwards: Via, Record-Route, Max-Forwards, Route."""

    __slots__ = ("_host", "_me", "_port", "_rr", "_secret", "record_route")

    def __init__(
        self, secret: bytes, host: str, port: int, rr_transport: str, record_route: bool
    ) -> None:
        self._secret = secret
        self._host = host
        self._port = port
        self._me = f"{format_host(host)}:{port}".lower()
        self._rr = build.record_route_value(host, port, rr_transport)
        self.record_route = record_route

    def loop_hash(self, msg: Message) -> str:
        """§16.6 step 8: what makes a request the same request when it comes back."""
        routes = ",".join(msg.values("route"))
        from_tag = msg.from_().tag or ""
        to_tag = msg.to().tag or ""
        preq = msg.get("proxy-require") or ""
        text = f"{msg.uri}|{from_tag}|{to_tag}|{msg.call_id}|{msg.cseq}|{routes}|{preq}"
        return keyed_hash(self._secret, text, 6)

    def looped(self, msg: Message, loop: str) -> bool:
        """§16.3 step 4: one of the Vias is ours with this request's loop hash."""
        if not any(self._me in v.lower() for v in msg.via_values()):
            return False
        for value in msg.via_values():
            try:
                via = parse_via(value)
            except SipError:
                continue
            branch = via.branch or ""
            if via.sent_by.lower() == self._me and branch.endswith("." + loop):
                return True
        return False

    def is_me(self, route_value: str) -> bool:
        """Whether a Route value names this gateway (§16.4)."""
        try:
            uri = parse_uri(parse_name_addr(route_value, "Route").uri, "Route")
        except SipError:
            return False
        port = uri.port if uri.port is not None else 5060
        return port == self._port and build.same_host(uri.host, self._host)

    def _is_our_record_route(self, ruri: str) -> bool:
        try:
            uri = parse_uri(ruri, "Request-URI")
        except SipError:
            return False
        port = uri.port if uri.port is not None else 5060
        return (
            uri.is_sip
            and uri.user is None
            and port == self._port
            and build.same_host(uri.host, self._host)
        )

    def prepare(
        self,
        out: Message,
        original: Message,
        source: tuple[str, int],
        *,
        loop: str,
        transport: str,
        record_route: bool,
    ) -> str:
        """Turn `out` (a copy of `original`) into what goes on; returns our Via's branch."""
        via = original.top_via()
        branch = f"{MAGIC_COOKIE}{keyed_hash(self._secret, branch_material(original, via))}.{loop}"
        # §18.2.1 / RFC 3581: received and rport on the previous hop's Via.
        top_value = original.via_values()[0]
        stamped = build.stamp_via(top_value, via, source)
        if stamped != top_value:
            out.pop_first_value("via")
            out.prepend("via", "Via", stamped)
        out.prepend("via", "Via", build.via_value(transport, self._host, self._port, branch))
        # §16.6 step 3: Max-Forwards minus one, added when missing.
        mf = original.max_forwards
        out.set("max-forwards", "Max-Forwards", str(DEFAULT_MAX_FORWARDS if mf is None else mf - 1))
        # §16.4: a Route naming us was for us; loose routing keeps the Request-URI.
        routes = original.values("route")
        if routes and self.is_me(routes[0]):
            out.pop_first_value("route")
            routes = routes[1:]
        elif routes and self._is_our_record_route(original.uri):
            # The previous hop was a strict router (RFC 2543): it put our Record-Route in the
            # Request-URI; the real target is the last Route value (§16.4, §16.12).
            last = parse_name_addr(routes[-1], "Route")
            out.uri = last.uri
            out.remove("route")
            for value in routes[:-1]:
                out.headers.append(("route", "Route", value))
        # §16.6 step 4: Record-Route so in-dialog requests (re-INVITE, REFER, BYE) come back.
        if record_route and self.record_route:
            out.prepend("record-route", "Record-Route", self._rr)
        return branch
