"""Country calling-code tables for screening, built once at import from phonenumbers' metadata.

Screening needs, for any E.164 candidate, its country code (named by its first three digits),
the national number lengths that country allows, and the trunk prefix people write after the
country code ("+44 (0)20 ..."). These tables hold that, with the one reading rule that uses them
(`international_readings`); they live apart from `blocklist.screen` so that module holds the
screening rules alone. Private to `blocklist`: the public name is `screen.country_lengths`.
"""

from __future__ import annotations

import phonenumbers
from phonenumbers import PhoneMetadata

__all__ = [
    "CC_BY_HEAD",
    "CC_TRUNK_BY_HEAD",
    "COUNTRY_LENGTHS",
    "country_lengths",
    "international_readings",
]


def _region_metadata(cc: int, region: str) -> PhoneMetadata | None:
    if region == "001":  # non-geographic entities (+800, +870, +882, ...)
        return PhoneMetadata.metadata_for_nongeo_region(cc)
    return PhoneMetadata.metadata_for_region(region)


def _build_country_tables() -> tuple[dict[str, tuple[int, ...]], dict[str, str]]:
    lengths_by_cc: dict[str, tuple[int, ...]] = {}
    trunk_by_cc: dict[str, str] = {}
    for cc, regions in phonenumbers.COUNTRY_CODE_TO_REGION_CODE.items():
        lengths: set[int] = set()
        for region in regions:
            meta = _region_metadata(cc, region)
            if meta is not None and meta.general_desc is not None:
                lengths.update(x for x in meta.general_desc.possible_length if x > 0)
        if lengths:
            lengths_by_cc[str(cc)] = tuple(sorted(lengths))
        # The trunk prefix people write after the country code ("+33 (0)1 ...", "+44 (0)20 ...")
        # comes from the country's main region (listed first).
        main = _region_metadata(cc, regions[0]) if regions else None
        if main is not None and main.national_prefix and main.national_prefix.isdigit():
            trunk_by_cc[str(cc)] = main.national_prefix
    return lengths_by_cc, trunk_by_cc


COUNTRY_LENGTHS, _COUNTRY_TRUNK = _build_country_tables()


def country_lengths(cc: str) -> tuple[int, ...]:
    """Possible national significant number lengths for a country calling code ('' if unknown)."""
    return COUNTRY_LENGTHS.get(cc, ())


def _build_cc_by_head() -> dict[str, str]:
    # ITU country codes are prefix-free, so the first three digits of an E.164 number name its
    # country code (or none); one dict lookup instead of trying 1, 2 and 3 digits in turn.
    out: dict[str, str] = {}
    for i in range(1000):
        head = f"{i:03d}"
        for n in (1, 2, 3):
            if head[:n] in COUNTRY_LENGTHS:
                out[head] = head[:n]
                break
    return out


CC_BY_HEAD = _build_cc_by_head()

# First three digits -> (country code, its trunk prefix), for countries that have one.
CC_TRUNK_BY_HEAD = {
    head: (cc, _COUNTRY_TRUNK[cc]) for head, cc in CC_BY_HEAD.items() if cc in _COUNTRY_TRUNK
}


def international_readings(number: str, out: list[str]) -> None:
    """Readings of a number written after '+' or '00' (or as one without them): the number itself,
    and without the trunk prefix people write after the country code ("+44 (0)20 ...")."""
    if number not in out:
        out.append(number)
    found = CC_TRUNK_BY_HEAD.get(number[:3])
    if found is not None:
        cc, trunk = found
        if number.startswith(trunk, len(cc)):
            stripped = cc + number[len(cc) + len(trunk) :]
            if stripped not in out:
                out.append(stripped)
