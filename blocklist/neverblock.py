"""Numbers that can never be barred (DESIGN.md screening rule 1, safety invariant 2).

They are checked before anything else, and the list builder and hub intake refuse them, so no
mistake at the hub can ever cut a prisoner off from emergency services or a helpline.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["UK_NEVER_BLOCK", "NeverBlock"]

# Ofcom's National Telephone Numbering Plan: 999 and 112 emergency; 18000 emergency via text
# relay; 101 police non-emergency; 111 NHS; 119 NHS services; 105 electricity power cuts; the
# harmonised European 116 numbers in use in the UK (116000 missing children, 116006 victims of
# crime, 116111 Childline, 116117 out-of-hours medical, 116123 Samaritans); 0800 1111 Childline.
UK_NEVER_BLOCK: tuple[str, ...] = (
    "999",
    "112",
    "18000",
    "101",
    "111",
    "119",
    "105",
    "116000",
    "116006",
    "116111",
    "116117",
    "116123",
    "08001111",
)


class NeverBlock:
    """The never-block list for one dial plan, as national dial strings and as E.164 digits."""

    __slots__ = ("dials", "e164_digits")

    def __init__(self, country_code: str, trunk_prefix: str, extra: Iterable[str] = ()) -> None:
        dials: set[str] = set()
        e164: set[str] = set()
        for raw in (*UK_NEVER_BLOCK, *extra):
            number = "".join(ch for ch in raw if ch not in " -.()")
            if number.startswith("+"):
                digits = number[1:]
                if not digits.isdigit():
                    raise ValueError(f"never-block entry {raw!r} is not a number")
                e164.add(digits)
                if digits.startswith(country_code):
                    dials.add(trunk_prefix + digits[len(country_code) :])
                continue
            if not number.isdigit():
                raise ValueError(f"never-block entry {raw!r} is not a number")
            dials.add(number)
            if trunk_prefix and number.startswith(trunk_prefix):
                e164.add(country_code + number[len(trunk_prefix) :])
        self.dials: frozenset[str] = frozenset(dials)
        self.e164_digits: frozenset[str] = frozenset(e164)

    def matches_dial(self, digits: str) -> bool:
        return digits in self.dials

    def matches_e164(self, digits: str) -> bool:
        return digits in self.e164_digits
