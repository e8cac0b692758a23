"""Intake: a request is taken whole or refused whole, with the field path and the reason, and
the refusal never repeats a contact detail (safety invariant 4)."""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest

from hub import IntakeRefused, RequesterType, parse_case_request
from hub.intake import parse_prison_number, request_from_flags
from tests.hub.conftest import make_request

Edit = Callable[[dict[str, Any]], None]


def _set(path: str, value: object) -> Edit:
    def edit(req: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = req
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        key: Any = int(last) if last.isdigit() else last
        if value is _DELETE:
            del node[key]
        else:
            node[key] = value

    return edit


_DELETE = object()

# (id, edit, field path named, reason fragment)
REFUSALS: list[tuple[str, Edit, str, str]] = [
    (
        "emergency-999",
        _set("protected.0.phones", ["07700 900001", "999"]),
        "protected[0].phones[1]",
        "emergency",
    ),
    ("emergency-112", _set("protected.0.phones", ["112"]), "protected[0].phones[0]", "emergency"),
    (
        "helpline-samaritans",
        _set("protected.0.phones", ["116 123"]),
        "protected[0].phones[0]",
        "helpline",
    ),
    (
        "helpline-childline",
        _set("protected.0.phones", ["0800 1111"]),
        "protected[0].phones[0]",
        "helpline",
    ),
    (
        "too-short",
        _set("protected.0.phones", ["123"]),
        "protected[0].phones[0]",
        "too short",
    ),
    (
        "digit-missing-trunk-zero-kept",
        _set("protected.0.phones", ["07700 900001", "07700 9001"]),
        "protected[0].phones[1]",
        "trunk 0",
    ),
    (
        "too-long",
        _set("protected.0.phones", ["07700 900 0011"]),
        "protected[0].phones[0]",
        "too long",
    ),
    (
        "not-a-number",
        _set("protected.0.phones", ["call me"]),
        "protected[0].phones[0]",
        "",  # the blocklist's own wording
    ),
    (
        "consent-missing",
        _set("requester.type", "on_behalf_with_consent"),
        "victim_consent",
        "needs the victim's consent",
    ),
    ("victim-without-consent", _set("requester.type", "victim"), "victim_consent", "consent"),
    ("consent-not-bool", _set("victim_consent", "yes"), "victim_consent", "true or false"),
    ("bad-requester-type", _set("requester.type", "neighbour"), "requester.type", "one of"),
    ("no-requester-contact", _set("requester.contact", _DELETE), "requester.contact", "missing"),
    (
        "bad-prison-number",
        _set("offender.prison_number", "12345"),
        "offender.prison_number",
        "not a prison number",
    ),
    (
        "bad-dob",
        _set("offender.date_of_birth", "01/02/1980"),
        "offender.date_of_birth",
        "YYYY-MM-DD",
    ),
    (
        "future-dob",
        _set("offender.date_of_birth", "2999-01-01"),
        "offender.date_of_birth",
        "plausible",
    ),
    ("no-reason", _set("reason", "  "), "reason", "non-empty"),
    (
        "typo-field",
        _set("protected.0.phone", ["07700 900001"]),
        "protected[0].phone",
        "unknown field",
    ),
    (
        "contact-detail-as-field-name",
        _set("protected.0.07700 900001", "mobile"),
        "protected[0]",
        "unknown field",
    ),
    ("no-protected", _set("protected", []), "protected", "non-empty"),
    ("no-contacts", _set("protected.0", {"name": "X"}), "protected[0]", "at least one"),
    (
        "bad-email",
        _set("protected.0.emails", ["victim.one.example.org"]),
        "protected[0].emails[0]",
        "not an email address",
    ),
    (
        "phones-not-list",
        _set("protected.0.phones", "07700 900001"),
        "protected[0].phones",
        "must be a list",
    ),
]


@pytest.mark.parametrize(
    ("edit", "where", "why"), [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS]
)
def test_refusals_name_the_field_and_reason(edit: Edit, where: str, why: str) -> None:
    request = copy.deepcopy(make_request())
    edit(request)
    with pytest.raises(IntakeRefused) as info:
        parse_case_request(request)
    assert info.value.field == where
    assert why in info.value.reason
    assert str(info.value).startswith(f"{where}: ")
    # Never a contact detail in the message.
    for secret in ("900001", "7946", "example.org", "Drama Street", "victim.one"):
        assert secret not in str(info.value)


def test_a_good_request_is_canonicalised() -> None:
    req = parse_case_request(
        make_request(["07700 900001", "+44 (0)20 7946 0001", "0044 113 496 0001", "07700900001"])
    )
    assert req.requester.type is RequesterType.POLICE
    assert req.offender.prison_number == "A1234BC"
    assert req.offender.date_of_birth == dt.date(1985, 4, 1)
    phones = req.protected[0].phones
    assert [p.e164 for p in phones] == [
        "+447700900001",
        "+442079460001",
        "+441134960001",
        "+447700900001",
    ]
    assert req.numbers() == {"+447700900001", "+442079460001", "+441134960001"}


def test_unallocated_numbers_are_accepted_with_a_warning() -> None:
    # Ofcom's drama mobile range is possible but not allocated: accepted, never refused
    # (DESIGN.md screening rule 5: a victim must never go unprotected for stale metadata).
    req = parse_case_request(make_request(["07700 900001"]))
    assert req.protected[0].phones[0].unallocated
    assert len(req.warnings) == 1
    assert req.warnings[0].startswith("protected[0].phones[0]: not known")
    assert "900001" not in req.warnings[0]


def test_numbers_that_really_start_with_zero_pass() -> None:
    # Italy and Côte d'Ivoire have no trunk prefix: their leading 0 is part of the number.
    req = parse_case_request(make_request(["+39 06 1234 5678", "+225 01 02 03 04 05"]))
    assert [p.e164 for p in req.protected[0].phones] == ["+390612345678", "+2250102030405"]


def test_consent_rules() -> None:
    ok = parse_case_request(make_request(requester_type="on_behalf_with_consent", consent=True))
    assert ok.victim_consent
    for kind in ("police", "probation", "victim_services", "friend", "family"):
        req = parse_case_request(make_request(requester_type=kind, consent=False))
        assert req.requester.type.value == kind


def test_prison_number_normalised() -> None:
    assert parse_prison_number(" a1234bc ") == "A1234BC"
    for bad in ("A1234B", "11234BC", "A12345C", "AB234BC"):
        with pytest.raises(IntakeRefused):
            parse_prison_number(bad)


def test_flags_build_the_same_request_as_a_file() -> None:
    flags = {
        "requester_type": "police",
        "requester_name": "PC Drama",
        "requester_contact": "020 7946 0999",
        "victim_consent": False,
        "reason": "repeated threatening calls from prison",
        "offender_name": "Joe Bloggs",
        "prison_number": "A1234BC",
        "date_of_birth": "1985-04-01",
        "establishment": "HMP Leeds",
        "protected_name": "Victim One",
        "phone": ["07700 900001", "020 7946 0001"],
        "address": ["1 Drama Street, Leeds LS1 1AA"],
        "email": ["victim.one@example.org"],
    }
    assert parse_case_request(request_from_flags(flags)) == parse_case_request(make_request())
    partial = dict(flags)
    del partial["prison_number"]
    with pytest.raises(IntakeRefused, match=r"^offender\.prison_number: missing"):
        parse_case_request(request_from_flags(partial))
