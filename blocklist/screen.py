"""Dial-string screening: one dial string in, one verdict out (DESIGN.md "Screening rules").

The normaliser derives every plausible E.164 target a carrier could connect from the string and
blocks if any of them, or any prefix of one of a valid length (overdialling), is barred. Anything
it cannot read without doubt is `invalid`, and invalid is refused like blocked (fail closed).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import phonenumbers
from phonenumbers import PhoneMetadata

from blocklist.dialplan import DialPlan
from blocklist.holder import ListHolder
from blocklist.neverblock import NeverBlock
from blocklist.snapshot import E164_MAX_DIGITS, E164_MIN_DIGITS, ListSnapshot

__all__ = ["MAX_DIAL_CHARS", "CheckResult", "Screener", "Verdict", "country_lengths"]

# A dial string longer than this is refused outright: a number is at most 15 digits (E.164),
# stacked prefixes add at most ~20 (9 + 141 + 1470 + 18001 + 00), and post-dial DTMF (extensions,
# PINs) rarely exceeds 20 more. Bounding the input bounds the work per call.
MAX_DIAL_CHARS = 64
# Bounds the prefix-stripping search: no honest dial stacks more prefixes than this.
MAX_PREFIX_VARIANTS = 16

_SEPARATORS = frozenset(" -.()/\t")  # visual separators: RFC 3966 §5.1.1 plus spaces and tabs
_POSTDIAL = frozenset(",;pPwW#*")  # pause/wait (RFC 3966 §5.1.1 "p"/"w", GSM ","), DTMF #, *
_DIGITS = frozenset("0123456789")


class Verdict(enum.Enum):
    ALLOWED = "allowed"
    BLOCKED = "blocked"
    INVALID = "invalid"


@dataclass(frozen=True, slots=True)
class CheckResult:
    verdict: Verdict
    matched: int | None = None  # the barred entry (E.164 digits) for BLOCKED, else None

    @property
    def matched_e164(self) -> str | None:
        return None if self.matched is None else f"+{self.matched}"


_ALLOWED = CheckResult(Verdict.ALLOWED)
_INVALID = CheckResult(Verdict.INVALID)


def _build_country_lengths() -> dict[str, tuple[int, ...]]:
    out: dict[str, tuple[int, ...]] = {}
    for cc, regions in phonenumbers.COUNTRY_CODE_TO_REGION_CODE.items():
        lengths: set[int] = set()
        for region in regions:
            meta = (
                PhoneMetadata.metadata_for_nongeo_region(cc)
                if region == "001"
                else PhoneMetadata.metadata_for_region(region)
            )
            if meta is not None and meta.general_desc is not None:
                lengths.update(x for x in meta.general_desc.possible_length if x > 0)
        if lengths:
            out[str(cc)] = tuple(sorted(lengths))
    return out


_COUNTRY_LENGTHS = _build_country_lengths()


def country_lengths(cc: str) -> tuple[int, ...]:
    """Possible national significant number lengths for a country calling code ('' if unknown)."""
    return _COUNTRY_LENGTHS.get(cc, ())


def _split_cc(e164: str) -> tuple[str, tuple[int, ...]]:
    # ITU country codes are prefix-free, so at most one of the 1-, 2- and 3-digit heads is a code.
    for n in (1, 2, 3):
        lengths = _COUNTRY_LENGTHS.get(e164[:n])
        if lengths is not None:
            return e164[:n], lengths
    return "", ()


class Screener:
    """Screens dial strings against whatever snapshot the holder currently has.

    Construct once per dial plan; `check` is the hot path and allocates little.
    """

    __slots__ = ("_cc", "_holder", "_intl", "_never", "_plan", "_prefixes", "_trunk")

    def __init__(self, plan: DialPlan, holder: ListHolder) -> None:
        self._plan = plan
        self._holder = holder
        self._cc = plan.country_code
        self._intl = plan.international_prefix
        self._trunk = plan.trunk_prefix
        self._prefixes = plan.dial_prefixes
        self._never = NeverBlock(plan.country_code, plan.trunk_prefix, plan.never_block_extra)

    @property
    def plan(self) -> DialPlan:
        return self._plan

    @property
    def never_block(self) -> NeverBlock:
        return self._never

    def check(self, dialled: str) -> CheckResult:
        """The verdict for one dial string, against the current snapshot."""
        digits, plus_at = self._clean(dialled)
        if digits is None:
            return _INVALID
        variants = self._variants(digits, plus_at)
        if variants is None:
            return _INVALID
        never = self._never
        candidates = self._candidates(variants)
        for v, plus in variants:
            if not plus and never.matches_dial(v):
                return _ALLOWED
        for c in candidates:
            if never.matches_e164(c):
                return _ALLOWED
        snap = self._holder.current
        usable = False
        for c in candidates:
            hit, valid = _lookup(c, snap)
            if hit is not None:
                return CheckResult(Verdict.BLOCKED, hit)
            usable = usable or valid
        return _ALLOWED if usable else _INVALID

    def screen(self, dialled: str) -> str:
        """The verdict as a plain string, the form `gateway.sip` is injected with."""
        return self.check(dialled).verdict.value

    # -- the normaliser ---------------------------------------------------------------------

    @staticmethod
    def _clean(dialled: str) -> tuple[str | None, int]:
        """Digits of the main part (before any post-dial part) and where a '+' stood (-1: none).

        Returns (None, -1) for anything not read without doubt: non-ASCII (full-width and other
        Unicode digits included: a carrier may read them differently, so they never pass),
        letters, escapes, a second '+', or an empty main part.
        """
        if len(dialled) > MAX_DIAL_CHARS or not dialled.isascii():
            return None, -1
        low = dialled.lower()
        cut = len(low)
        ext = low.find(";ext=")  # RFC 3966 §5.1.5 extension: the number is what stands before it
        if ext >= 0:
            cut = ext
        out: list[str] = []
        plus_at = -1
        for i in range(cut):
            ch = low[i]
            if ch in _DIGITS:
                out.append(ch)
            elif ch in _SEPARATORS:
                continue
            elif ch == "+":
                if plus_at >= 0:
                    return None, -1
                plus_at = len(out)
            elif ch in _POSTDIAL:
                break
            else:
                return None, -1
        if not out:
            return None, -1
        return "".join(out), plus_at

    def _variants(self, digits: str, plus_at: int) -> list[tuple[str, bool]] | None:
        """Every reading of the string with stacked dial prefixes stripped: (digits, had_plus)."""
        prefixes = self._prefixes
        if plus_at >= 0:
            # '+' may only follow dial prefixes: "9+44...", "141+44...". Anything else is doubt.
            head, tail = digits[:plus_at], digits[plus_at:]
            if not tail:
                return None
            if head:
                heads = _strip_all(head, prefixes)
                if heads is None or "" not in heads:
                    return None
            return [(tail, True)]
        found = _strip_all(digits, prefixes)
        if found is None:
            return None
        return [(v, False) for v in found if v]

    def _candidates(self, variants: list[tuple[str, bool]]) -> list[str]:
        """Every plausible E.164 target (digits, no '+') of every variant, without repeats."""
        cc, intl, trunk, area = self._cc, self._intl, self._trunk, self._plan.area_code
        out: list[str] = []
        cc_trunk = cc + trunk if trunk else ""
        for v, plus in variants:
            if plus or v.startswith(intl):
                number = v if plus else v[len(intl) :]
                out.append(number)
                # "+44 (0)20 ..." and "0044 0 20 ...": the trunk 0 written after the country code.
                if cc_trunk and number.startswith(cc_trunk):
                    out.append(cc + number[len(cc_trunk) :])
                continue
            if trunk and v.startswith(trunk):
                out.append(cc + v[len(trunk) :])
                continue
            # No prefix at all: a local number in the site's area, an international number sent
            # without '+' or '00', or a national number sent without its trunk prefix.
            if area:
                out.append(cc + area + v)
            out.append(v)
            out.append(cc + v)
        return list(dict.fromkeys(out))


def _strip_all(digits: str, prefixes: tuple[str, ...]) -> list[str] | None:
    """The string and every string left by stripping stacked prefixes from its front."""
    found = [digits]
    i = 0
    while i < len(found):
        v = found[i]
        for p in prefixes:
            if v.startswith(p):
                rest = v[len(p) :]
                if rest not in found:
                    if len(found) >= MAX_PREFIX_VARIANTS:
                        return None
                    found.append(rest)
        i += 1
    return found


def _lookup(candidate: str, snap: ListSnapshot) -> tuple[int | None, bool]:
    """(barred entry matched, whether the candidate is a plausible number at all).

    Checks the candidate and each prefix of it of a possible length for its country, so digits
    overdialled after a barred number still match it (DESIGN.md screening rule 3).
    """
    if len(candidate) < E164_MIN_DIGITS or candidate[0] == "0":
        return None, False
    cc, lengths = _split_cc(candidate)
    if not cc:
        return None, False
    nsn_len = len(candidate) - len(cc)
    present = snap.lengths
    bitmap = snap.bitmap
    valid = False
    for n in lengths:
        if n > nsn_len:
            break
        valid = True
        total = len(cc) + n
        if total > E164_MAX_DIGITS or total not in present:
            continue
        value = int(candidate[:total])
        if value in bitmap:
            return value, True
    return None, valid
