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
import os
from dataclasses import dataclass

from gateway.sip import build
from gateway.sip.build import MAGIC_COOKIE, branch_material, build_response
from gateway.sip.config import ProxyConfig
from gateway.sip.dialogs import Dialog, DialogTable
from gateway.sip.errors import REASONS, SipError
from gateway.sip.events import (
    MessageReceived,
    ParseFailed,
    Refused,
    TransactionTimedOut,
)
from gateway.sip.forwarding import Forwarder
from gateway.sip.message import Message, parse_message
from gateway.sip.screening import Screen, Screening
from gateway.sip.transaction import Event as TxEvent
from gateway.sip.transaction import Kind, State, Timers, Transaction
from gateway.sip.txlayer import TransactionLayer
from gateway.sip.uri import format_host, parse_uri

__all__ = ["ProxyCore"]

Dest = tuple[str, str, int]

# Methods that create a dialog or a subscription the proxy must keep routing (§12, RFC 6665).
_DIALOG_CREATING = frozenset({"INVITE", "SUBSCRIBE", "REFER"})
# In-dialog requests that can only end or complete something: never screened again.
_ENDING = frozenset({"BYE", "ACK", "CANCEL"})
_ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, MESSAGE, SUBSCRIBE, NOTIFY, REFER, INFO, UPDATE, PRACK"
_SUPPORTED_PROXY_REQUIRE: frozenset[str] = frozenset()
# Source addresses whose allow_from answer is remembered; a flood of spoofed sources only
# empties the cache, it cannot grow it.
_SOURCE_CACHE_MAX = 4096  # we implement no proxy extensions


@dataclass(slots=True, eq=False)
class _Forward:
    """One forwarded request: the server transaction it came on, the client one it went on."""

    server: Transaction
    request: Message  # as received
    client: Transaction | None = None
    sent: Message | None = None  # the copy sent downstream (for ACK and CANCEL, §17.1.1.3, §9.1)
    branch: str = ""
    provisional: bool = False  # a 101-199 arrived: CANCEL may now be sent (§9.1)
    cancel_pending: bool = False
    cancelled: bool = False
    timer_c: float | None = None
    c_token: list[_Forward | None] | None = None  # what the timer heap holds for Timer C
    dialog: Dialog | None = None
    from_trunk: bool = False


