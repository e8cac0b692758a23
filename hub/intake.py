"""Case intake: check a request as received and turn it into a `CaseRequest`, or refuse it whole.

A request that breaks any rule is refused with the field path and the reason
(`protected[0].phones[1]: not a possible number: too short for its country`), and nothing of it
is stored: a half-taken case would bar some numbers and silently not others. Every phone number is
canonicalised with the blocklist intake rules (DESIGN.md screening rule 5), so what the hub stores
is exactly what the gateways will screen. Messages never repeat a contact detail (safety
invariant 4): they name where the fault is, not what was written there.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from blocklist import DialPlan, IntakeError, canonicalise

__all__ = [
    "MAX_ADDRESS_CHARS",
    "MAX_EMAIL_CHARS",
    "MAX_NAME_CHARS",
    "MAX_PROTECTED_PEOPLE",
    "MAX_REASON_CHARS",
    "CaseRequest",
    "IntakeRefused",
    "Offender",
    "Phone",
    "ProtectedPerson",
    "Requester",
    "RequesterType",
    "parse_case_request",
    "parse_prison_number",
    "request_from_flags",
]

MAX_NAME_CHARS = 200  # generous for any real name; bounds what a bad file can make us store
MAX_CONTACT_CHARS = 500  # a requester's phone, email or postal address as free text
MAX_REASON_CHARS = 10_000  # free-text reasons are read by people; longer is a pasted document
MAX_ADDRESS_CHARS = 500  # Royal Mail PAF lines x 7 fit well within this
MAX_EMAIL_CHARS = 254  # RFC 5321 §4.5.3.1.3: 256-octet path including the angle brackets
MAX_PROTECTED_PEOPLE = 50  # one request names a household, not a town
MAX_ITEMS_PER_PERSON = 20  # phones, addresses or emails of one person
EARLIEST_BIRTH_YEAR = 1900  # a date of birth before this is a typo, not a prisoner

# HMPPS prison number (NOMS number): one letter, four digits, two letters, e.g. A1234BC.
PRISON_NUMBER_RE = re.compile(r"[A-Z][0-9]{4}[A-Z]{2}")
# Deliberately loose (RFC 5322 allows far more): one @, something before it, a dotted domain.
EMAIL_RE = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
# What a misspelt field name looks like ("phone", "date_of_birth"); other keys are not echoed.
FIELD_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


class RequesterType(enum.StrEnum):
    VICTIM = "victim"
    ON_BEHALF_WITH_CONSENT = "on_behalf_with_consent"
    POLICE = "police"
    PROBATION = "probation"
    VICTIM_SERVICES = "victim_services"
    FRIEND = "friend"
    FAMILY = "family"


class IntakeRefused(ValueError):
    """The request cannot be taken; `field` is the path of the fault, `reason` what is wrong."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Requester:
    type: RequesterType
    name: str
    contact: str


@dataclass(frozen=True, slots=True)
class Offender:
    name: str
    prison_number: str
    date_of_birth: dt.date
    establishment: str | None


@dataclass(frozen=True, slots=True)
class Phone:
    e164: str
    unallocated: bool  # possible but not known to phonenumbers as allocated (accepted, warned)


@dataclass(frozen=True, slots=True)
class ProtectedPerson:
    name: str
    phones: tuple[Phone, ...]
    addresses: tuple[str, ...]
    emails: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CaseRequest:
    requester: Requester
    victim_consent: bool
    reason: str
    offender: Offender
    protected: tuple[ProtectedPerson, ...]
    warnings: tuple[str, ...] = ()

    def numbers(self) -> frozenset[str]:
        """Every distinct E.164 number this case asks to bar."""
        return frozenset(p.e164 for person in self.protected for p in person.phones)


def parse_prison_number(raw: str, where: str = "prison_number") -> str:
    """A1234BC, upper-cased with spaces removed, or IntakeRefused."""
    text = "".join(raw.split()).upper()
    if not PRISON_NUMBER_RE.fullmatch(text):
        raise IntakeRefused(where, "not a prison number (one letter, four digits, two letters)")
    return text


