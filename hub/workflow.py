"""The case workflow: every state, every action and every legal transition, in one table.

Everything that decides whether a case may move lives in this file (STYLE.md rule 2): the table
below is the documentation, and a (state, action) pair that is not in it is refused with an error
that names the current state and the actions it allows. Sans-I/O: no database, no clock.

    received --assess--> assessing --approve--> approved --lift----> lifted
                                   \\--decline--> declined \\--expire--> expired

Bars are applied on entering `approved` and released on leaving it; `BARRING_STATES` says which
states hold bars, so the storage layer never has to re-derive it.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Mapping
from types import MappingProxyType

__all__ = [
    "BARRING_STATES",
    "TERMINAL_STATES",
    "TRANSITIONS",
    "Action",
    "IllegalTransition",
    "State",
    "TransitionRefused",
    "allowed_actions",
    "check_expiry",
    "next_state",
]


class State(enum.StrEnum):
    RECEIVED = "received"
    ASSESSING = "assessing"
    APPROVED = "approved"
    DECLINED = "declined"
    LIFTED = "lifted"
    EXPIRED = "expired"


class Action(enum.StrEnum):
    ASSESS = "assess"
    APPROVE = "approve"
    DECLINE = "decline"
    LIFT = "lift"
    EXPIRE = "expire"


# (current state, action) -> new state. The whole graph of issue 5, nothing more.
TRANSITIONS: Mapping[tuple[State, Action], State] = MappingProxyType(
    {
        (State.RECEIVED, Action.ASSESS): State.ASSESSING,
        (State.ASSESSING, Action.APPROVE): State.APPROVED,
        (State.ASSESSING, Action.DECLINE): State.DECLINED,
        (State.APPROVED, Action.LIFT): State.LIFTED,
        (State.APPROVED, Action.EXPIRE): State.EXPIRED,
    }
)

# A case in one of these states bars its protected people's numbers (reference-counted).
BARRING_STATES: frozenset[State] = frozenset({State.APPROVED})

TERMINAL_STATES: frozenset[State] = frozenset(
    state for state in State if not any(src == state for src, _ in TRANSITIONS)
)


class IllegalTransition(ValueError):
    """The action is not allowed from the case's current state."""

    def __init__(self, current: State, action: Action) -> None:
        allowed = allowed_actions(current)
        choices = ", ".join(a.value for a in allowed) if allowed else "none: the case is closed"
        super().__init__(
            f"cannot {action.value} a case that is {current.value}; allowed from "
            f"{current.value}: {choices}"
        )
        self.current = current
        self.action = action
        self.allowed = allowed


def allowed_actions(current: State) -> tuple[Action, ...]:
    """The actions the table allows from `current`, in declaration order."""
    return tuple(action for (src, action) in TRANSITIONS if src == current)


def next_state(current: State, action: Action) -> State:
    """The state `action` moves a `current` case to, or IllegalTransition."""
    try:
        return TRANSITIONS[(current, action)]
    except KeyError:
        raise IllegalTransition(current, action) from None


class TransitionRefused(ValueError):
    """The graph allows the action, but a condition on it does not hold (the message says which)."""


def check_expiry(review_date: dt.date | None, today: dt.date) -> None:
    """A case expires only once its review date has come; ending it earlier is a lift, with a
    reason a handler gives, never a silent expiry (safety invariant 5)."""
    if review_date is None:
        raise TransitionRefused("the case has no review date: lift it instead, with a reason")
    if today < review_date:
        raise TransitionRefused(
            f"the review date is {review_date.isoformat()}, not yet come: lift the case instead "
            "to end it early"
        )