class ProxyCore(TransactionLayer):
    """The sans-I/O screening proxy. See the module docstring for the policy.

    Driven by `receive(data, transport, source, now)` and `handle_timer(now)`; hands back
    `outgoing()`, `events()` and `next_timer()` (inherited from `TransactionLayer`).
    """

    def __init__(self, config: ProxyConfig, screen: Screen) -> None:
        super().__init__(
            Timers(config.t1_s, config.t2_s, config.t4_s), config.branch_secret or os.urandom(16)
        )
        self.config = config
        self._dialogs = DialogTable(config.max_dialogs)
        self._screening = Screening(screen, self._events)
        self._allowed_cache: dict[str, bool] = {}
        self._draining = False
        self._drain_retry_s = 0
        up_transport, up_host, up_port = config.upstream
        self._up: Dest = (up_transport.lower(), up_host, up_port)
        self._me = f"{format_host(config.local_host)}:{config.local_port}".lower()
        self._fwd = Forwarder(
            self._secret, config.local_host, config.local_port, self._up[0], config.record_route
        )

    # -- the adapter's interface ---------------------------------------------------------

    def drain(self, now: float, retry_after_s: int) -> None:
        """Refuse new INVITEs with 503 + Retry-After; everything in flight runs to its end."""
        self._draining = True
        self._drain_retry_s = retry_after_s

    def receive(self, data: bytes, transport: str, source: tuple[str, int], now: float) -> None:
        """Feed one datagram (UDP) or one framed message (TCP, from `StreamFramer`)."""
        transport = transport.lower()
        if not data.strip(b"\r\n"):
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

    def _on_timer(self, obj: object, now: float) -> None:
        if isinstance(obj, list):  # a Timer C token
            fwd = obj[0]
            if isinstance(fwd, _Forward):
                self._timer_c(fwd, now)
        elif obj is self._dialogs:
            self._dialogs.expire(now)

    def _pass_up(self, tx: Transaction, msg: Message, now: float) -> None:
        if isinstance(tx.context, _Forward):
            self._relay_response(tx.context, msg, now)

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
        if method in _DIALOG_CREATING:
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
        if not isinstance(fwd, _Forward) or fwd.cancelled:
            return
        fwd.cancelled = True
        if invite_tx.state is State.PROCEEDING:
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

    # -- forwarding (§16.6) --------------------------------------------------------------

    def _forward(
        self,
        server: Transaction,
        msg: Message,
        dest: Dest,
        *,
        loop: str,
        now: float,
        dialog: Dialog | None,
        source: tuple[str, int],
        from_trunk: bool = False,
    ) -> None:
        method = msg.method or ""
        self._server[server.key] = server
        fwd_state = _Forward(server, msg, dialog=dialog, from_trunk=from_trunk)
        server.context = fwd_state
        if method == "INVITE":
            # §16.2 / §16.7 step 5: our own 100 Trying, at once, so the PBX stops retransmitting.
            self._respond(server, msg, 100, now)
        out = msg.copy()
        fwd_state.branch = self._fwd.prepare(
            out,
            msg,
            source,
            loop=loop,
            transport=dest[0],
            record_route=method in _DIALOG_CREATING and not from_trunk,
        )
        data = out.render()
        fwd_state.sent = out
        client = Transaction.client(
            method == "INVITE", (fwd_state.branch, method), dest[0] != "udp", self._timers, now
        )
        client.request, client.dest, client.context = data, dest, fwd_state
        fwd_state.client = client
        self._client[client.key] = client
        self._emit(data, dest, method, None)
        self._arm(client)
        if method == "INVITE":
            self._arm_timer_c(fwd_state, now)

    # -- responses from downstream (§16.7) -----------------------------------------------

    def _on_response(self, msg: Message, source: tuple[str, int], now: float) -> None:
        via = msg.top_via()
        branch = via.branch or ""
        if via.sent_by.lower() != self._me or not branch.startswith(MAGIC_COOKIE):
            return  # not ours (§18.1.2): drop
        client = self._client.get((branch, msg.cseq_method))
        if client is None:
            return  # no transaction: a stray or forged response is never relayed
        if not build.same_host(source[0], client.dest[1]):
            return  # only the hop we sent to may answer
        status = msg.status
        if status < 200:
            ev = TxEvent.RECV_1XX
        elif status < 300:
            ev = TxEvent.RECV_2XX if client.kind is Kind.INVITE_CLIENT else TxEvent.RECV_FINAL
        else:
            ev = TxEvent.RECV_FINAL
        if not client.accepts(ev):
            return
        actions = client.handle(ev, now)
        if "send_ack" in actions:
            fwd = client.context
            if not client.ack and isinstance(fwd, _Forward) and fwd.sent is not None:
                client.ack = build.ack_for(fwd.sent, msg.get("to") or "")
        self._run(client, actions, now, msg)

    def _relay_response(self, fwd: _Forward, msg: Message, now: float) -> None:
        """A response passed up by a client transaction goes back through the server one."""
        server = fwd.server
        status = msg.status
        method = msg.cseq_method
        if status == 100:
            return  # hop by hop (§16.7 step 5)
        if fwd.dialog is not None and method in _DIALOG_CREATING:
            self._track_dialog(fwd.dialog, msg, now)
        if method == "BYE" and status >= 200 and fwd.dialog is not None:
            self._dialogs.close(fwd.dialog)
        if method == "INVITE" and status < 200:
            fwd.provisional = True
            if fwd.cancel_pending:
                fwd.cancel_pending = False
                self._send_cancel(fwd, now)
            if fwd.timer_c is not None:  # §16.6 step 11: a provisional resets Timer C
                self._arm_timer_c(fwd, now)
        if status >= 200:
            self._stop_timer_c(fwd)
        if 300 <= status < 400 and not fwd.from_trunk:
            msg = self._screen_redirect(fwd, msg)
            status = msg.status
        if status == 503:  # §16.7 step 6: a 503 from downstream is not passed on as a 503
            msg.status, msg.reason = 500, REASONS[500]
        out = msg.copy()
        out.pop_first_value("via")
        if not out.via_values():
            return
        if server.terminated or server.key not in self._server:
            if 200 <= status < 300 and method == "INVITE":
                self._stateless_response(out)
            return
        if status < 200:
            ev = TxEvent.SEND_1XX
        elif status < 300:
            ev = TxEvent.SEND_2XX
        else:
            ev = TxEvent.SEND_FINAL
        if not server.accepts(ev):
            return
        data = out.render()
        if server.kind is Kind.NON_INVITE_SERVER or server.state is State.PROCEEDING:
            server.response = data  # what a retransmitted request is answered with (§17.2)
        self._run(server, server.handle(ev, now), now)
        self._emit(data, server.dest, None, status)

    def _stateless_response(self, out: Message) -> None:
        """A 2xx retransmission after the server transaction ended: routed by Via (§16.7)."""
        try:
            dest = build.via_dest(out.top_via())
        except SipError:
            return
        if dest is not None:
            self._emit(out.render(), dest, None, out.status)

    def _track_dialog(self, dialog: Dialog, msg: Message, now: float) -> None:
        tag = msg.to().tag
        status = msg.status
        if tag and 100 < status < 300:
            dialog.remote_tags.add(tag)
            if status >= 200:
                dialog.confirmed = True
                self._wake_dialogs(self._dialogs.touch(dialog, now + self.config.dialog_idle_s))
        elif status >= 300 and not dialog.confirmed:
            self._dialogs.close(dialog)

    def _screen_redirect(self, fwd: _Forward, msg: Message) -> Message:
        """3xx from the trunk: only Contacts screened allowed go back to the PBX (rule 6)."""
        kept = self._screening.contacts(msg, fwd.request)
        if kept:
            out = msg.copy()
            out.remove("contact")
            out.headers.append(("contact", "Contact", ", ".join(kept)))
            return out
        self._events.append(
            Refused(msg.call_id, fwd.request.method or "", self.config.refusal_status, "screen")
        )
        refusal = build_response(
            fwd.request, self.config.refusal_status, self.config.refusal_reason, None
        )
        # Keep the trunk's To tag and our Via on top so the relay path below stays the same.
        refusal.set("to", "To", msg.get("to") or "")
        refusal.headers = [h for h in msg.headers if h[0] == "via"][:1] + refusal.headers
        return refusal

    # -- answering and sending -----------------------------------------------------------

    def _refuse(self, server: Transaction, msg: Message, why: str, now: float) -> None:
        """The one refusal: same status, reason and header set whatever the cause (invariant 3)."""
        status = self.config.refusal_status
        self._respond_new(server, msg, status, now, None, reason=self.config.refusal_reason)
        self._events.append(Refused(msg.call_id, msg.method or "", status, why))

    def _timed_out(self, tx: Transaction, now: float) -> None:
        """Timer B or F (or a transport error): the caller hears 408 (§16.8)."""
        fwd = tx.context
        if not isinstance(fwd, _Forward):
            return
        method = fwd.request.method or ""
        timer = "B" if tx.kind is Kind.INVITE_CLIENT else "F"
        self._events.append(TransactionTimedOut(fwd.request.call_id, method, timer))
        self._stop_timer_c(fwd)
        self._respond(fwd.server, fwd.request, 487 if fwd.cancelled else 408, now)
        if fwd.dialog is not None and not fwd.dialog.confirmed:
            self._dialogs.close(fwd.dialog)

    def _wake_dialogs(self, when: float | None) -> None:
        if when is not None:
            self._schedule(when, self._dialogs)

    def _arm_timer_c(self, fwd: _Forward, now: float) -> None:
        """(Re)start Timer C. The heap holds a small token, not the call, so a call that
        ends early is not kept alive for three minutes by its stale heap entry."""
        self._stop_timer_c(fwd)
        fwd.timer_c = now + self.config.timer_c_s
        fwd.c_token = [fwd]
        self._schedule(fwd.timer_c, fwd.c_token)

    @staticmethod
    def _stop_timer_c(fwd: _Forward) -> None:
        fwd.timer_c = None
        if fwd.c_token:
            fwd.c_token[0] = None
        fwd.c_token = None

    def _timer_c(self, fwd: _Forward, now: float) -> None:
        """§16.8: Timer C fired: CANCEL what is ringing, and the caller hears 408."""
        if fwd.timer_c is None or fwd.timer_c > now:
            return  # reset or finished since this entry was scheduled
        self._stop_timer_c(fwd)
        client = fwd.client
        if client is None or client.state not in (State.CALLING, State.PROCEEDING):
            return
        self._events.append(TransactionTimedOut(fwd.request.call_id, "INVITE", "C"))
        if fwd.provisional:
            self._send_cancel(fwd, now)
        else:
            # Nothing answered at all: stop retransmitting, as if a 408 came (§16.8).
            self._run(client, client.handle(TxEvent.ABANDON, now), now)
        self._respond(fwd.server, fwd.request, 408, now)

    def _send_cancel(self, fwd: _Forward, now: float) -> None:
        """CANCEL downstream (§9.1, §16.10): the INVITE's branch, Request-URI and Route."""
        client = fwd.client
        if client is None or client.state not in (State.CALLING, State.PROCEEDING):
            return
        if fwd.sent is None:
            return
        data = build.cancel_for(fwd.sent)
        tx = Transaction.client(False, (fwd.branch, "CANCEL"), client.reliable, self._timers, now)
        tx.request, tx.dest = data, client.dest
        self._client[tx.key] = tx
        self._emit(data, client.dest, "CANCEL", None)
        self._arm(tx)
