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

import heapq
import ipaddress
import itertools
import os
from collections.abc import Callable
from dataclasses import dataclass, field

from gateway.sip import build
from gateway.sip.build import MAGIC_COOKIE, branch_material, build_response, keyed_hash
from gateway.sip.config import Outgoing, ProxyConfig
from gateway.sip.errors import REASONS, SipError
from gateway.sip.events import (
    Event,
    MessageReceived,
    MessageSent,
    ParseFailed,
    Refused,
    Screened,
    TransactionTimedOut,
)
from gateway.sip.headers import parse_name_addr, parse_via
from gateway.sip.limits import DEFAULT_MAX_FORWARDS
from gateway.sip.message import Message, parse_message
from gateway.sip.transaction import Event as TxEvent
from gateway.sip.transaction import Kind, State, Timers, Transaction
from gateway.sip.uri import Uri, dial_targets, format_host, parse_uri, unescape

__all__ = ["ProxyCore"]

Dest = tuple[str, str, int]
Screen = Callable[[str], str]

_VERDICTS = ("allowed", "blocked", "invalid")
# Methods that create a dialog or a subscription the proxy must keep routing (§12, RFC 6665).
_DIALOG_CREATING = frozenset({"INVITE", "SUBSCRIBE", "REFER"})
_ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, MESSAGE, SUBSCRIBE, NOTIFY, REFER, INFO, UPDATE, PRACK"
_SUPPORTED_PROXY_REQUIRE: frozenset[str] = frozenset()  # we implement no proxy extensions


@dataclass(slots=True, eq=False)
class _Dialog:
    """A dialog started from the PBX: the only thing the trunk side may send requests into."""

    call_id: str
    pbx_tag: str
    pbx_dest: Dest
    targets: tuple[str, ...]  # the dial strings screened when it was created
    remote_tags: set[str] = field(default_factory=set)
    confirmed: bool = False
    expires: float = 0.0


@dataclass(slots=True, eq=False)
class _Forward:
    """One forwarded request: the server transaction it came on, the client one it went on."""

    server: Transaction
    request: Message  # as received
    client: Transaction | None = None
    branch: str = ""
    provisional: bool = False  # a 101-199 arrived: CANCEL may now be sent (§9.1)
    cancel_pending: bool = False
    cancelled: bool = False
    timer_c: float | None = None
    dialog: _Dialog | None = None
    from_trunk: bool = False


