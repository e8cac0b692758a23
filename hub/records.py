"""What the hub hands back to a case handler: plain frozen records with a JSON form each.

These are the only shapes that carry contact details out of the database, and only to a handler
whose view has been written to the audit log in the same transaction (hub.cases).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CaseRecord",
    "CaseSummary",
    "PersonRecord",
    "PhoneRecord",
    "TransferRecord",
    "TransitionRecord",
    "TransitionResult",
    "format_case",
]


def _date(value: dt.date | None) -> str | None:
    return value.isoformat() if value is not None else None


@dataclass(frozen=True, slots=True)
class CaseSummary:
    id: int
    state: str
    created_at: dt.datetime
    updated_at: dt.datetime
    requester_type: str
    offender_name: str
    prison_number: str
    establishment: str | None
    review_date: dt.date | None
    people: int
    numbers: int

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "state": self.state,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "requester_type": self.requester_type,
            "offender": {
                "name": self.offender_name,
                "prison_number": self.prison_number,
                "establishment": self.establishment,
            },
            "review_date": _date(self.review_date),
            "people": self.people,
            "numbers": self.numbers,
        }


@dataclass(frozen=True, slots=True)
class PhoneRecord:
    e164: str
    unallocated: bool
    barred_by_cases: int  # active bars on this number now, this case's included

    def as_json(self) -> dict[str, Any]:
        return {
            "e164": self.e164,
            "unallocated": self.unallocated,
            "barred_by_cases": self.barred_by_cases,
        }


@dataclass(frozen=True, slots=True)
class PersonRecord:
    name: str
    phones: tuple[PhoneRecord, ...]
    addresses: tuple[str, ...]
    emails: tuple[str, ...]

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "phones": [p.as_json() for p in self.phones],
            "addresses": list(self.addresses),
            "emails": list(self.emails),
        }


@dataclass(frozen=True, slots=True)
class TransitionRecord:
    at: dt.datetime
    handler: str
    action: str
    from_state: str
    to_state: str
    reason: str

    def as_json(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "handler": self.handler,
            "action": self.action,
            "from": self.from_state,
            "to": self.to_state,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class TransferRecord:
    at: dt.datetime
    from_establishment: str | None
    to_establishment: str
    handler: str
    reason: str

    def as_json(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "from": self.from_establishment,
            "to": self.to_establishment,
            "handler": self.handler,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class CaseRecord:
    summary: CaseSummary
    requester_name: str
    requester_contact: str
    victim_consent: bool
    reason: str
    offender_dob: dt.date
    protected: tuple[PersonRecord, ...]
    history: tuple[TransitionRecord, ...]
    transfers: tuple[TransferRecord, ...]

    def as_json(self) -> dict[str, Any]:
        out = self.summary.as_json()
        out["requester"] = {
            "type": self.summary.requester_type,
            "name": self.requester_name,
            "contact": self.requester_contact,
        }
        del out["requester_type"]
        out["victim_consent"] = self.victim_consent
        out["reason"] = self.reason
        out["offender"]["date_of_birth"] = self.offender_dob.isoformat()
        out["protected"] = [p.as_json() for p in self.protected]
        out["history"] = [h.as_json() for h in self.history]
        out["transfers"] = [t.as_json() for t in self.transfers]
        return out

    def as_text(self) -> str:
        return format_case(self)


@dataclass(frozen=True, slots=True)
class TransitionResult:
    case_id: int
    from_state: str
    to_state: str
    outbox_id: int | None  # the queued publication, when the transition changed bars
    adds: int  # 'add' changes queued
    removes: int  # 'remove' changes queued (numbers no other active case bars)
    still_barred: int  # numbers this case released that another active case still bars

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.case_id,
            "from": self.from_state,
            "to": self.to_state,
            "outbox": self.outbox_id,
            "adds": self.adds,
            "removes": self.removes,
            "still_barred": self.still_barred,
        }


def format_case(case: CaseRecord) -> str:
    """A case as text for a handler's terminal."""
    s = case.summary
    lines = [
        f"case {s.id}: {s.state} (received {s.created_at.isoformat(timespec='seconds')}, "
        f"review {s.review_date or '-'})",
        f"requester: {s.requester_type}: {case.requester_name} <{case.requester_contact}>; "
        f"victim consent: {'yes' if case.victim_consent else 'no'}",
        f"reason: {case.reason}",
        f"offender: {s.offender_name}, {s.prison_number}, born {case.offender_dob.isoformat()}, "
        f"at {s.establishment or 'establishment unknown'}",
    ]
    for i, p in enumerate(case.protected):
        lines.append(f"protected[{i}]: {p.name}")
        for ph in p.phones:
            flag = " (not known as allocated)" if ph.unallocated else ""
            lines.append(f"  phone {ph.e164}{flag}: barred by {ph.barred_by_cases} active case(s)")
        lines.extend(f"  address {a}" for a in p.addresses)
        lines.extend(f"  email {e}" for e in p.emails)
    for h in case.history:
        lines.append(
            f"{h.at.isoformat(timespec='seconds')} {h.handler}: {h.action} "
            f"({h.from_state} -> {h.to_state}): {h.reason}"
        )
    for t in case.transfers:
        lines.append(
            f"{t.at.isoformat(timespec='seconds')} {t.handler}: transfer "
            f"{t.from_establishment or '?'} -> {t.to_establishment}: {t.reason}"
        )
    return "\n".join(lines)
