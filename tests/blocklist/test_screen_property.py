"""The fast normaliser must agree with phonenumbers (DESIGN.md screening rule 5).

Numbers of every region and type phonenumbers has an example for (and variations of them) are
canonicalised at intake, barred, then dialled in national, international, E.164, RFC 3966 and
"dialled from a UK prison" forms (outside line, 141, 1470, 18001, 18002, 00); each form must be
blocked as that E.164. A number that is not barred must be allowed in every form when a different
number is barred.

Scope notes: the RFC 3966 form is screened as the gateway hands it over, the `tel:` scheme
already removed by the SIP layer. The national form is tested for GB numbers (the prisons' plan)
and for other regions where national dialling is the trunk prefix plus the national number;
regions whose national format inserts carrier or mobile codes (e.g. Argentina's "15"), and national
numbers that begin with their country's international prefix (Norway's "00000"), are dialled
internationally only, as a UK prison would dial them.
"""

from __future__ import annotations

import functools

import phonenumbers
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from phonenumbers import PhoneNumber, PhoneNumberFormat, PhoneNumberType

from blocklist import (
    DialPlan,
    IntakeError,
    ListHolder,
    ListSnapshot,
    Screener,
    Verdict,
    canonicalise,
)

TYPES = (
    PhoneNumberType.FIXED_LINE,
    PhoneNumberType.MOBILE,
    PhoneNumberType.TOLL_FREE,
    PhoneNumberType.PREMIUM_RATE,
    PhoneNumberType.SHARED_COST,
    PhoneNumberType.VOIP,
    PhoneNumberType.PERSONAL_NUMBER,
    PhoneNumberType.PAGER,
    PhoneNumberType.UAN,
    PhoneNumberType.VOICEMAIL,
)
UK_PRISON_PREFIXES = ("", "9 ", "141 ", "1470 ", "18001 ", "18002 ", "9 141 ", "141 9 1470 ")
GB = DialPlan()  # London site, outside line 9


@functools.cache
def examples() -> tuple[tuple[str, PhoneNumber], ...]:
    found: list[tuple[str, PhoneNumber]] = []
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for kind in TYPES:
            number = phonenumbers.example_number_for_type(region, kind)
            if number is not None:
                found.append((region, number))
    for cc in sorted(phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS):
        number = phonenumbers.example_number_for_non_geo_entity(cc)
        if number is not None:
            found.append(("001", number))
    # Ofcom drama ranges, the only GB numbers tests may bar (common.md).
    for text in ("+447700900000", "+442079460000", "+441632960000", "+441134960000"):
        found.append(("GB", phonenumbers.parse(text)))
    return tuple(found)


@st.composite
def numbers(draw: st.DrawFn) -> tuple[str, PhoneNumber, str]:
    """(region, parsed number, canonical E.164) for an example number with its last digits
    varied; only numbers intake accepts (possible for their country) are kept."""
    region, example = draw(st.sampled_from(examples()))
    nsn = phonenumbers.national_significant_number(example)
    keep = draw(st.integers(min_value=max(1, len(nsn) - 4), max_value=len(nsn)))
    tail = draw(st.text(alphabet="0123456789", min_size=len(nsn) - keep, max_size=len(nsn) - keep))
    text = f"+{example.country_code}{nsn[:keep]}{tail}"
    try:
        e164 = canonicalise(text, GB).e164
    except IntakeError:
        assume(False)
        raise  # unreachable: assume(False) raises
    parsed = phonenumbers.parse(e164)
    assert phonenumbers.format_number(parsed, PhoneNumberFormat.E164) == e164
    return region, parsed, e164