def parse_case_request(data: object, plan: DialPlan | None = None) -> CaseRequest:
    """Check a decoded JSON request; the whole case or IntakeRefused naming the first fault."""
    plan = plan or DialPlan()
    top = _object(data, "request")
    _only(top, "request", {"requester", "victim_consent", "reason", "offender", "protected"})
    requester = _requester(_object(_need(top, "requester", ""), "requester"))
    consent = _need(top, "victim_consent", "")
    if not isinstance(consent, bool):
        raise IntakeRefused("victim_consent", "must be true or false")
    if requester.type is RequesterType.ON_BEHALF_WITH_CONSENT and not consent:
        raise IntakeRefused(
            "victim_consent", "requester type on_behalf_with_consent needs the victim's consent"
        )
    if requester.type is RequesterType.VICTIM and not consent:
        raise IntakeRefused("victim_consent", "a request from the victim is their consent")
    reason = _text(top, "reason", "", MAX_REASON_CHARS)
    offender = _offender(_object(_need(top, "offender", ""), "offender"))
    people_raw = _need(top, "protected", "")
    if not isinstance(people_raw, list) or not people_raw:
        raise IntakeRefused("protected", "must be a non-empty list of people")
    if len(people_raw) > MAX_PROTECTED_PEOPLE:
        raise IntakeRefused("protected", f"more than {MAX_PROTECTED_PEOPLE} people")
    warnings: list[str] = []
    people = tuple(
        _person(_object(raw, f"protected[{i}]"), f"protected[{i}]", plan, warnings)
        for i, raw in enumerate(people_raw)
    )
    return CaseRequest(requester, consent, reason, offender, people, tuple(warnings))


def _requester(obj: Mapping[str, Any]) -> Requester:
    _only(obj, "requester", {"type", "name", "contact"})
    raw_type = _need(obj, "type", "requester.")
    try:
        kind = RequesterType(raw_type)
    except ValueError:
        choices = ", ".join(t.value for t in RequesterType)
        raise IntakeRefused("requester.type", f"must be one of {choices}") from None
    name = _text(obj, "name", "requester.", MAX_NAME_CHARS)
    contact = _text(obj, "contact", "requester.", MAX_CONTACT_CHARS)
    return Requester(kind, name, contact)


def _offender(obj: Mapping[str, Any]) -> Offender:
    _only(obj, "offender", {"name", "prison_number", "date_of_birth", "establishment"})
    name = _text(obj, "name", "offender.", MAX_NAME_CHARS)
    number_raw = _need(obj, "prison_number", "offender.")
    if not isinstance(number_raw, str):
        raise IntakeRefused("offender.prison_number", "must be a string such as A1234BC")
    number = parse_prison_number(number_raw, "offender.prison_number")
    dob_raw = _need(obj, "date_of_birth", "offender.")
    dob = _date(dob_raw, "offender.date_of_birth")
    if dob.year < EARLIEST_BIRTH_YEAR or dob >= dt.datetime.now(dt.UTC).date():
        raise IntakeRefused("offender.date_of_birth", "not a plausible date of birth")
    establishment: str | None = None
    if obj.get("establishment") not in (None, ""):
        establishment = _text(obj, "establishment", "offender.", MAX_NAME_CHARS)
    return Offender(name, number, dob, establishment)


def _person(
    obj: Mapping[str, Any], where: str, plan: DialPlan, warnings: list[str]
) -> ProtectedPerson:
    _only(obj, where, {"name", "phones", "addresses", "emails"})
    name = _text(obj, "name", f"{where}.", MAX_NAME_CHARS)
    phones: list[Phone] = []
    for i, raw in enumerate(_strings(obj, "phones", where)):
        path = f"{where}.phones[{i}]"
        try:
            result = canonicalise(raw, plan)
        except IntakeError as exc:
            # The blocklist reason never repeats the number (safety invariant 4).
            raise IntakeRefused(path, exc.reason) from None
        warnings.extend(f"{path}: {w}" for w in result.warnings)
        phones.append(Phone(result.e164, bool(result.warnings)))
    addresses = []
    for i, raw in enumerate(_strings(obj, "addresses", where)):
        text = " ".join(raw.split())
        if not text or len(text) > MAX_ADDRESS_CHARS:
            raise IntakeRefused(
                f"{where}.addresses[{i}]", f"must be 1 to {MAX_ADDRESS_CHARS} characters"
            )
        addresses.append(text)
    emails = []
    for i, raw in enumerate(_strings(obj, "emails", where)):
        text = raw.strip()
        if len(text) > MAX_EMAIL_CHARS or not EMAIL_RE.fullmatch(text):
            raise IntakeRefused(
                f"{where}.emails[{i}]", "not an email address (one @ and a dotted domain)"
            )
        emails.append(text)
    if not (phones or addresses or emails):
        raise IntakeRefused(where, "needs at least one phone number, postal address or email")
    return ProtectedPerson(name, tuple(phones), tuple(addresses), tuple(emails))


