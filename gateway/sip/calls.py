"""Forwarded calls (RFC 3261 §16.6-§16.10): what happens after the proxy decided to forward.

`CallLayer` sends a screened request on through a client transaction, relays what comes back
through the server transaction (§16.7: 100 is hop by hop, a 503 becomes 500, a 3xx keeps only
Contacts screened allowed), tracks the dialog it opens, runs Timer C (§16.6 step 11) and sends
CANCEL downstream (§16.10). The request policy lives in `proxy.ProxyCore`, which extends it.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass

from gateway.sip import build
from gateway.sip.build import MAGIC_COOKIE, build_response
from gateway.sip.config import ProxyConfig
from gateway.sip.dialogs import Dest, Dialog, DialogTable
from gateway.sip.errors import REASONS, SipError
from gateway.sip.events import Refused, TransactionTimedOut
from gateway.sip.forwarding import Forwarder
from gateway.sip.message import Message
from gateway.sip.screening import Screen, Screening
from gateway.sip.transaction import Event as TxEvent
from gateway.sip.transaction import Kind, State, Timers, Transaction
from gateway.sip.txlayer import TransactionLayer
from gateway.sip.uri import format_host

__all__ = ["DIALOG_CREATING", "CallLayer", "Forwarded"]

# Methods that create a dialog or a subscription the proxy must keep routing (§12, RFC 6665).
DIALOG_CREATING = frozenset({"INVITE", "SUBSCRIBE", "REFER"})
# Transaction states after the final response: nothing more is sent from the request itself.
_CLIENT_DONE = frozenset({State.COMPLETED, State.ACCEPTED, State.TERMINATED})
_SERVER_DONE = frozenset({State.COMPLETED, State.CONFIRMED, State.ACCEPTED, State.TERMINATED})


@dataclass(slots=True, eq=False)
class Forwarded:
    """One forwarded request: the server transaction it came on, the client one it went on."""

    server: Transaction
    # As received. Both messages are dropped (None) once both transactions have their final
    # response (`CallLayer._settle`): what lingers for retransmissions keeps only wire bytes.
    request: Message | None
    client: Transaction | None = None
    sent: Message | None = None  # the copy sent downstream (for ACK and CANCEL, §17.1.1.3, §9.1)
    branch: str = ""
    provisional: bool = False  # a 101-199 arrived: CANCEL may now be sent (§9.1)
    cancel_pending: bool = False
    cancelled: bool = False
    timer_c: float | None = None
    c_token: int | None = None  # what the timer heap holds for Timer C (a key of _timer_c_of)
    dialog: Dialog | None = None
    from_trunk: bool = False


class CallLayer(TransactionLayer):
    """Forwarding, response relay, dialogs and Timer C; see the module docstring."""

    def __init__(self, config: ProxyConfig, screen: Screen) -> None:
        super().__init__(
            Timers(config.t1_s, config.t2_s, config.t4_s), config.branch_secret or os.urandom(16)
        )
        self.config = config
        self._dialogs = DialogTable(config.max_dialogs)
        self._timer_c_of: dict[int, Forwarded] = {}  # running Timer C tokens -> their call
        self._c_tokens = itertools.count()
        self._screening = Screening(screen, self._events)
        up_transport, up_host, up_port = config.upstream
        self._up: Dest = (up_transport.lower(), up_host, up_port)
        self._me = f"{format_host(config.local_host)}:{config.local_port}".lower()
        self._fwd = Forwarder(
            self._secret, config.local_host, config.local_port, self._up[0], config.record_route
        )

    def _on_timer(self, obj: object, now: float) -> None:
        if isinstance(obj, int):  # a Timer C token
            fwd = self._timer_c_of.pop(obj, None)
            if fwd is not None:
                fwd.c_token = None
                self._timer_c(fwd, now)
        elif obj is self._dialogs:
            self._dialogs.expire(now)

    def _pass_up(self, tx: Transaction, msg: Message, now: float) -> None:
        if isinstance(tx.context, Forwarded):
            self._relay_response(tx.context, msg, now)

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
        fwd_state = Forwarded(server, msg, dialog=dialog, from_trunk=from_trunk)
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
            record_route=method in DIALOG_CREATING and not from_trunk,
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
        fwd = client.context
        if (
            "send_ack" in actions
            and not client.ack
            and isinstance(fwd, Forwarded)
            and fwd.sent is not None
        ):
            client.ack = build.ack_for(fwd.sent, msg.get("to") or "")
        self._run(client, actions, now, msg)
        if isinstance(fwd, Forwarded):
            self._settle(fwd)

    @staticmethod
    def _settle(fwd: Forwarded) -> None:
        """Once both sides have a final response, nothing reads the messages again: the
        lingering transactions answer retransmissions from their wire bytes (§17.1.1.2,
        §17.2.1), CANCEL needs a client still CALLING/PROCEEDING (§9.1) and a 487 a server
        still PROCEEDING (§16.10). Dropping them keeps 32 s of lingering calls small."""
        client = fwd.client
        if client is not None and client.state in _CLIENT_DONE and fwd.server.state in _SERVER_DONE:
            fwd.request = None
            fwd.sent = None

    def _relay_response(self, fwd: Forwarded, msg: Message, now: float) -> None:
        """A response passed up by a client transaction goes back through the server one."""
        server = fwd.server
        status = msg.status
        method = msg.cseq_method
        if status == 100:
            return  # hop by hop (§16.7 step 5)
        if fwd.dialog is not None and method in DIALOG_CREATING:
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
        out = msg.copy()
        if status == 503:  # §16.7 step 6: a 503 from downstream is not passed on as a 503
            out.status, out.reason, status = 500, REASONS[500], 500
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

    def _screen_redirect(self, fwd: Forwarded, msg: Message) -> Message:
        """3xx from the trunk: only Contacts screened allowed go back to the PBX (rule 6)."""
        if fwd.request is None:  # settled: no 3xx is passed up after a final (transaction.py)
            raise AssertionError("3xx relayed after the call settled")
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
        if not isinstance(fwd, Forwarded) or fwd.request is None:
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

    def _arm_timer_c(self, fwd: Forwarded, now: float) -> None:
        """(Re)start Timer C. The heap holds an int token, not the call, so a call that ends
        early is not kept alive for three minutes by its stale heap entry, and the entry (a
        tuple of numbers) is one the garbage collector stops tracking."""
        self._stop_timer_c(fwd)
        fwd.timer_c = now + self.config.timer_c_s
        token = next(self._c_tokens)
        fwd.c_token = token
        self._timer_c_of[token] = fwd
        self._schedule(fwd.timer_c, token)

    def _stop_timer_c(self, fwd: Forwarded) -> None:
        fwd.timer_c = None
        if fwd.c_token is not None:
            self._timer_c_of.pop(fwd.c_token, None)
        fwd.c_token = None

    def _timer_c(self, fwd: Forwarded, now: float) -> None:
        """§16.8: Timer C fired: CANCEL what is ringing, and the caller hears 408."""
        if fwd.timer_c is None or fwd.timer_c > now:
            return  # reset or finished since this entry was scheduled
        self._stop_timer_c(fwd)
        client = fwd.client
        if client is None or client.state not in (State.CALLING, State.PROCEEDING):
            return
        if fwd.request is None:
            return  # settled (cannot happen while the client is still CALLING/PROCEEDING)
        self._events.append(TransactionTimedOut(fwd.request.call_id, "INVITE", "C"))
        if fwd.provisional or client.state is State.PROCEEDING:
            # Any provisional response, a 100 Trying included, lets a CANCEL go (§9.1); the
            # transaction keeps its state until the 487 (or the CANCEL's own timeout).
            self._send_cancel(fwd, now)
        else:
            # Nothing answered at all: stop retransmitting, as if a 408 came (§16.8).
            self._run(client, client.handle(TxEvent.ABANDON, now), now)
        self._respond(fwd.server, fwd.request, 408, now)

    def _send_cancel(self, fwd: Forwarded, now: float) -> None:
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