class ProxyCore:
    """The sans-I/O screening proxy. See the module docstring for the policy."""

    def __init__(self, config: ProxyConfig, screen: Screen) -> None:
        self.config = config
        self._screen = screen
        self._secret = config.branch_secret or os.urandom(16)
        self._timers = Timers(config.t1_s, config.t2_s, config.t4_s)
        self._server: dict[tuple[str, ...], Transaction] = {}
        self._client: dict[tuple[str, ...], Transaction] = {}
        self._dialogs: dict[tuple[str, str], _Dialog] = {}
        self._heap: list[tuple[float, int, object]] = []
        self._seq = itertools.count()
        self._out: list[Outgoing] = []
        self._events: list[Event] = []
        self._draining = False
        self._drain_retry_s = 0
        up_transport, up_host, up_port = config.upstream
        self._up: Dest = (up_transport.lower(), up_host, up_port)
        self._me = f"{format_host(config.local_host)}:{config.local_port}".lower()
        self._rr = build.record_route_value(config.local_host, config.local_port, self._up[0])

    # -- the adapter's interface ---------------------------------------------------------

    def outgoing(self) -> list[Outgoing]:
        out, self._out = self._out, []
        return out

    def events(self) -> list[Event]:
        out, self._events = self._events, []
        return out

    @property
    def active_transactions(self) -> int:
        return len(self._server) + len(self._client)

    def next_timer(self) -> float | None:
        return self._heap[0][0] if self._heap else None

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

    def handle_timer(self, now: float) -> None:
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, _, obj = heapq.heappop(heap)
            if isinstance(obj, Transaction):
                self._tx_timers(obj, now)
            elif isinstance(obj, _Forward):
                self._timer_c(obj, now)
            elif isinstance(obj, _Dialog):
                self._dialog_timer(obj, now)

    # -- sources -------------------------------------------------------------------------

    def _is_trunk(self, source: tuple[str, int]) -> bool:
        _, host, port = self._up
        return source[1] == port and build.same_host(source[0], host)

    def _is_allowed(self, host: str) -> bool:
        try:
            addr = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            return False
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        return any(addr in net for net in self.config.allow_from)

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
        _validate(msg)  # raises SipError(400): syntax is checked before any policy (§16.3 step 1)
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
        to_us = ruri.is_sip and ruri.user is None
        if method == "OPTIONS" and to_us:
            self._options(server, msg, now)
            return
        # §16.3 step 3
        if msg.max_forwards == 0:
            self._respond_new(server, msg, 483, now)
            return
        # §16.3 step 4: a Via of ours carrying this request's loop hash means it came back.
        loop = self._loop_hash(msg)
        if self._looped(msg, loop):
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
        targets = self._screen_uri(ruri, msg, method)
        if targets is None:
            self._refuse(server, msg, "screen", now)
            return
        if method == "REFER" and not self._screen_refer_to(msg):
            self._refuse(server, msg, "screen", now)
            return
        dialog = None
        if method in _DIALOG_CREATING:
            dialog = self._new_dialog(msg, server.dest, targets, now)
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
        dialog, pbx_side = self._find_dialog(msg.call_id, from_tag, to_tag, from_trunk)
        if dialog is None or msg.max_forwards == 0:
            return
        dest = dialog.pbx_dest if not pbx_side else self._up
        fwd = msg.copy()
        self._prepare_forward(fwd, msg, source, self._loop_hash(msg), record_route=False)
        self._send(fwd, dest)

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
        if invite_tx is None or not isinstance(invite_tx.context, _Forward):
            self._respond_new(server, msg, 481, now)
            return
        self._respond_new(server, msg, 200, now)
        fwd = invite_tx.context
        if fwd.cancelled:
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
        dialog, pbx_side = self._find_dialog(msg.call_id, from_tag, to_tag, from_trunk)
        if dialog is None:
            # Nothing is forwarded outside a dialog the gateway saw screened, not even a BYE
            # (invariant 1); after a restart the endpoints' session timers clear old calls.
            if from_trunk:
                self._refuse(server, msg, "trunk_unsolicited", now)
            else:
                self._respond_new(server, msg, 481, now)
            return
        dialog.expires = max(dialog.expires, now + self.config.dialog_idle_s)
        if method == "INVITE" and not self._rescreen(dialog, msg):
            self._refuse(server, msg, "screen", now)
            return
        if method == "REFER" and not self._screen_refer_to(msg):
            self._refuse(server, msg, "screen", now)
            return
        dest = self._up if pbx_side else dialog.pbx_dest
        self._forward(
            server,
            msg,
            dest,
            loop=loop,
            now=now,
            dialog=dialog,
            source=source,
            from_trunk=not pbx_side,
        )

    # -- screening -----------------------------------------------------------------------

    def _caller(self, msg: Message) -> str:
        for key in ("p-asserted-identity", "from"):
            value = msg.get(key)
            if value is None:
                continue
            try:
                na = parse_name_addr(msg.values(key)[0], key) if key != "from" else msg.from_()
                uri = parse_uri(na.uri, key)
            except (SipError, IndexError):
                continue
            if uri.user is not None:
                user = uri.user.split(";")[0] if uri.scheme == "tel" else uri.user
                return unescape(user) or ""
        return ""

    def _verdict(self, targets: tuple[str, ...] | None) -> str:
        if targets is None:
            return "invalid"
        verdict = "allowed"
        for t in targets:
            try:
                v = self._screen(t)
            except Exception:  # an injected screen that fails must fail closed, not crash
                v = "invalid"
            if v == "blocked":
                return "blocked"
            if v != "allowed":
                verdict = "invalid"
        return verdict

    def _screen_target(self, uri: Uri | None, msg: Message, method: str) -> bool:
        targets = dial_targets(uri) if uri is not None else None
        verdict = self._verdict(targets)
        if targets is not None:
            dialled = targets[0]
        elif uri is not None and uri.user is not None:
            dialled = unescape(uri.user) or ""
        else:
            dialled = ""
        self._events.append(Screened(msg.call_id, method, verdict, dialled, self._caller(msg)))
        return verdict == "allowed"

    def _screen_uri(self, uri: Uri, msg: Message, method: str) -> tuple[str, ...] | None:
        if not self._screen_target(uri, msg, method):
            return None
        return dial_targets(uri)

    def _screen_refer_to(self, msg: Message) -> bool:
        """REFER's Refer-To (RFC 3515 §2.1): exactly one, screened like a Request-URI."""
        values = msg.values("refer-to")
        uri: Uri | None = None
        if len(values) == 1:
            try:
                uri = parse_uri(parse_name_addr(values[0], "Refer-To").uri, "Refer-To")
            except SipError:
                uri = None
        return self._screen_target(uri, msg, "REFER")

    def _rescreen(self, dialog: _Dialog, msg: Message) -> bool:
        """A re-INVITE: the dialog's target is screened again (a bar may have come since)."""
        verdict = self._verdict(dialog.targets)
        self._events.append(
            Screened(
                msg.call_id,
                "INVITE",
                verdict,
                dialog.targets[0] if dialog.targets else "",
                self._caller(msg),
            )
        )
        return verdict == "allowed"

    # -- dialogs -------------------------------------------------------------------------

    def _new_dialog(
        self, msg: Message, pbx_dest: Dest, targets: tuple[str, ...], now: float
    ) -> _Dialog | None:
        from_tag = msg.from_().tag
        if not from_tag or len(self._dialogs) >= self.config.max_dialogs:
            return None
        key = (msg.call_id, from_tag)
        dialog = self._dialogs.get(key)
        if dialog is None:
            dialog = _Dialog(msg.call_id, from_tag, pbx_dest, targets)
            self._dialogs[key] = dialog
        # Until confirmed, an early dialog lives as long as Timer C could keep the INVITE alive.
        dialog.expires = max(dialog.expires, now + self.config.timer_c_s + 64 * self.config.t1_s)
        self._schedule(dialog.expires, dialog)
        return dialog

    def _find_dialog(
        self, call_id: str, from_tag: str, to_tag: str, from_trunk: bool
    ) -> tuple[_Dialog | None, bool]:
        """The dialog a request belongs to, and whether it comes from the PBX side."""
        if not from_trunk:
            d = self._dialogs.get((call_id, from_tag))
            if d is not None and to_tag in d.remote_tags:
                return d, True
        d = self._dialogs.get((call_id, to_tag))
        if d is not None and from_tag in d.remote_tags:
            return d, False
        return None, True

    def _dialog_timer(self, dialog: _Dialog, now: float) -> None:
        if dialog.expires > now:
            self._schedule(dialog.expires, dialog)
            return
        key = (dialog.call_id, dialog.pbx_tag)
        if self._dialogs.get(key) is dialog:
            del self._dialogs[key]

    def _end_dialog(self, dialog: _Dialog) -> None:
        key = (dialog.call_id, dialog.pbx_tag)
        if self._dialogs.get(key) is dialog:
            del self._dialogs[key]

    # -- forwarding (§16.6) --------------------------------------------------------------

    def _loop_hash(self, msg: Message) -> str:
        """§16.6 step 8: what makes a request the same request when it comes back (§16.3 step 4)."""
        routes = ",".join(msg.values("route"))
        from_tag = msg.from_().tag or ""
        to_tag = msg.to().tag or ""
        preq = msg.get("proxy-require") or ""
        text = f"{msg.uri}|{from_tag}|{to_tag}|{msg.call_id}|{msg.cseq}|{routes}|{preq}"
        return keyed_hash(self._secret, text, 6)

    def _looped(self, msg: Message, loop: str) -> bool:
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

    def _prepare_forward(
        self,
        fwd: Message,
        original: Message,
        source: tuple[str, int],
        loop: str,
        record_route: bool,
    ) -> str:
        """Turn the copy into what goes downstream; returns the branch put in our Via."""
        via = original.top_via()
        material = branch_material(original, via)
        branch = f"{MAGIC_COOKIE}{keyed_hash(self._secret, material)}.{loop}"
        # §18.2.1 / RFC 3581: received and rport on the previous hop's Via.
        top_value = original.via_values()[0]
        stamped = build.stamp_via(top_value, via, source)
        if stamped != top_value:
            fwd.pop_first_value("via")
            fwd.prepend("via", "Via", stamped)
        transport = self._up[0]
        fwd.prepend(
            "via",
            "Via",
            build.via_value(transport, self.config.local_host, self.config.local_port, branch),
        )
        # §16.6 step 3: Max-Forwards, added when missing.
        mf = original.max_forwards
        fwd.set("max-forwards", "Max-Forwards", str(DEFAULT_MAX_FORWARDS if mf is None else mf - 1))
        # §16.4: a Route naming us was for us; loose routing keeps the Request-URI.
        routes = original.values("route")
        if routes and self._is_me(routes[0]):
            fwd.pop_first_value("route")
        if record_route and self.config.record_route:
            fwd.prepend("record-route", "Record-Route", self._rr)
        return branch

    def _is_me(self, route_value: str) -> bool:
        try:
            uri = parse_uri(parse_name_addr(route_value, "Route").uri, "Route")
        except SipError:
            return False
        port = uri.port if uri.port is not None else 5060
        return port == self.config.local_port and build.same_host(uri.host, self.config.local_host)

    def _forward(
        self,
        server: Transaction,
        msg: Message,
        dest: Dest,
        *,
        loop: str,
        now: float,
        dialog: _Dialog | None,
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
        fwd_state.branch = self._prepare_forward(
            out, msg, source, loop, record_route=method in _DIALOG_CREATING and not from_trunk
        )
        data = out.render()
        client = Transaction.client(
            method == "INVITE", (fwd_state.branch, method), dest[0] != "udp", self._timers, now
        )
        client.request, client.dest, client.context = data, dest, fwd_state
        fwd_state.client = client
        self._client[client.key] = client
        self._emit(data, dest, method, None)
        self._arm(client)
        if method == "INVITE":
            fwd_state.timer_c = now + self.config.timer_c_s
            self._schedule(fwd_state.timer_c, fwd_state)

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
            client.ack = client.ack or self._hop_ack(client, msg)
        self._run(client, actions, now, msg)

    def _hop_ack(self, client: Transaction, resp: Message) -> bytes:
        """The ACK for a non-2xx final (§17.1.1.3): same branch and Route set as the INVITE."""
        fwd = client.context
        assert isinstance(fwd, _Forward)
        inv = parse_message(client.request, framed=True)
        headers = []
        for h in inv.headers:
            if h[0] == "via":
                headers.append(h)
                break
        for h in inv.headers:
            if h[0] in ("from", "call-id", "route", "max-forwards"):
                headers.append(h)
        to = resp.get("to") or inv.get("to") or ""
        headers.append(("to", "To", to))
        headers.append(("cseq", "CSeq", f"{inv.cseq} ACK"))
        return Message.request("ACK", inv.uri, headers).render()

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
            self._end_dialog(fwd.dialog)
        if method == "INVITE" and status < 200:
            fwd.provisional = True
            if fwd.cancel_pending:
                fwd.cancel_pending = False
                self._send_cancel(fwd, now)
            if fwd.timer_c is not None:  # §16.6 step 11: a provisional resets Timer C
                fwd.timer_c = now + self.config.timer_c_s
                self._schedule(fwd.timer_c, fwd)
        if status >= 200:
            fwd.timer_c = None
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

    def _track_dialog(self, dialog: _Dialog, msg: Message, now: float) -> None:
        tag = msg.to().tag
        status = msg.status
        if tag and 100 < status < 300:
            dialog.remote_tags.add(tag)
            if status >= 200:
                dialog.confirmed = True
                dialog.expires = max(dialog.expires, now + self.config.dialog_idle_s)
                self._schedule(dialog.expires, dialog)
        elif status >= 300 and not dialog.confirmed:
            self._end_dialog(dialog)

    def _screen_redirect(self, fwd: _Forward, msg: Message) -> Message:
        """3xx from the trunk: only Contacts screened allowed go back to the PBX (rule 6)."""
        kept: list[str] = []
        for value in msg.values("contact"):
            try:
                na = parse_name_addr(value, "Contact")
                uri: Uri | None = parse_uri(na.uri, "Contact")
            except SipError:
                uri = None
            if self._screen_target(uri, fwd.request, fwd.request.method or ""):
                kept.append(value)
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

    def _tag(self, text: str) -> str:
        return keyed_hash(self._secret, "tag|" + text, 8)

    @staticmethod
    def _retry_after(seconds: int) -> tuple[str, str, str]:
        return ("retry-after", "Retry-After", str(max(0, int(seconds))))

    def _respond(
        self,
        server: Transaction,
        request: Message,
        status: int,
        now: float,
        extra: list[tuple[str, str, str]] | None = None,
        *,
        reason: str | None = None,
    ) -> None:
        """Answer through a server transaction (it keeps the bytes for retransmissions)."""
        if status < 200:
            ev = TxEvent.SEND_1XX
        elif status < 300:
            ev = TxEvent.SEND_2XX
        else:
            ev = TxEvent.SEND_FINAL
        if not server.accepts(ev):
            return
        tag = self._tag("|".join(server.key))
        resp = build_response(request, status, reason or REASONS.get(status, "Error"), tag, extra)
        data = resp.render()
        server.response = data
        self._run(server, server.handle(ev, now), now)
        self._emit(data, server.dest, None, status)

    def _respond_new(
        self,
        server: Transaction,
        msg: Message,
        status: int,
        now: float,
        extra: list[tuple[str, str, str]] | None = None,
        *,
        reason: str | None = None,
    ) -> None:
        self._server[server.key] = server
        self._respond(server, msg, status, now, extra, reason=reason)

    def _refuse(self, server: Transaction, msg: Message, why: str, now: float) -> None:
        """The one refusal: same status, reason and header set whatever the cause (invariant 3)."""
        status = self.config.refusal_status
        self._respond_new(server, msg, status, now, None, reason=self.config.refusal_reason)
        self._events.append(Refused(msg.call_id, msg.method or "", status, why))

    def _send(self, msg: Message, dest: Dest) -> None:
        self._emit(msg.render(), dest, msg.method, None if msg.is_request else msg.status)

    def _emit(self, data: bytes, dest: Dest, method: str | None, status: int | None) -> None:
        self._out.append(Outgoing(data, dest[0], (dest[1], dest[2])))
        self._events.append(MessageSent(method, status))

    def _schedule(self, when: float, obj: object) -> None:
        heapq.heappush(self._heap, (when, next(self._seq), obj))

    def _arm(self, tx: Transaction) -> None:
        deadline = tx.next_deadline()
        if deadline is not None:
            self._schedule(deadline, tx)

    def _run(
        self, tx: Transaction, actions: tuple[str, ...], now: float, msg: Message | None = None
    ) -> None:
        """Carry out what a transition asked for, then file or drop the transaction."""
        for a in actions:
            if a == "resend_request":
                self._emit(tx.request, tx.dest, tx.key[1], None)
            elif a == "resend_response":
                if tx.response:
                    self._emit(tx.response, tx.dest, None, _status_of(tx.response))
            elif a == "send_ack":
                if tx.ack:
                    self._emit(tx.ack, tx.dest, "ACK", None)
            elif a == "pass_up":
                if msg is not None and isinstance(tx.context, _Forward):
                    self._relay_response(tx.context, msg, now)
            elif a == "timeout":
                self._client_timeout(tx, now)
        if tx.terminated:
            table = (
                self._client
                if tx.kind in (Kind.INVITE_CLIENT, Kind.NON_INVITE_CLIENT)
                else self._server
            )
            if table.get(tx.key) is tx:
                del table[tx.key]
        else:
            self._arm(tx)

    def _tx_timers(self, tx: Transaction, now: float) -> None:
        if tx.terminated:
            return
        for ev in tx.due(now):
            if tx.terminated:
                break
            if tx.accepts(ev):
                self._run(tx, tx.handle(ev, now), now)
        if not tx.terminated:
            self._arm(tx)

    def _client_timeout(self, tx: Transaction, now: float) -> None:
        """Timer B or F (or a transport error): the caller hears 408 (§16.8)."""
        fwd = tx.context
        if not isinstance(fwd, _Forward):
            return
        method = fwd.request.method or ""
        timer = "B" if tx.kind is Kind.INVITE_CLIENT else "F"
        self._events.append(TransactionTimedOut(fwd.request.call_id, method, timer))
        fwd.timer_c = None
        self._respond(fwd.server, fwd.request, 487 if fwd.cancelled else 408, now)
        if fwd.dialog is not None and not fwd.dialog.confirmed:
            self._end_dialog(fwd.dialog)

    def _timer_c(self, fwd: _Forward, now: float) -> None:
        """§16.8: Timer C fired: CANCEL what is ringing, and the caller hears 408."""
        if fwd.timer_c is None or fwd.timer_c > now:
            return  # reset or finished since this entry was scheduled
        fwd.timer_c = None
        client = fwd.client
        if client is None or client.state not in (State.CALLING, State.PROCEEDING):
            return
        self._events.append(TransactionTimedOut(fwd.request.call_id, "INVITE", "C"))
        if fwd.provisional:
            self._send_cancel(fwd, now)
        else:
            # Nothing answered at all: stop retransmitting, as if a 408 came (§16.8).
            client.deadlines.clear()
            client.state = State.TERMINATED
            self._run(client, (), now)
        self._respond(fwd.server, fwd.request, 408, now)

    def _send_cancel(self, fwd: _Forward, now: float) -> None:
        """CANCEL downstream (§9.1, §16.10): the INVITE's branch, Request-URI and Route."""
        client = fwd.client
        if client is None or client.state not in (State.CALLING, State.PROCEEDING):
            return
        inv = parse_message(client.request, framed=True)
        headers = []
        for h in inv.headers:
            if h[0] == "via":
                headers.append(h)
                break
        for h in inv.headers:
            if h[0] in ("from", "to", "call-id", "route", "max-forwards"):
                headers.append(h)
        headers.append(("cseq", "CSeq", f"{inv.cseq} CANCEL"))
        data = Message.request("CANCEL", inv.uri, headers).render()
        tx = Transaction.client(False, (fwd.branch, "CANCEL"), client.reliable, self._timers, now)
        tx.request, tx.dest = data, client.dest
        self._client[tx.key] = tx
        self._emit(data, client.dest, "CANCEL", None)
        self._arm(tx)


def _validate(msg: Message) -> None:
    """The header fields a proxy relies on or passes on must parse (RFC 4475 §3.1.2)."""
    msg.from_()
    msg.to()
    for value in msg.via_values():
        parse_via(value)
    for value in msg.values("contact"):
        if value == "*" and msg.method == "REGISTER":
            continue
        na = parse_name_addr(value, "Contact")
        uri = parse_uri(na.uri, "Contact")
        if uri.headers is not None and not na.bracketed:
            raise SipError(400, "Contact: URI headers outside <>")


def _status_of(data: bytes) -> int | None:
    if data.startswith(b"SIP/2.0 ") and data[8:11].isdigit():
        return int(data[8:11])
    return None
