"""Hub intake: turn a number as a person wrote it into canonical E.164 (DESIGN.md rule 5).

A number must be *possible* for its country (right country code, right length). One that
phonenumbers does not know as allocated is accepted with a warning: its metadata lags Ofcom's
real allocations, and a victim must never go unprotected because of that. Emergency and helpline
numbers are refused: they can never be barred (safety invariant 2).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat, ValidationResult, shortnumberinfo

from blocklist.dialplan import DialPlan
from blocklist.neverblock import NeverBlock
from blocklist.snapshot import E164_MAX_DIGITS

__all__ = [
    "MAX_INTAKE_CHARS",
    "REFUSE_TRUNK_ZERO_KEPT",
    "IntakeError",
    "IntakeResult",
    "canonicalise",
]

MAX_INTAKE_CHARS = 64  # a human-written number with spaces and "(0)" never needs more
# What a person may write besides digits: '+' and the visual separators of RFC 3966 §5.1.1, '/'.
_INTAKE_SYMBOLS = frozenset("+ -.()/")

REFUSE_TRUNK_ZERO_KEPT = (
    "not a possible number: the national trunk 0 would remain after the country code "
    "(is a digit missing or extra?)"
)
WARN_UNALLOCATED = "not known to phonenumbers as an allocated number; accepted as possible"

_REASONS = {
    ValidationResult.INVALID_COUNTRY_CODE: "unknown country code",
    ValidationResult.TOO_SHORT: "too short for its country",
    ValidationResult.TOO_LONG: "too long for its country",
    ValidationResult.INVALID_LENGTH: "not a possible length for its country",
    ValidationResult.IS_POSSIBLE_LOCAL_ONLY: "a local-only number: give the area code",
}


class IntakeError(ValueError):
    """The number cannot be barred; `reason` says why, without repeating the number."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class IntakeResult:
    e164: str
    warnings: tuple[str, ...] = ()


def canonicalise(raw: str, plan: DialPlan | None = None) -> IntakeResult:
    """Canonical E.164 for a number written any human way, or IntakeError with the reason."""
    plan = plan or DialPlan()
    text = raw.strip()
    if not text:
        raise IntakeError("empty number")
    if len(text) > MAX_INTAKE_CHARS:
        raise IntakeError(f"longer than {MAX_INTAKE_CHARS} characters")
    if any(not (ch.isdecimal() or ch in _INTAKE_SYMBOLS) for ch in text):
        # phonenumbers would read letters as a keypad ("0800 FLOWERS"), so a typo such as 'l'
        # for '1' would silently bar somebody else's number.
        raise IntakeError("contains characters other than digits, '+' and separators")
    # A person may paste full-width or other Unicode decimal digits; they mean the same digits
    # (unlike at the gateway, where a carrier might read them differently and they fail closed).
    text = "".join(str(unicodedata.decimal(ch)) if ch.isdecimal() else ch for ch in text)
    never = NeverBlock(plan.country_code, plan.trunk_prefix, plan.never_block_extra)
    compact = "".join(ch for ch in text if ch not in _INTAKE_SYMBOLS or ch == "+")
    if never.matches_dial(compact) or never.matches_e164(compact.lstrip("+")):
        raise IntakeError("an emergency or helpline number, which can never be barred")
    if shortnumberinfo.is_emergency_number(compact, plan.country):
        raise IntakeError("an emergency number, which can never be barred")
    try:
        parsed = phonenumbers.parse(text, plan.country)
    except NumberParseException as exc:
        raise IntakeError(f"not a phone number ({exc._msg})") from None
    if parsed.extension:
        raise IntakeError("has an extension: bar the number without it")
    possible = phonenumbers.is_possible_number_with_reason(parsed)
    if possible != ValidationResult.IS_POSSIBLE:
        raise IntakeError(f"not a possible number: {_REASONS.get(possible, 'impossible')}")
    e164 = phonenumbers.format_number(parsed, PhoneNumberFormat.E164)
    if len(e164) - 1 > E164_MAX_DIGITS:
        # phonenumbers allows a few national numbers too long for E.164 (ITU-T E.164 §6.2.1);
        # the list stores E.164, so refuse loudly rather than fail later at the list.
        raise IntakeError(f"longer than the {E164_MAX_DIGITS} digits E.164 allows")
    if never.matches_e164(e164[1:]):
        raise IntakeError("an emergency or helpline number, which can never be barred")
    valid = phonenumbers.is_valid_number(parsed)
    if not valid and _trunk_zero_kept(parsed):
        raise IntakeError(REFUSE_TRUNK_ZERO_KEPT)
    return IntakeResult(e164, () if valid else (WARN_UNALLOCATED,))


def _trunk_zero_kept(parsed: phonenumbers.PhoneNumber) -> bool:
    """True when the national trunk prefix 0 survived into the E.164 form.

    phonenumbers keeps a national number's leading 0 when removing it leaves something that
    fits no number pattern ("07700 9001", a digit short, becomes +44 077009001) and still calls
    the result possible. Such a number can never be dialled, so barring it protects nobody;
    most likely a digit is missing, and the person entering it must be told rather than warned.
    Countries whose numbers really start with 0 (Italy, Côte d'Ivoire) have no trunk prefix and
    pass; so does a number phonenumbers knows as valid, and a non-zero trunk prefix (Russia's 8)
    that is also a real leading digit (+7 800 freephone).
    """
    if not parsed.italian_leading_zero or parsed.country_code is None:
        return False
    region = phonenumbers.region_code_for_country_code(parsed.country_code)
    meta = phonenumbers.PhoneMetadata.metadata_for_region(region)
    return meta is not None and meta.national_prefix == "0"
