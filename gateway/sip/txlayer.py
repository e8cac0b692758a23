"""The transaction layer under the proxy (RFC 3261 §17): transactions, timers, output.

`TransactionLayer` owns the server and client transaction tables, one heap of deadlines and
the queues the adapter drains. It carries out what `transaction.TRANSITIONS` asks for
(retransmit, ACK, pass a response up, time out) and calls two hooks the transaction user (the
proxy core, §16) implements: `_pass_up` and `_timed_out`; other objects put on the heap come
back through `_on_timer`.
"""

from __future__ import annotations

import heapq
import itertools

from gateway.sip.build import build_response, keyed_hash
from gateway.sip.config import Outgoing
from gateway.sip.dialogs import Dest
from gateway.sip.errors import REASONS
from gateway.sip.events import Event, MessageSent
from gateway.sip.message import Header, Message
from gateway.sip.transaction import Event as TxEvent
from gateway.sip.transaction import Kind, State, Timers, Transaction

__all__ = ["TransactionLayer"]


class TransactionLayer:
    """Transactions, deadlines and output queues; subclassed by the proxy core."""

    def __init__(self, timers: Timers, secret: bytes) -> None:
        self._timers = timers
        self._secret = secret
        self._server: dict[tuple[str, ...], Transaction] = {}
        self._client: dict[tuple[str, ...], Transaction] = {}
        self._heap: list[tuple[float, int, object]] = []
        self._seq = itertools.count()
        self._out: list[Outgoing] = []
        self._events: list[Event] = []

    # -- what the adapter drains ---------------------------------------------------------

    def outgoing(self) -> list[Outgoing]:
        """Messages to send, in order; the queue is emptied."""
        out, self._out = self._out, []
        return out

    def events(self) -> list[Event]:
        """Typed events since the last call; the queue is emptied."""
        out = list(self._events)
        self._events.clear()
        return out

    @property
    def active_transactions(self) -> int:
        return len(self._server) + len(self._client)

    def next_timer(self) -> float | None:
        """The earliest deadline (absolute, the caller's clock), or None."""
        return self._heap[0][0] if self._heap else None

    def handle_timer(self, now: float) -> None:
        """Fire everything due by `now`, in deadline order."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            when, _, obj = heapq.heappop(heap)
            if isinstance(obj, Transaction):
                if obj.armed == when:
                    obj.armed = None
                self._tx_timers(obj, now)
            else:
                self._on_timer(obj, now)

    # -- hooks for the transaction user --------------------------------------------------

    def _pass_up(self, tx: Transaction, msg: Message, now: float) -> None:
        raise NotImplementedError

    def _timed_out(self, tx: Transaction, now: float) -> None:
        raise NotImplementedError

    def _on_timer(self, obj: object, now: float) -> None:
        raise NotImplementedError

    # -- answering and sending -----------------------------------------------------------

    def _tag(self, text: str) -> str:
        """A deterministic To tag for what we answer ourselves (§8.2.6.2)."""
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
        extra: list[Header] | None = None,
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
        tag = self._tag("|".join(server.key)) if status > 100 else None
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
        extra: list[Header] | None = None,
        *,
        reason: str | None = None,
    ) -> None:
        self._server[server.key] = server
        self._respond(server, msg, status, now, extra, reason=reason)

    def _send(self, msg: Message, dest: Dest) -> None:
        self._emit(msg.render(), dest, msg.method, None if msg.is_request else msg.status)

    def _emit(self, data: bytes, dest: Dest, method: str | None, status: int | None) -> None:
        self._out.append(Outgoing(data, dest[0], (dest[1], dest[2])))
        self._events.append(MessageSent(method, status))

    def _schedule(self, when: float, obj: object) -> None:
        heapq.heappush(self._heap, (when, next(self._seq), obj))

    def _arm(self, tx: Transaction) -> None:
        """Make sure the heap wakes `tx` by its next deadline. One entry per transaction: when
        an earlier entry is already queued, it fires first and re-arms (`_tx_timers`)."""
        deadline = tx.next_deadline()
        if deadline is not None and (tx.armed is None or deadline < tx.armed):
            tx.armed = deadline
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
                if msg is not None:
                    self._pass_up(tx, msg, now)
            elif a == "timeout":
                self._timed_out(tx, now)
        if tx.terminated:
            table = (
                self._client
                if tx.kind in (Kind.INVITE_CLIENT, Kind.NON_INVITE_CLIENT)
                else self._server
            )
            if table.get(tx.key) is tx:
                del table[tx.key]
            # Break the transaction <-> call cycle so the call is freed by reference counting
            # when its last transaction ends, not by a full garbage collection later.
            tx.context = None
        else:
            _shed(tx)
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


def _shed(tx: Transaction) -> None:
    """Drop the wire bytes a lingering transaction can no longer send (RFC 3261 §17): a client
    past its final response never resends its request (Timers A/E stop), an INVITE server in
    Accepted never resends its response (RFC 6026 §7.1: 2xx retransmissions come from
    downstream). What remains is what absorbs retransmissions."""
    state = tx.state
    if state is State.COMPLETED or state is State.ACCEPTED:
        if tx.kind is Kind.INVITE_CLIENT or tx.kind is Kind.NON_INVITE_CLIENT:
            tx.request = b""
        elif state is State.ACCEPTED:
            tx.response = b""


def _status_of(data: bytes) -> int | None:
    if data.startswith(b"SIP/2.0 ") and data[8:11].isdigit():
        return int(data[8:11])
    return None
