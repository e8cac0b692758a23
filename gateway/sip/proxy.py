"""The screening proxy core (RFC 3261 §16): bytes and time in, bytes and events out.

Policy, in the order a request meets it:
1. Parse (`SipError` -> its status, answered only to known sources; responses are dropped).
2. Retransmissions and ACK/CANCEL are matched to server transactions first (§17.2.3), so a
   retransmitted INVITE is answered from its transaction and never screened twice.
3. Source: the trunk (upstream address) may only send requests inside a dialog the PBX started;
   the PBX side must come from `allow_from`; anyone else gets the refusal (invariant 3).
4. Validation (§16.3): 416 scheme, 483 Max-Forwards, 482 loop, 420 Proxy-Require.
5. Screening (DESIGN.md rule 6): the Request-URI of every out-of-dialog request (INVITE,
   MESSAGE, SUBSCRIBE, ...), REFER's Refer-To in or out of a dialog, the dialog's target again on
   a re-INVITE, and every Contact of a 3xx. Blocked and invalid get the same refusal.
6. Forward (§16.6): Via with a keyed z9hG4bK branch, Record-Route ;lr, Max-Forwards - 1, our
   Route popped; PBX-side requests go to the trunk, trunk-side ones to the dialog's PBX address.
Responses are matched to client transactions (§17.1.3) and relayed through the server
transaction (§16.7); 100 is hop-by-hop, 503 becomes 500 (§16.7 step 6).
"""

from __future__ import annotations

import ipaddress

from gateway.sip import build
from gateway.sip.build import branch_material, build_response
from gateway.sip.calls import DIALOG_CREATING, CallLayer, Forwarded
from gateway.sip.config import ProxyConfig
from gateway.sip.errors import SipError
from gateway.sip.events import (
    MessageReceived,
    ParseFailed,
    Refused,
)
from gateway.sip.message import Message, parse_message
from gateway.sip.screening import Screen
from gateway.sip.transaction import Event as TxEvent
from gateway.sip.transaction import Kind, State, Transaction
from gateway.sip.uri import parse_uri

__all__ = ["ProxyCore"]

# In-dialog requests that can only end or complete something: never screened again.
_ENDING = frozenset({"BYE", "ACK", "CANCEL"})
_ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, MESSAGE, SUBSCRIBE, NOTIFY, REFER, INFO, UPDATE, PRACK"
_SUPPORTED_PROXY_REQUIRE: frozenset[str] = frozenset()  # we implement no proxy extensions
# Source addresses whose allow_from answer is remembered; a flood of spoofed sources only
# empties the cache, it cannot grow it.
_SOURCE_CACHE_MAX = 4096
_CRLF = (10, 13)