def _object(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise IntakeRefused(where, "must be a JSON object")
    return value


def _only(obj: Mapping[str, Any], where: str, known: set[str]) -> None:
    # An unknown key is most often a typo ("phone" for "phones") that would silently drop a
    # number from the bar, so it refuses the case rather than being ignored.
    unknown = sorted(set(obj) - known)
    if not unknown:
        return
    for key in unknown:
        if FIELD_NAME_RE.fullmatch(key):
            raise IntakeRefused(f"{where}.{key}", "unknown field")
    # A key that is no field name may be a number or address typed in the wrong place: the
    # message must not repeat it (safety invariant 4).
    raise IntakeRefused(where, "unknown field whose name looks like data (not repeated here)")


def _need(obj: Mapping[str, Any], key: str, prefix: str) -> Any:
    if key not in obj or obj[key] is None:
        raise IntakeRefused(f"{prefix}{key}", "missing")
    return obj[key]


def _text(obj: Mapping[str, Any], key: str, prefix: str, limit: int) -> str:
    value = _need(obj, key, prefix)
    if not isinstance(value, str) or not value.strip():
        raise IntakeRefused(f"{prefix}{key}", "must be non-empty text")
    if len(value) > limit:
        raise IntakeRefused(f"{prefix}{key}", f"longer than {limit} characters")
    return value.strip()


def _strings(obj: Mapping[str, Any], key: str, where: str) -> list[str]:
    value = obj.get(key, [])
    if value is None:
        return []
    if not isinstance(value, list):
        raise IntakeRefused(f"{where}.{key}", "must be a list")
    if len(value) > MAX_ITEMS_PER_PERSON:
        raise IntakeRefused(f"{where}.{key}", f"more than {MAX_ITEMS_PER_PERSON} entries")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise IntakeRefused(f"{where}.{key}[{i}]", "must be a string")
    return value


def _date(value: object, where: str) -> dt.date:
    if not isinstance(value, str):
        raise IntakeRefused(where, "must be a date YYYY-MM-DD")
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise IntakeRefused(where, "must be a date YYYY-MM-DD") from None


def request_from_flags(flags: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON request shape built from `upcs hub case new` flags (one protected person).

    Missing flags stay missing, so `parse_case_request` names them exactly as for a file.
    """
    out: dict[str, Any] = {}
    requester = {
        k: flags[f"requester_{k}"] for k in ("type", "name", "contact") if f"requester_{k}" in flags
    }
    if requester:
        out["requester"] = requester
    for key in ("victim_consent", "reason"):
        if key in flags:
            out[key] = flags[key]
    offender = {
        "name": flags.get("offender_name"),
        "prison_number": flags.get("prison_number"),
        "date_of_birth": flags.get("date_of_birth"),
        "establishment": flags.get("establishment"),
    }
    if any(v is not None for v in offender.values()):
        out["offender"] = {k: v for k, v in offender.items() if v is not None}
    person = {
        "name": flags.get("protected_name"),
        "phones": list(flags.get("phone") or []),
        "addresses": list(flags.get("address") or []),
        "emails": list(flags.get("email") or []),
    }
    if person["name"] is not None or person["phones"] or person["addresses"] or person["emails"]:
        out["protected"] = [{k: v for k, v in person.items() if v is not None}]
    return out
