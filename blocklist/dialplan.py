"""The site's dial plan: the `[dialplan]` section of upcs.toml (DESIGN.md, "Contracts")."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import phonenumbers
from phonenumbers import PhoneMetadata

__all__ = ["DEFAULT_DIAL_PREFIXES", "DialPlan", "DialPlanError"]

# Dial prefixes a UK caller may stack in front of a number; the carrier strips them and connects the
# rest, so screening must strip them too (DESIGN.md screening rule 2). 141 withholds the caller's
# number, 1470 releases it (Ofcom General Condition C6 / CLI guidelines), 18001 and 18002 route
# through Relay UK (text relay and video relay).
DEFAULT_DIAL_PREFIXES: tuple[str, ...] = ("141", "1470", "18001", "18002")


class DialPlanError(ValueError):
    """The `[dialplan]` configuration is unusable; the message names the key and the value."""


def _digits_only(key: str, value: str) -> str:
    if value and not (value.isascii() and value.isdigit()):
        raise DialPlanError(f"[dialplan] {key} = {value!r}: must be ASCII digits only (or empty)")
    return value


@dataclass(frozen=True, slots=True)
class DialPlan:
    """How the prison's PBX dials out.

    country: ISO 3166 region for numbers dialled without an international prefix ("GB").
    area_code: the site's own area code without the trunk 0, for local dialling ("" = none).
    outside_line: PBX breakout digits that may precede any dial ("" = none).
    never_block_extra: numbers the operator adds to the never-block list (any dialled form).
    """

    country: str = "GB"
    area_code: str = "20"
    outside_line: str = "9"
    never_block_extra: tuple[str, ...] = ()
    # Derived from `country` through phonenumbers' metadata; not configurable.
    country_code: str = field(init=False)
    international_prefix: str = field(init=False)
    trunk_prefix: str = field(init=False)

    def __post_init__(self) -> None:
        region = self.country.upper()
        cc = phonenumbers.country_code_for_region(region)
        if cc == 0:
            raise DialPlanError(f"[dialplan] country = {self.country!r}: not a known ISO region")
        _digits_only("area_code", self.area_code)
        _digits_only("outside_line", self.outside_line)
        if self.area_code.startswith("0"):
            raise DialPlanError(
                f"[dialplan] area_code = {self.area_code!r}: give it without the trunk 0"
            )
        meta = PhoneMetadata.metadata_for_region(region)
        intl = meta.international_prefix if meta is not None else None
        # Some regions describe several international prefixes as a pattern; plain "00" is the
        # ITU default (ITU-T E.164 Annex A) and what nearly every country accepts.
        intl = intl if intl and intl.isdigit() else "00"
        trunk = meta.national_prefix if meta is not None and meta.national_prefix else ""
        object.__setattr__(self, "country", region)
        object.__setattr__(self, "country_code", str(cc))
        object.__setattr__(self, "international_prefix", intl)
        object.__setattr__(self, "trunk_prefix", trunk)

    @property
    def dial_prefixes(self) -> tuple[str, ...]:
        """Every prefix that may be stacked in front of a dial, outside line first."""
        extra = (self.outside_line,) if self.outside_line else ()
        return extra + DEFAULT_DIAL_PREFIXES

    @classmethod
    def from_section(cls, section: Mapping[str, Any], where: str = "[dialplan]") -> DialPlan:
        """Build from a parsed TOML table; unknown keys and wrong types are refused by name."""
        known = {"country", "area_code", "outside_line", "never_block_extra"}
        unknown = sorted(set(section) - known)
        if unknown:
            raise DialPlanError(f"{where}: unknown key(s) {', '.join(unknown)}")
        kwargs: dict[str, Any] = {}
        for key in ("country", "area_code", "outside_line"):
            if key in section:
                value = section[key]
                if not isinstance(value, str):
                    raise DialPlanError(f"{where} {key}: must be a string, got {value!r}")
                kwargs[key] = value
        if "never_block_extra" in section:
            extra = section["never_block_extra"]
            if not isinstance(extra, list) or not all(isinstance(x, str) for x in extra):
                raise DialPlanError(f"{where} never_block_extra: must be a list of strings")
            kwargs["never_block_extra"] = tuple(extra)
        return cls(**kwargs)
