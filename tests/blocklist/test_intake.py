"""Hub intake canonicalisation (DESIGN.md screening rule 5)."""

from __future__ import annotations

import pytest

from blocklist import DialPlan, IntakeError, canonicalise
from blocklist.intake import WARN_UNALLOCATED
from blocklist.neverblock import UK_NEVER_BLOCK


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("07700 900123", "+447700900123"),
        ("07700900123", "+447700900123"),
        ("+44 7700 900123", "+447700900123"),
        ("+44 (0)7700 900123", "+447700900123"),
        ("0044 7700 900123", "+447700900123"),
        (" 07700-900-123 ", "+447700900123"),
        ("(01632) 960000", "+441632960000"),
        ("0113 496 0999", "+441134960999"),
        ("０７７００ ９００１２３", "+447700900123"),  # a person's full-width digits mean the same
    ],
)
def test_human_forms_become_e164(raw: str, e164: str) -> None:
    assert canonicalise(raw).e164 == e164


def test_unallocated_but_possible_is_accepted_with_a_warning() -> None:
    # Ofcom drama ranges are unallocated by design; a victim's number must never be refused just
    # because phonenumbers' metadata lags real allocations.
    for raw in ("07700 900123", "01632 960000"):
        result = canonicalise(raw)
        assert result.warnings == (WARN_UNALLOCATED,)
        assert "7700" not in result.warnings[0] and "1632" not in result.warnings[0]


def test_allocated_number_has_no_warning() -> None:
    assert canonicalise("020 7946 0000").warnings == ()


def test_foreign_numbers_need_their_country_code() -> None:
    assert canonicalise("+33 1 23 45 67 89").e164 == "+33123456789"
    assert canonicalise("0033 1 23 45 67 89").e164 == "+33123456789"
    # A national number is read in the plan's country.
    assert canonicalise("01 23 45 67 89", DialPlan(country="FR")).e164 == "+33123456789"


@pytest.mark.parametrize("raw", [*UK_NEVER_BLOCK, "0800 1111", "+44 800 1111", "0044 800 1111"])
def test_never_block_numbers_can_never_be_barred(raw: str) -> None:
    with pytest.raises(IntakeError, match="can never be barred"):
        canonicalise(raw)


def test_operator_never_block_extra_is_refused_too() -> None:
    plan = DialPlan(never_block_extra=("0113 496 0000",))
    with pytest.raises(IntakeError, match="can never be barred"):
        canonicalise("+44 113 496 0000", plan)
    assert canonicalise("+44 113 496 0000").e164 == "+441134960000"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "empty number"),
        ("   ", "empty number"),
        ("0" * 70, "longer than 64 characters"),
        ("07700 900 l23", "characters other than digits"),
        ("0800 FLOWERS", "characters other than digits"),
        ("tel:+447700900123", "characters other than digits"),
        ("07700900123 ext 12", "characters other than digits"),
        ("07700900123#", "characters other than digits"),
        ("+", "not a phone number"),
        ("0770", "not a possible number"),
        ("07700 900123 456", "not a possible number: too long"),
        ("+999 1234 5678", "not a phone number"),
        ("7946 0000", "local-only"),
        ("+49 1234 5678901234", "15 digits E.164 allows"),
        # A digit short: phonenumbers keeps the trunk 0 (+44 077009001) and calls it possible.
        ("07700 9001", "trunk 0 would remain"),
        ("020 7946", "trunk 0 would remain"),
    ],
)
def test_refusals_say_why_without_the_number(raw: str, reason: str) -> None:
    with pytest.raises(IntakeError, match=reason) as err:
        canonicalise(raw)
    assert err.value.reason == str(err.value)
    digits = "".join(ch for ch in raw if ch.isdigit())
    if len(digits) >= 4:
        assert digits not in err.value.reason


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("+39 06 1234 5678", "+390612345678"),  # Italy: the 0 is part of the number
        ("+225 01 02 03 04 05", "+2250102030405"),  # Côte d'Ivoire: no trunk prefix
        ("+7 800 555 3535", "+78005553535"),  # Russia: trunk 8, and 800 is a real range
    ],
)
def test_a_leading_zero_or_trunk_digit_that_belongs_to_the_number_passes(
    raw: str, e164: str
) -> None:
    assert canonicalise(raw).e164 == e164
