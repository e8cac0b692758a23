"""Typed events the core hands to its adapter (STYLE.md rule 9): frozen dataclasses.

The adapter turns them into metrics and logs. `Screened.dialled` is the dial string as dialled
(it may be a victim's number): adapters must tag or hash it before it reaches a log (safety
invariant 4); the core never logs anything itself.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "Event",
    "MessageReceived",
    "MessageSent",
    "ParseFailed",
    "Refused",
    "Screened",
    "TransactionTimedOut",
]


@dataclass(frozen=True, slots=True)
class MessageReceived:
    method: str | None  # None for a response
    status: int | None  # None for a request
    transport: str


@dataclass(frozen=True, slots=True)
class MessageSent:
    method: str | None
    status: int | None


@dataclass(frozen=True, slots=True)
class ParseFailed:
    status: int | None  # the status answered, or None when nothing could be answered
    reason: str


@dataclass(frozen=True, slots=True)
class Screened:
    call_id: str
    method: str  # the request whose target was screened ("INVITE", "REFER", ...)
    verdict: str  # "allowed" | "blocked" | "invalid"
    dialled: str  # the dial string as dialled (unescaped once)
    caller: str  # P-Asserted-Identity user, else From user ("" when none)


@dataclass(frozen=True, slots=True)
class Refused:
    call_id: str
    method: str
    status: int
    why: str  # "screen", "allow_from", "trunk_unsolicited", "draining", "overload", ...


@dataclass(frozen=True, slots=True)
class TransactionTimedOut:
    call_id: str
    method: str
    timer: str  # "B", "C" or "F"


Event = MessageReceived | MessageSent | ParseFailed | Screened | Refused | TransactionTimedOut
