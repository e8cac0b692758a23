"""Transaction state machines (RFC 3261 §17 with the RFC 6026 Accepted state), as one table.

Everything that affects a transition lives in `TRANSITIONS`: (kind, state, event) -> (next state,
actions). A (kind, state, event) that is not in the table is a bug in the caller and raises
`KeyError` through `Transaction.handle`, except for the events a peer can cause at any time
(retransmissions, stray responses), which the proxy checks with `Transaction.accepts` first.

Actions are plain strings: "resend_request", "resend_response", "send_ack", "pass_up" (hand the
response to the proxy core), "timeout" (tell the core the transaction timed out: it answers 408,
§16.8), and timer operations "start:X", "backoff:X" (double up to T2), "stop:X", "stop_all".
Timers are absolute deadlines on the caller's clock; nothing here reads a clock.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

__all__ = ["TIMER_NAMES", "TRANSITIONS", "Event", "Kind", "State", "Timers", "Transaction"]


class _FastEnum(enum.Enum):
    # Members are singletons: identity hashing is exact and runs in C, where Enum's own
    # __hash__ is a Python call (three per table lookup, several lookups per message).
    __hash__ = object.__hash__


class Kind(_FastEnum):
    INVITE_CLIENT = "invite-client"  # §17.1.1
    NON_INVITE_CLIENT = "non-invite-client"  # §17.1.2
    INVITE_SERVER = "invite-server"  # §17.2.1
    NON_INVITE_SERVER = "non-invite-server"  # §17.2.2


class State(_FastEnum):
    CALLING = "calling"
    TRYING = "trying"
    PROCEEDING = "proceeding"
    COMPLETED = "completed"
    CONFIRMED = "confirmed"
    ACCEPTED = "accepted"  # RFC 6026 §7.1, §7.2
    TERMINATED = "terminated"


class Event(_FastEnum):
    REQUEST = "request"  # a retransmission of the request that created a server transaction
    ACK = "ack"  # an ACK matching an INVITE server transaction (non-2xx final, §17.2.1)
    SEND_1XX = "send-1xx"
    SEND_2XX = "send-2xx"
    SEND_FINAL = "send-final"  # 300-699 for INVITE, 200-699 for non-INVITE
    RECV_1XX = "recv-1xx"
    RECV_2XX = "recv-2xx"
    RECV_FINAL = "recv-final"  # 300-699 for INVITE, 200-699 for non-INVITE
    TIMER_A = "A"
    TIMER_B = "B"
    TIMER_D = "D"
    TIMER_E = "E"
    TIMER_F = "F"
    TIMER_G = "G"
    TIMER_H = "H"
    TIMER_I = "I"
    TIMER_J = "J"
    TIMER_K = "K"
    TIMER_L = "L"
    TIMER_M = "M"
    TRANSPORT_ERROR = "transport-error"
    ABANDON = "abandon"  # the proxy gives up before any response (Timer C, §16.8)


TIMER_NAMES = ("A", "B", "D", "E", "F", "G", "H", "I", "J", "K", "L", "M")

_K = Kind
_S = State
_E = Event
# fmt: off
TRANSITIONS: dict[tuple[Kind, State, Event], tuple[State, tuple[str, ...]]] = {
    # -- INVITE client (§17.1.1, Figure 5; RFC 6026 Figure 3) ---------------------------
    (_K.INVITE_CLIENT, _S.CALLING, _E.TIMER_A): (_S.CALLING, ("resend_request", "backoff:A")),
    (_K.INVITE_CLIENT, _S.CALLING, _E.TIMER_B): (_S.TERMINATED, ("stop_all", "timeout")),
    (_K.INVITE_CLIENT, _S.CALLING, _E.RECV_1XX): (_S.PROCEEDING, ("stop_all", "pass_up")),
    (_K.INVITE_CLIENT, _S.PROCEEDING, _E.RECV_1XX): (_S.PROCEEDING, ("pass_up",)),
    (_K.INVITE_CLIENT, _S.CALLING, _E.RECV_2XX): (_S.ACCEPTED, ("stop_all", "start:M", "pass_up")),
    (_K.INVITE_CLIENT, _S.PROCEEDING, _E.RECV_2XX): (_S.ACCEPTED, ("start:M", "pass_up")),
    # RFC 6026 §7.2: 2xx retransmissions (and 2xx from other forks) go up to be forwarded.
    (_K.INVITE_CLIENT, _S.ACCEPTED, _E.RECV_2XX): (_S.ACCEPTED, ("pass_up",)),
    (_K.INVITE_CLIENT, _S.ACCEPTED, _E.RECV_1XX): (_S.ACCEPTED, ()),
    (_K.INVITE_CLIENT, _S.ACCEPTED, _E.RECV_FINAL): (_S.ACCEPTED, ()),
    (_K.INVITE_CLIENT, _S.ACCEPTED, _E.TIMER_M): (_S.TERMINATED, ("stop_all",)),
    (_K.INVITE_CLIENT, _S.CALLING, _E.RECV_FINAL):
        (_S.COMPLETED, ("stop_all", "send_ack", "start:D", "pass_up")),
    (_K.INVITE_CLIENT, _S.PROCEEDING, _E.RECV_FINAL):
        (_S.COMPLETED, ("send_ack", "start:D", "pass_up")),
    # A retransmitted final response is answered with the same ACK, not passed up (§17.1.1.2).
    (_K.INVITE_CLIENT, _S.COMPLETED, _E.RECV_FINAL): (_S.COMPLETED, ("send_ack",)),
    (_K.INVITE_CLIENT, _S.COMPLETED, _E.RECV_1XX): (_S.COMPLETED, ()),
    # A 2xx after a non-2xx final (a forking race): still forwarded so the UAC can ACK and BYE it.
    (_K.INVITE_CLIENT, _S.COMPLETED, _E.RECV_2XX): (_S.COMPLETED, ("pass_up",)),
    (_K.INVITE_CLIENT, _S.COMPLETED, _E.TIMER_D): (_S.TERMINATED, ("stop_all",)),
    (_K.INVITE_CLIENT, _S.CALLING, _E.TRANSPORT_ERROR): (_S.TERMINATED, ("stop_all", "timeout")),
    (_K.INVITE_CLIENT, _S.CALLING, _E.ABANDON): (_S.TERMINATED, ("stop_all",)),
    (_K.INVITE_CLIENT, _S.PROCEEDING, _E.TRANSPORT_ERROR):
        (_S.TERMINATED, ("stop_all", "timeout")),
    # -- non-INVITE client (§17.1.2, Figure 6) -------------------------------------------
    (_K.NON_INVITE_CLIENT, _S.TRYING, _E.TIMER_E): (_S.TRYING, ("resend_request", "backoff:E")),
    (_K.NON_INVITE_CLIENT, _S.PROCEEDING, _E.TIMER_E):
        (_S.PROCEEDING, ("resend_request", "t2:E")),
    (_K.NON_INVITE_CLIENT, _S.TRYING, _E.TIMER_F): (_S.TERMINATED, ("stop_all", "timeout")),
    (_K.NON_INVITE_CLIENT, _S.PROCEEDING, _E.TIMER_F): (_S.TERMINATED, ("stop_all", "timeout")),
    (_K.NON_INVITE_CLIENT, _S.TRYING, _E.RECV_1XX): (_S.PROCEEDING, ("pass_up",)),
    (_K.NON_INVITE_CLIENT, _S.PROCEEDING, _E.RECV_1XX): (_S.PROCEEDING, ("pass_up",)),
    (_K.NON_INVITE_CLIENT, _S.TRYING, _E.RECV_FINAL):
        (_S.COMPLETED, ("stop_all", "start:K", "pass_up")),
    (_K.NON_INVITE_CLIENT, _S.PROCEEDING, _E.RECV_FINAL):
        (_S.COMPLETED, ("stop_all", "start:K", "pass_up")),
    (_K.NON_INVITE_CLIENT, _S.COMPLETED, _E.RECV_FINAL): (_S.COMPLETED, ()),
    (_K.NON_INVITE_CLIENT, _S.COMPLETED, _E.RECV_1XX): (_S.COMPLETED, ()),
    (_K.NON_INVITE_CLIENT, _S.COMPLETED, _E.TIMER_K): (_S.TERMINATED, ("stop_all",)),
    (_K.NON_INVITE_CLIENT, _S.TRYING, _E.TRANSPORT_ERROR): (_S.TERMINATED, ("stop_all", "timeout")),
    (_K.NON_INVITE_CLIENT, _S.PROCEEDING, _E.TRANSPORT_ERROR):
        (_S.TERMINATED, ("stop_all", "timeout")),
    # -- INVITE server (§17.2.1, Figure 7; RFC 6026 Figure 5) ----------------------------
    (_K.INVITE_SERVER, _S.PROCEEDING, _E.REQUEST): (_S.PROCEEDING, ("resend_response",)),
    (_K.INVITE_SERVER, _S.PROCEEDING, _E.SEND_1XX): (_S.PROCEEDING, ()),
    (_K.INVITE_SERVER, _S.PROCEEDING, _E.SEND_2XX): (_S.ACCEPTED, ("start:L",)),
    (_K.INVITE_SERVER, _S.PROCEEDING, _E.SEND_FINAL): (_S.COMPLETED, ("start:G", "start:H")),
    (_K.INVITE_SERVER, _S.PROCEEDING, _E.TRANSPORT_ERROR): (_S.TERMINATED, ("stop_all",)),
    (_K.INVITE_SERVER, _S.COMPLETED, _E.REQUEST): (_S.COMPLETED, ("resend_response",)),
    (_K.INVITE_SERVER, _S.COMPLETED, _E.TIMER_G): (_S.COMPLETED, ("resend_response", "backoff:G")),
    (_K.INVITE_SERVER, _S.COMPLETED, _E.TIMER_H): (_S.TERMINATED, ("stop_all",)),
    (_K.INVITE_SERVER, _S.COMPLETED, _E.ACK): (_S.CONFIRMED, ("stop_all", "start:I")),
    (_K.INVITE_SERVER, _S.COMPLETED, _E.TRANSPORT_ERROR): (_S.TERMINATED, ("stop_all",)),
    # A late 2xx from downstream after our own final (CANCEL race): forwarded, no state change.
    (_K.INVITE_SERVER, _S.COMPLETED, _E.SEND_2XX): (_S.COMPLETED, ()),
    (_K.INVITE_SERVER, _S.CONFIRMED, _E.REQUEST): (_S.CONFIRMED, ()),
    (_K.INVITE_SERVER, _S.CONFIRMED, _E.ACK): (_S.CONFIRMED, ()),
    (_K.INVITE_SERVER, _S.CONFIRMED, _E.SEND_2XX): (_S.CONFIRMED, ()),
    (_K.INVITE_SERVER, _S.CONFIRMED, _E.TIMER_I): (_S.TERMINATED, ("stop_all",)),
    # RFC 6026 §7.1: retransmitted INVITEs are absorbed; 2xx retransmissions pass through.
    (_K.INVITE_SERVER, _S.ACCEPTED, _E.REQUEST): (_S.ACCEPTED, ()),
    (_K.INVITE_SERVER, _S.ACCEPTED, _E.ACK): (_S.ACCEPTED, ()),
    (_K.INVITE_SERVER, _S.ACCEPTED, _E.SEND_2XX): (_S.ACCEPTED, ()),
    (_K.INVITE_SERVER, _S.ACCEPTED, _E.TIMER_L): (_S.TERMINATED, ("stop_all",)),
    (_K.INVITE_SERVER, _S.ACCEPTED, _E.TRANSPORT_ERROR): (_S.ACCEPTED, ()),
    # -- non-INVITE server (§17.2.2, Figure 8) -------------------------------------------
    (_K.NON_INVITE_SERVER, _S.TRYING, _E.REQUEST): (_S.TRYING, ()),
    (_K.NON_INVITE_SERVER, _S.TRYING, _E.SEND_1XX): (_S.PROCEEDING, ()),
    (_K.NON_INVITE_SERVER, _S.TRYING, _E.SEND_2XX): (_S.COMPLETED, ("start:J",)),
    (_K.NON_INVITE_SERVER, _S.TRYING, _E.SEND_FINAL): (_S.COMPLETED, ("start:J",)),
    (_K.NON_INVITE_SERVER, _S.PROCEEDING, _E.REQUEST): (_S.PROCEEDING, ("resend_response",)),
    (_K.NON_INVITE_SERVER, _S.PROCEEDING, _E.SEND_1XX): (_S.PROCEEDING, ()),
    (_K.NON_INVITE_SERVER, _S.PROCEEDING, _E.SEND_2XX): (_S.COMPLETED, ("start:J",)),
    (_K.NON_INVITE_SERVER, _S.PROCEEDING, _E.SEND_FINAL): (_S.COMPLETED, ("start:J",)),
    (_K.NON_INVITE_SERVER, _S.PROCEEDING, _E.TRANSPORT_ERROR): (_S.TERMINATED, ("stop_all",)),
    (_K.NON_INVITE_SERVER, _S.COMPLETED, _E.REQUEST): (_S.COMPLETED, ("resend_response",)),
    (_K.NON_INVITE_SERVER, _S.COMPLETED, _E.TIMER_J): (_S.TERMINATED, ("stop_all",)),
    (_K.NON_INVITE_SERVER, _S.COMPLETED, _E.TRANSPORT_ERROR): (_S.TERMINATED, ("stop_all",)),
}
# fmt: on

# Which timers exist only on unreliable transports (retransmission timers) and which shrink to
# zero on reliable ones (§17.1.1.2, §17.1.2.2, §17.2.1, §17.2.2; Table 4 of RFC 3261).
_UNRELIABLE_ONLY = frozenset({"A", "E", "G"})
_ZERO_WHEN_RELIABLE = frozenset({"D", "I", "J", "K"})


@dataclass(frozen=True, slots=True)
class Timers:
    """Timer base values in seconds (RFC 3261 §17.1.1.1, Table 4)."""

    t1_s: float = 0.5
    t2_s: float = 4.0
    t4_s: float = 5.0

    def initial(self, name: str) -> float:
        t1 = self.t1_s
        if name in ("A", "E", "G"):
            return t1
        if name == "D":
            return max(32.0, 64 * t1)  # §17.1.1.2: at least 32 s for unreliable transports
        if name in ("I", "K"):
            return self.t4_s
        return 64 * t1  # B, F, H, J, L, M


def _check_table() -> None:
    for (_, _, _), (_, actions) in TRANSITIONS.items():
        for a in actions:
            op, _, timer = a.partition(":")
            if timer:
                assert op in ("start", "backoff", "stop", "t2") and timer in TIMER_NAMES, a
            else:
                assert a in (
                    "resend_request",
                    "resend_response",
                    "send_ack",
                    "pass_up",
                    "timeout",
                    "stop_all",
                ), a


_check_table()


@dataclass(slots=True, eq=False)
class Transaction:
    """One transaction. `key` is what the proxy indexes it by; `context` is the proxy's own."""

    kind: Kind
    key: tuple[str, ...]
    reliable: bool
    timers: Timers
    state: State
    request: bytes = b""  # client: the request as sent (for retransmission)
    ack: bytes = b""  # INVITE client: the ACK for a non-2xx final (§17.1.1.3)
    response: bytes = b""  # server: the last response sent (for retransmission)
    dest: tuple[str, str, int] = ("udp", "", 0)  # where requests (client) or responses go
    deadlines: dict[str, float] = field(default_factory=dict)
    intervals: dict[str, float] = field(default_factory=dict)
    context: Any = None
    armed: float | None = None  # the earliest wake-up queued for it in the timer heap

    @classmethod
    def client(
        cls, invite: bool, key: tuple[str, ...], reliable: bool, timers: Timers, now: float
    ) -> Transaction:
        kind = Kind.INVITE_CLIENT if invite else Kind.NON_INVITE_CLIENT
        tx = cls(kind, key, reliable, timers, State.CALLING if invite else State.TRYING)
        first = "A" if invite else "E"
        tx._start(first, now)
        tx._start("B" if invite else "F", now)
        return tx

    @classmethod
    def server(
        cls, invite: bool, key: tuple[str, ...], reliable: bool, timers: Timers
    ) -> Transaction:
        kind = Kind.INVITE_SERVER if invite else Kind.NON_INVITE_SERVER
        return cls(kind, key, reliable, timers, State.PROCEEDING if invite else State.TRYING)

    @property
    def terminated(self) -> bool:
        return self.state is State.TERMINATED

    def accepts(self, event: Event) -> bool:
        return (self.kind, self.state, event) in TRANSITIONS

    def handle(self, event: Event, now: float) -> tuple[str, ...]:
        """Apply one event; returns the I/O actions for the caller (timer ops are done here)."""
        state, actions = TRANSITIONS[(self.kind, self.state, event)]
        self.state = state
        out: list[str] = []
        for a in actions:
            op, _, name = a.partition(":")
            if op == "start":
                self._start(name, now)
            elif op == "backoff":
                iv = self.intervals.get(name, self.timers.t1_s) * 2
                if name != "A":  # Timer A doubles without cap (§17.1.1.2); E and G cap at T2
                    iv = min(iv, self.timers.t2_s)
                self.intervals[name] = iv
                self.deadlines[name] = now + iv
            elif op == "t2":
                self.intervals[name] = self.timers.t2_s
                self.deadlines[name] = now + self.timers.t2_s
            elif op == "stop":
                self.deadlines.pop(name, None)
            elif op == "stop_all":
                self.deadlines.clear()
            else:
                out.append(a)
        return tuple(out)

    def _start(self, name: str, now: float) -> None:
        if name in _UNRELIABLE_ONLY and self.reliable:
            return
        delay = (
            0.0 if (name in _ZERO_WHEN_RELIABLE and self.reliable) else self.timers.initial(name)
        )
        self.intervals[name] = delay
        self.deadlines[name] = now + delay

    def next_deadline(self) -> float | None:
        return min(self.deadlines.values()) if self.deadlines else None

    def due(self, now: float) -> list[Event]:
        """The timer events whose deadline has passed, earliest first (removed from the set)."""
        fired = sorted((d, n) for n, d in self.deadlines.items() if d <= now)
        for _, n in fired:
            del self.deadlines[n]
        return [Event(n) for _, n in fired]