class ProxyCore(CallLayer):
    """The sans-I/O screening proxy. See the module docstring for the policy.

    Driven by `receive(data, transport, source, now)` and `handle_timer(now)`; hands back
    `outgoing()`, `events()` and `next_timer()` (inherited from `TransactionLayer`).
    """

    def __init__(self, config: ProxyConfig, screen: Screen) -> None:
        super().__init__(config, screen)
        self._allowed_cache: dict[str, bool] = {}
        self._draining = False
        self._drain_retry_s = 0

    # -- the adapter's interface ---------------------------------------------------------

    def drain(self, now: float, retry_after_s: int) -> None:
        """Refuse new INVITEs with 503 + Retry-After; everything in flight runs to its end."""
        self._draining = True
        self._drain_retry_s = retry_after_s

    def receive(self, data: bytes, transport: str, source: tuple[str, int], now: float) -> None:
        """Feed one datagram (UDP) or one framed message (TCP, from `StreamFramer`)."""
        transport = transport.lower()
        if not data or (data[0] in _CRLF and not data.strip(b"\r\n")):
            return  # CRLF keep-alive (RFC 5626 §3.5.1)
        from_trunk = self._is_trunk(source)
        allowed_source = from_trunk or self._is_allowed(source[0])
        try:
            msg = parse_message(data, framed=transport != "udp")
            if msg.is_request:
                msg.top_via()  # a request whose Via cannot be read cannot be answered right
        except SipError as e:
            self._parse_failed(e, transport, source, allowed_source)
            return
        self._events.append(
            MessageReceived(msg.method, None if msg.is_request else msg.status, transport)
        )
        try:
            if msg.is_request:
                self._on_request(
                    msg,
                    transport,
                    source,
                    from_trunk=from_trunk,
                    allowed_source=allowed_source,
                    now=now,
                )
            else:
                self._on_response(msg, source, now)
        except SipError as e:
            # Lazily parsed parts (From/To, Route, Refer-To ...) broke the grammar.
            self._parse_failed(e, transport, source, allowed_source, msg)

    # -- sources -------------------------------------------------------------------------

    def _is_trunk(self, source: tuple[str, int]) -> bool:
        _, host, port = self._up
        return source[1] == port and build.same_host(source[0], host)

    def _is_allowed(self, host: str) -> bool:
        """Whether a source address is inside allow_from (answers cached per address)."""
        known = self._allowed_cache.get(host)
        if known is not None:
            return known
        try:
            addr = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            return False
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        ok = any(addr in net for net in self.config.allow_from)
        if len(self._allowed_cache) >= _SOURCE_CACHE_MAX:
            self._allowed_cache.clear()
        self._allowed_cache[host] = ok
        return ok

    # -- parse failures ------------------------------------------------------------------

    def _parse_failed(
        self,
        e: SipError,
        transport: str,
        source: tuple[str, int],
        allowed_source: bool,
        msg: Message | None = None,
    ) -> None:
        partial = msg if msg is not None else e.partial
        # §8.2.6.2 copies Via, From, To, Call-ID and CSeq; answer whenever there is a Via to
        # copy (RFC 4475 insuf expects a 400 even with From/To/Call-ID missing). Never to
        # unknown sources, never to an ACK (§17.1.1.3: ACKs are not answered).
        answerable = (
            allowed_source
            and partial is not None
            and partial.is_request
            and partial.method != "ACK"
            and partial.get("via") is not None
        )
        if not answerable or partial is None:
            self._events.append(ParseFailed(None, e.reason))
            return
        tag = self._tag(partial.get("call-id") or partial.get("via") or "")
        resp = build_response(partial, e.status, e.phrase, tag)
        self._send(resp, (transport, source[0], source[1]))
        self._events.append(ParseFailed(e.status, e.reason))

    # -- requests ------------------------------------------------------------------------

    def _on_request(
        self,
        msg: Message,
        transport: str,
        source: tuple[str, int],
        *,
        from_trunk: bool,
        allowed_source: bool,
        now: float,
    ) -> None:
        method = msg.method or ""
        via = msg.top_via()
        material = branch_material(msg, via)
        mclass = "INVITE" if method == "ACK" else method
        key = (material, mclass, source[0])
        tx = self._server.get(key)
        if tx is not None and not (method == "ACK" and tx.state is State.ACCEPTED):
            # RFC 6026 §7.1: an ACK reaching an Accepted transaction acknowledges the 2xx and
            # goes on end to end (below); anything else matching is a retransmission.
            self._server_retransmission(tx, msg, now)
            return
        if method == "ACK":
            self._ack(msg, source, from_trunk=from_trunk, allowed_source=allowed_source, now=now)
            return
        server = Transaction.server(method == "INVITE", key, transport != "udp", self._timers)
        server.dest = build.response_dest(via, transport, source)
        if not allowed_source:
            self._refuse(server, msg, "allow_from", now)
            return
        msg.validate()  # SipError(400): syntax is checked before any policy (§16.3 step 1)
        if method == "CANCEL":
            self._cancel(server, msg, material, source, now)
            return
        if len(self._server) >= self.config.max_transactions:
            self._respond_new(server, msg, 503, now, [self._retry_after(self.config.retry_after_s)])
            self._events.append(Refused(msg.call_id, method, 503, "overload"))
            return
        # §16.3 step 2: a Request-URI scheme we do not understand.
        try:
            ruri = parse_uri(msg.uri, "Request-URI")
        except SipError:
            self._respond_new(server, msg, 400, now)
            self._events.append(ParseFailed(400, "malformed Request-URI"))
            return
        if ruri.scheme not in ("sip", "sips", "tel"):
            self._respond_new(server, msg, 416, now)
            return
        if ruri.headers is not None:  # §19.1.5: headers are not allowed in a Request-URI
            self._respond_new(server, msg, 400, now)
            self._events.append(ParseFailed(400, "headers in Request-URI"))
            return
        # Addressed to the gateway itself: no user part, or our own host and port.
        to_us = ruri.is_sip and (
            ruri.user is None
            or (
                build.same_host(ruri.host, self.config.local_host)
                and (ruri.port or 5060) == self.config.local_port
            )
        )
        if method == "OPTIONS" and to_us:
            self._options(server, msg, now)
            return
        # §16.3 step 3
        if msg.max_forwards == 0:
            self._respond_new(server, msg, 483, now)
            return
        # §16.3 step 4: a Via of ours carrying this request's loop hash means it came back.
        loop = self._fwd.loop_hash(msg)
        if self._fwd.looped(msg, loop):
            self._respond_new(server, msg, 482, now)
            return
        # §16.3 step 5
        unsupported = [
            v
            for v in msg.values("proxy-require")
            if v and v.lower() not in _SUPPORTED_PROXY_REQUIRE
        ]
        if unsupported:
            self._respond_new(
                server, msg, 420, now, [("unsupported", "Unsupported", ", ".join(unsupported))]
            )
            return
        to_tag = msg.to().tag
        if to_tag:
            self._in_dialog(
                server, msg, source, from_trunk=from_trunk, to_tag=to_tag, loop=loop, now=now
            )
            return
        if from_trunk:
            self._refuse(server, msg, "trunk_unsolicited", now)
            return
        if method == "INVITE" and self._draining:
            self._respond_new(server, msg, 503, now, [self._retry_after(self._drain_retry_s)])
            self._events.append(Refused(msg.call_id, method, 503, "draining"))
            return
        if method == "REGISTER":
            if not self.config.forward_register:
                self._refuse(server, msg, "register", now)
                return
            self._forward(server, msg, self._up, loop=loop, now=now, dialog=None, source=source)
            return
        targets = self._screening.target(ruri, msg, method)
        if targets is None:
            self._refuse(server, msg, "screen", now)
            return
        if method == "REFER" and not self._screening.refer_to(msg):
            self._refuse(server, msg, "screen", now)
            return
        dialog = None
        if method in DIALOG_CREATING:
            from_tag = msg.from_().tag
            if from_tag:
                # An early dialog lives as long as Timer C could keep its INVITE alive.
                until = now + self.config.timer_c_s + 64 * self.config.t1_s
                dialog, wake = self._dialogs.open(
                    msg.call_id, from_tag, server.dest, targets, until
                )
                self._wake_dialogs(wake)
        self._forward(server, msg, self._up, loop=loop, now=now, dialog=dialog, source=source)

    def _server_retransmission(self, tx: Transaction, msg: Message, now: float) -> None:
        """A request matching a live server transaction: the table says what to do (§17.2)."""
        if msg.method == "ACK":
            ev = TxEvent.ACK
            if tx.kind is not Kind.INVITE_SERVER:
                return
        else:
            ev = TxEvent.REQUEST
        if not tx.accepts(ev):
            return
        self._run(tx, tx.handle(ev, now), now)

    def _ack(
        self,
        msg: Message,
        source: tuple[str, int],
        *,
        from_trunk: bool,
        allowed_source: bool,
        now: float,
    ) -> None:
        """An ACK with no server transaction: a 2xx ACK, forwarded inside a known dialog only."""
        if not allowed_source:
            return
        to_tag = msg.to().tag
        from_tag = msg.from_().tag
        if not to_tag or not from_tag:
            return
        dialog = self._dialogs.find(msg.call_id, from_tag, to_tag, from_trunk)
        if dialog is None or msg.max_forwards == 0:
            return
        dest = dialog.pbx_dest if from_trunk else self._up
        out = msg.copy()
        loop = self._fwd.loop_hash(msg)
        self._fwd.prepare(out, msg, source, loop=loop, transport=dest[0], record_route=False)
        self._send(out, dest)

    def _cancel(
        self,
        server: Transaction,
        msg: Message,
        material: str,
        source: tuple[str, int],
        now: float,
    ) -> None:
        """CANCEL (§16.10): 200 to it, 487 to the INVITE, CANCEL on to the trunk after a 1xx."""
        invite_tx = self._server.get((material, "INVITE", source[0]))
        if invite_tx is None:
            self._respond_new(server, msg, 481, now)
            return
        # §9.2: a CANCEL for a transaction we hold gets 200 even when it changes nothing.
        self._respond_new(server, msg, 200, now)
        fwd = invite_tx.context
        if not isinstance(fwd, Forwarded) or fwd.cancelled:
            return
        fwd.cancelled = True
        if invite_tx.state is State.PROCEEDING and fwd.request is not None:
            self._respond(invite_tx, fwd.request, 487, now)
        if fwd.provisional:
            self._send_cancel(fwd, now)
        else:
            fwd.cancel_pending = True  # §9.1: no CANCEL before a provisional response

    def _options(self, server: Transaction, msg: Message, now: float) -> None:
        """OPTIONS to the gateway itself: the PBX's keep-alive (§11.2)."""
        require = [v for v in msg.values("require") if v]
        if require:
            self._respond_new(
                server, msg, 420, now, [("unsupported", "Unsupported", ", ".join(require))]
            )
            return
        self._respond_new(
            server,
            msg,
            200,
            now,
            [("allow", "Allow", _ALLOW), ("accept", "Accept", "application/sdp")],
        )

    def _in_dialog(
        self,
        server: Transaction,
        msg: Message,
        source: tuple[str, int],
        *,
        from_trunk: bool,
        to_tag: str,
        loop: str,
        now: float,
    ) -> None:
        method = msg.method or ""
        from_tag = msg.from_().tag or ""
        dialog = self._dialogs.find(msg.call_id, from_tag, to_tag, from_trunk)
        if dialog is None:
            # Nothing is forwarded outside a dialog the gateway saw screened, not even a BYE
            # (invariant 1); after a restart the endpoints' session timers clear old calls.
            if from_trunk:
                self._refuse(server, msg, "trunk_unsolicited", now)
            else:
                self._respond_new(server, msg, 481, now)
            return
        self._wake_dialogs(self._dialogs.touch(dialog, now + self.config.dialog_idle_s))
        if method == "INVITE" and not self._screening.again(dialog.targets, msg, "INVITE"):
            self._refuse(server, msg, "screen", now)
            return
        if method == "REFER" and not self._screening.refer_to(msg):
            self._refuse(server, msg, "screen", now)
            return
        # Towards the trunk, a Request-URI that is itself a barred number is refused even in
        # a dialog: a carrier that fails to match the dialog could take it for a new call.
        # (Not "invalid": remote targets are often opaque numeric ids, and the dialog's own
        # target was screened allowed and is screened again on re-INVITE above.)
        ruri = parse_uri(msg.uri, "Request-URI")
        if not from_trunk and method not in _ENDING and self._screening.barred(ruri):
            self._refuse(server, msg, "screen", now)
            return
        dest = dialog.pbx_dest if from_trunk else self._up
        self._forward(
            server,
            msg,
            dest,
            loop=loop,
            now=now,
            dialog=dialog,
            source=source,
            from_trunk=from_trunk,
        )