def international_forms(number: PhoneNumber, e164: str) -> list[str]:
    """How a UK prison phone may dial the number with an international or E.164 prefix."""
    intl = phonenumbers.format_number(number, PhoneNumberFormat.INTERNATIONAL)
    rfc3966 = phonenumbers.format_number(number, PhoneNumberFormat.RFC3966)
    assert rfc3966.startswith("tel:")
    base = [e164, intl, rfc3966[len("tel:") :], "00" + e164[1:], f"00 {intl[1:]}", e164[1:]]
    from_uk = phonenumbers.format_out_of_country_calling_number(number, "GB")
    forms = [*base, from_uk]
    for prefix in UK_PRISON_PREFIXES[1:]:
        forms.extend([prefix + e164, prefix + "00" + e164[1:], prefix + from_uk])
    return forms


def national_plan_and_forms(region: str, number: PhoneNumber) -> tuple[DialPlan, list[str]]:
    """The national form(s) under a dial plan for the number's own region, when national dialling
    there is simply trunk prefix + national number; else no forms."""
    if region == "001":
        return GB, []
    plan = GB if region == "GB" else DialPlan(country=region, area_code="", outside_line="9")
    national = phonenumbers.format_number(number, PhoneNumberFormat.NATIONAL)
    digits = "".join(ch for ch in national if ch.isdigit())
    nsn = phonenumbers.national_significant_number(number)
    if digits not in (plan.trunk_prefix + nsn, nsn) or not digits:
        return plan, []
    if digits.startswith(plan.international_prefix):
        # e.g. Norway's 5-digit "00000": a national number that starts with the international
        # prefix is ambiguous to any reader; the screener refuses it (invalid), which is safe.
        return plan, []
    forms = [national, digits, *(p + national for p in UK_PRISON_PREFIXES[1:4])]
    if region == "GB":
        forms.append(phonenumbers.format_number(number, PhoneNumberFormat.E164)[3:])  # no 0
    return plan, forms


def local_forms(number: PhoneNumber) -> tuple[DialPlan, list[str]]:
    """GB geographic numbers dialled locally, from a site in the same area."""
    if number.country_code != 44:
        return GB, []
    area_len = phonenumbers.length_of_geographical_area_code(number)
    if area_len <= 0:
        return GB, []
    nsn = phonenumbers.national_significant_number(number)
    plan = DialPlan(area_code=nsn[:area_len])
    local = nsn[area_len:]
    return plan, [local, "9 " + local, "141 " + local]


def screen_all(
    plan: DialPlan, barred: str, forms: list[str]
) -> dict[str, tuple[Verdict, str | None]]:
    screener = Screener(plan, ListHolder(ListSnapshot.from_e164([barred], 1)))
    out = {}
    for form in forms:
        result = screener.check(form)
        out[form] = (result.verdict, result.matched_e164)
    return out


@settings(deadline=None, max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(numbers())
def test_every_form_of_a_barred_number_is_blocked_as_its_e164(
    drawn: tuple[str, PhoneNumber, str],
) -> None:
    region, number, e164 = drawn
    cases = [(GB, international_forms(number, e164))]
    cases.append(national_plan_and_forms(region, number))
    cases.append(local_forms(number))
    for plan, forms in cases:
        got = screen_all(plan, e164, forms)
        wrong = {f: v for f, v in got.items() if v != (Verdict.BLOCKED, e164)}
        assert not wrong, (plan, e164, wrong)


@settings(deadline=None, max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(numbers(), numbers())
def test_a_number_not_barred_is_allowed_in_every_form(
    barred: tuple[str, PhoneNumber, str], other: tuple[str, PhoneNumber, str]
) -> None:
    _, _, barred_e164 = barred
    region, number, e164 = other
    # Overdialling legitimately blocks a longer number that starts with a barred one.
    assume(not e164.startswith(barred_e164) and not barred_e164.startswith(e164))
    cases = [(GB, international_forms(number, e164))]
    cases.append(national_plan_and_forms(region, number))
    for plan, forms in cases:
        got = screen_all(plan, barred_e164, forms)
        wrong = {f: v for f, v in got.items() if v != (Verdict.ALLOWED, None)}
        assert not wrong, (plan, barred_e164, e164, wrong)
