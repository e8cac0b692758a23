"""Dial-string screening: one dial string in, one verdict out (DESIGN.md "Screening rules").

The normaliser derives every plausible E.164 target a carrier could connect from the string and
blocks if any of them, or any prefix of one of a valid length (overdialling), is barred. Anything
it cannot read without doubt is `invalid`, and invalid is refused like blocked (fail closed).

Readings of one dial string (rule 2), after stacked dial prefixes are stripped in every way:

* definitive: `+CC...` / `00CC...` (international), `0...` (national with the trunk prefix);
* speculative: digits with no prefix at all may be a local number in the site's area, an
  international number sent without `+`/`00`, or a national number sent without the trunk `0`.

Every reading is screened; only definitive readings (and exact never-block dials) may let the
never-block list allow a call, so a speculative reading that happens to spell a helpline can
never hide a barred number behind it.
"""

from __future__ import annotations

import enum
import re
import sys
from typing import NamedTuple

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

# Visual separators: RFC 3966 §5.1.1 "visual-separator" (- . ( )) plus spaces, '/' and tabs.
_SEPARATORS = b" -.()/\t"
# After the separators are gone (and the string lower-cased): an optional '+' that may only
# follow stacked dial prefixes, the main digits, then post-dial parts only: pauses and waits
# (',' GSM/Android, 'p'/'w' RFC 2806, ';' Android wait), DTMF '#' and '*', digits, and the
# RFC 3966 §5.1.5 ';ext=' extension. Any other parameter (';phone-context=', ';rn=', ';isub=')
# can change which number the main digits mean, so it makes the whole string invalid.
_DIAL = re.compile(rb"(?:([0-9]*)\+)?([0-9]+)(?:;ext=|[0-9,;pw#*])*")


class Verdict(enum.Enum):
    ALLOWED = "allowed"
    BLOCKED = "blocked"
    INVALID = "invalid"


class CheckResult(NamedTuple):
    """The verdict for one dial string. A NamedTuple rather than a frozen dataclass: it is built
    on the hot path for every blocked dial, and a tuple is built in half the time."""

    verdict: Verdict
    matched: int | None = None  # the barred entry (E.164 digits) for BLOCKED, else None

    @property
    def matched_e164(self) -> str | None:
        return None if self.matched is None else f"+{self.matched}"


_ALLOWED = CheckResult(Verdict.ALLOWED)
_INVALID = CheckResult(Verdict.INVALID)
_BLOCKED = Verdict.BLOCKED
_ALLOWED_VERDICT = Verdict.ALLOWED
_new_result = tuple.__new__  # CheckResult without the generated __new__'s argument handling


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


_COUNTRY_LENGTHS, _COUNTRY_TRUNK = _build_country_tables()


def country_lengths(cc: str) -> tuple[int, ...]:
    """Possible national significant number lengths for a country calling code ('' if unknown)."""
    return _COUNTRY_LENGTHS.get(cc, ())


def _build_cc_by_head() -> dict[str, str]:
    # ITU country codes are prefix-free, so the first three digits of an E.164 number name its
    # country code (or none); one dict lookup instead of trying 1, 2 and 3 digits in turn.
    out: dict[str, str] = {}
    for i in range(1000):
        head = f"{i:03d}"
        for n in (1, 2, 3):
            if head[:n] in _COUNTRY_LENGTHS:
                out[head] = head[:n]
                break
    return out


_CC_BY_HEAD = _build_cc_by_head()


def _strip_all(digits: str, prefixes: dict[str, tuple[str, ...]]) -> list[str] | None:
    """The string and every string left by stripping stacked prefixes from its front, in any
    order; None when a string stacks more prefixes than MAX_PREFIX_VARIANTS allows.
    `prefixes` maps a first digit to the dial prefixes that start with it."""
    found = [digits]
    i = 0
    while i < len(found):
        v = found[i]
        i += 1
        if not v:
            continue
        for p in prefixes.get(v[0], ()):
            if v.startswith(p):
                rest = v[len(p) :]
                if rest not in found:
                    if len(found) >= MAX_PREFIX_VARIANTS:
                        return None
                    found.append(rest)
    return found


# First three digits -> (country code, its trunk prefix), for countries that have one.
_CC_TRUNK_BY_HEAD = {
    head: (cc, _COUNTRY_TRUNK[cc]) for head, cc in _CC_BY_HEAD.items() if cc in _COUNTRY_TRUNK
}


def _international(number: str, out: list[str]) -> None:
    """Readings of a number written after '+' or '00' (or as one without them): the number itself,
    and without the trunk prefix people write after the country code ("+44 (0)20 ...")."""
    if number not in out:
        out.append(number)
    found = _CC_TRUNK_BY_HEAD.get(number[:3])
    if found is not None:
        cc, trunk = found
        if number.startswith(trunk, len(cc)):
            stripped = cc + number[len(cc) + len(trunk) :]
            if stripped not in out:
                out.append(stripped)


# Candidates are pre-screened by their first digits: a few range counts on the bitmap per
# five-digit head, cached per snapshot, replace most lookups of speculative readings. The cache
# starts afresh with each snapshot and stops growing at _MAX_NEARS heads (a few MB at most, so
# dialling random numbers cannot grow it without bound); heads past that are counted each time.
_NEAR_DIGITS = 5
_MAX_NEARS = 1 << 14
# The fast path's speculative readings are pre-screened by one digit more: a prefixed variant's
# six digits ("1410 7x" behind 141) cover three readings, and the sixth digit is what tells a
# local number from a national one written after the prefix ("44 141 07..." is no Glasgow
# number, but every "44 141 0" to "44 141 9" five-digit head is).
_GUESS_DIGITS = 6
assert _GUESS_DIGITS <= E164_MIN_DIGITS  # a head never outgrows the numbers it pre-screens

# The table entry for a head that names no country code: no candidate is ever long enough.
_NO_NUMBER: tuple[int, tuple[int, ...]] = (sys.maxsize, ())

# The speculative readings of a dial variant, from its first six digits: (what the reading
# puts in front of the variant, candidate length, digits of the variant that length takes) for
# each lookup worth making, in the general path's order; then the country code and the digits
# to cut for the reading with the trunk after the country code ("44 (0)20 ..."), or ("", 0).
_Guesses = tuple[tuple[tuple[str, int, int], ...], str, int]
_NO_GUESSES: _Guesses = ((), "", 0)  # the commonest entry: no lookup worth making


class _Tables:
    """Per-snapshot lookup tables, keyed by a candidate's first three digits (which name its
    country code): the shortest candidate that can be a number at all, and the candidate
    lengths (prefixes, for overdialling) worth looking up because this snapshot has entries of
    that length. Filled lazily; a racing reader computes the same value."""

    __slots__ = (
        "added",
        "bitmap",
        "guesses",
        "heads",
        "nears",
        "never_ints",
        "never_listed",
        "own",
        "present",
        "removed",
        "snapshot",
        "spoken",
        "trunk_listed",
    )

    def __init__(self, snapshot: ListSnapshot, never_ints: frozenset[int], plan: DialPlan) -> None:
        self.snapshot = snapshot
        # The list is (bitmap - removed) | added (ListSnapshot's overlay): the sets are empty
        # for a compact list and small otherwise, so they cost a truth test, or a set probe.
        self.bitmap = snapshot.base
        self.added = snapshot.added
        self.removed = snapshot.removed
        self.present = snapshot.lengths
        self.heads: dict[str, tuple[int, tuple[int, ...]]] = {}
        self.nears: dict[str, tuple[int, ...]] = {}
        self.guesses: dict[str, _Guesses] = {}
        # Whether the list (wrongly) carries a never-block number: only then do hits need the
        # extra never-block test.
        self.never_ints = never_ints
        self.never_listed = any(n in snapshot for n in never_ints)
        own_cc, area = plan.country_code, plan.area_code
        self.own = self.for_cc(own_cc)  # the site's own country, for the fast paths
        # What a speculative reading puts in front of the digits, in the general path's order:
        # the site's area (local dialling), the country code (national without the trunk 0),
        # nothing (international without '+' or '00').
        self.spoken = (own_cc + area, own_cc, "") if area else (own_cc, "")
        # Whether an entry begins with the site's country code and trunk ("440...": intake
        # refuses a 0 trunk kept unless phonenumbers knows the number as valid), at a length
        # where the site's own numbers are looked up.
        kept = own_cc + plan.trunk_prefix
        self.trunk_listed = bool(plan.trunk_prefix) and any(
            self._any_in(
                int(kept) * 10 ** (total - len(kept)), (int(kept) + 1) * 10 ** (total - len(kept))
            )
            for total in self.own[1]
        )

    def for_cc(self, cc: str) -> tuple[int, tuple[int, ...]]:
        lengths = _COUNTRY_LENGTHS.get(cc)
        if not lengths:
            return _NO_NUMBER
        totals = tuple(
            len(cc) + n
            for n in lengths
            if len(cc) + n <= E164_MAX_DIGITS and len(cc) + n in self.present
        )
        return (len(cc) + lengths[0], totals)

    def near(self, near: str, totals: tuple[int, ...]) -> tuple[int, ...]:
        """The candidate lengths at which the list has entries starting with `near`."""
        base = int(near)
        found = tuple(
            total
            for total in totals
            if self._any_in(
                base * 10 ** (total - len(near)), (base + 1) * 10 ** (total - len(near))
            )
        )
        if len(self.nears) < _MAX_NEARS:
            self.nears[near] = found
        return found

    def _any_in(self, low: int, high: int) -> bool:
        # Counting the base ignores its removed entries: "maybe" is safe, it only costs a probe.
        if self.bitmap.range_cardinality(low, high):
            return True
        return any(low <= n < high for n in self.added)

    def head(self, head: str) -> tuple[int, tuple[int, ...]]:
        cc = _CC_BY_HEAD.get(head) if len(head) == 3 else None
        info = _NO_NUMBER if cc is None else self.for_cc(cc)
        self.heads[head] = info
        return info

    def guess(self, start: str) -> _Guesses:
        """The lookups worth making for the speculative readings of any dial variant whose first
        six digits are `start`: they fix each reading's country code and first six digits,
        hence (`near`) the lengths at which the list has entries starting as the reading does,
        and whether the variant has a trunk after its country code."""
        lookups: list[tuple[str, int, int]] = []
        for before in self.spoken:
            near = (before + start)[:_GUESS_DIGITS]
            info = self.heads.get(near[:3]) or self.head(near[:3])
            totals = self.nears.get(near)
            if totals is None:
                totals = self.near(near, info[1])
            lookups.extend((before, total, total - len(before)) for total in totals)
        code, cut = "", 0
        head_trunk = _CC_TRUNK_BY_HEAD.get(start[:3])
        if head_trunk is not None and start.startswith(head_trunk[1], len(head_trunk[0])):
            code, cut = head_trunk[0], len(head_trunk[0]) + len(head_trunk[1])
        found = (tuple(lookups), code, cut) if lookups or code else _NO_GUESSES
        if len(self.guesses) < _MAX_NEARS:
            self.guesses[start] = found
        return found

    def barred(self, value: int) -> bool:
        """Whether the list bars `value` (a never-block number never is, even if listed)."""
        if (value in self.bitmap and not (self.removed and value in self.removed)) or (
            self.added and value in self.added
        ):
            return not (self.never_listed and value in self.never_ints)
        return False


class Screener:
    """Screens dial strings against whatever snapshot the holder currently has.

    Construct once per dial plan; `check` is the hot path: plain digit strings and plain E.164
    (what a PBX puts in a Request-URI) skip the parser, and only candidate lengths present in the
    list are looked up.
    """

    __slots__ = (
        "_area",
        "_cc",
        "_cc_trunk",
        "_holder",
        "_intl",
        "_never",
        "_never_dials",
        "_never_e164",
        "_never_ints",
        "_never_long",
        "_outside_line",
        "_outside_line_alone",
        "_outside_trunk",
        "_plan",
        "_prefixes",
        "_steps",
        "_tables",
        "_trunk",
        "_widest",
    )

    def __init__(self, plan: DialPlan, holder: ListHolder) -> None:
        self._plan = plan
        self._holder = holder
        self._cc = plan.country_code
        self._intl = plan.international_prefix
        self._trunk = plan.trunk_prefix
        self._area = plan.area_code
        by_first: dict[str, list[str]] = {}
        for p in plan.dial_prefixes:
            if p:
                by_first.setdefault(p[0], []).append(p)
        self._prefixes = {k: tuple(v) for k, v in by_first.items()}
        self._widest = max(map(len, plan.dial_prefixes), default=0)
        self._steps: dict[str, int] = {}  # see _step
        self._outside_line = plan.outside_line
        # True when no other dial prefix starts with the outside line's first digit.
        self._outside_line_alone = bool(plan.outside_line) and self._prefixes.get(
            plan.outside_line[0]
        ) == (plan.outside_line,)
        # The commonest stack, the outside line before the trunk ("9 0..."): a chain of one
        # prefix when nothing else stacks on the outside line and the trunk starts no prefix.
        self._outside_trunk = (
            plan.outside_line + plan.trunk_prefix
            if self._outside_line_alone
            and plan.trunk_prefix
            and plan.trunk_prefix[0] not in self._prefixes
            else ""
        )
        self._never = NeverBlock(plan.country_code, plan.trunk_prefix, plan.never_block_extra)
        self._never_dials = self._never.dials
        self._never_e164 = self._never.e164_digits
        self._never_ints = frozenset(int(d) for d in self._never_e164)
        # Fast paths apply only to strings longer than every never-block dial and E.164 entry.
        self._never_long = max(map(len, (*self._never_dials, *self._never_e164)), default=0)
        self._cc_trunk = self._cc + self._trunk if self._trunk else ""
        self._tables = _Tables(holder.current, self._never_ints, plan)

    @property
    def plan(self) -> DialPlan:
        return self._plan

    @property
    def never_block(self) -> NeverBlock:
        return self._never

    def check(self, dialled: str) -> CheckResult:
        """The verdict for one dial string, against the current snapshot."""
        if len(dialled) > MAX_DIAL_CHARS or not dialled.isascii():
            # Full-width and other Unicode digits included: a carrier may read them differently.
            return _INVALID
        # Fast paths for what a PBX usually puts in a Request-URI: national digits (0...), and
        # E.164 of the site's own country written +CC..., 00CC... or +CC (0)..., each also behind
        # stacked dial prefixes (9 0..., 9 141 0...), and each also written with separators.
        # Each is exactly the general path (`_check_parsed`) specialised to its readings: one
        # definitive candidate, and the speculative readings of each prefixed variant (tests
        # check that they agree).
        if dialled.isdigit():
            number = dialled
            plus = False
        elif dialled[:1] == "+" and dialled[1:].isdigit():
            number = dialled[1:]
            plus = True
        else:
            # Digits with spaces only (how people write numbers) need only the spaces removed.
            # Everything else goes through the strict parser; what it cannot read is invalid.
            # What it reduces to plain digits, or '+' and digits, takes the fast paths below.
            number = dialled.replace(" ", "")
            plus = False
            if not number.isdigit():
                parsed = _parse(number)
                if parsed is None:
                    return _INVALID
                head, number = parsed
                if head:
                    return self._check_parsed(head, number)
                plus = head is not None
        cc = self._cc
        never_long = self._never_long
        stacked: list[str] | None = None  # the variants that still start with a dial prefix
        international: str | None = number if plus else None  # what follows '+' or '00'
        if not plus:
            trunk = self._trunk
            if len(number) <= never_long or not trunk:
                return self._check_parsed(None, number)
            if number[0] in self._prefixes:
                if self._outside_trunk and number.startswith(self._outside_trunk):
                    stacked = [number]  # what _unstack gives, without its search
                    rest = number[len(self._outside_line) :]
                else:
                    stacked = self._unstack(number)
                    if stacked is None:
                        return self._check_parsed(None, number)
                    rest = stacked.pop()
                # What the prefixes hide may still be a never-block dial ("9 9 0800 1111").
                if len(rest) <= never_long:
                    return self._check_parsed(None, number)
            else:
                rest = number
            if not rest.startswith(trunk):
                return self._check_parsed(None, number)
            intl = self._intl
            if rest.startswith(intl):
                international = rest[len(intl) :]
            else:
                candidate = cc + rest[len(trunk) :]
        if international is not None:
            candidate = international
            if len(candidate) <= never_long or not candidate.startswith(cc):
                return self._check_parsed("" if plus else None, number)
            cc_trunk = self._cc_trunk
            if cc_trunk and candidate.startswith(cc_trunk):
                # "+44 (0)20 ...": the general path reads it as written, then without the
                # trunk; the first reading is worth a lookup only if the list has an entry
                # that keeps the trunk (intake refuses most), and then the general path does it.
                candidate = cc + candidate[len(cc_trunk) :]
                if self._tables.trunk_listed or len(candidate) <= never_long:
                    return self._check_parsed("" if plus else None, number)
        # One definitive candidate in the site's own country, longer than any never-block entry.
        tables = self._tables
        min_total, totals = tables.own
        size = len(candidate)
        if tables.snapshot is not self._holder.current or size < min_total:
            return self._check_parsed("" if plus else None, number)
        bitmap = tables.bitmap
        added = tables.added
        removed = tables.removed
        for total in totals:
            if total > size:
                break
            value = int(candidate[:total])
            if (value in bitmap and not (removed and value in removed)) or (
                added and value in added
            ):
                if tables.never_listed and value in self._never_ints:
                    continue
                return _new_result(CheckResult, (_BLOCKED, value))
        if stacked:
            # Most prefixed variants have no speculative reading worth a lookup; only when one
            # has (or is not yet cached) are the readings walked, from the first variant on.
            guesses = tables.guesses
            for v in stacked:
                if guesses.get(v[:_GUESS_DIGITS]) is not _NO_GUESSES:
                    return self._guess(tables, stacked)
        return _ALLOWED

    def screen(self, dialled: str) -> str:
        """The verdict as a plain string, the form `gateway.sip` is injected with."""
        # Identity tests, not `.verdict.value`: an Enum's value is a descriptor lookup that cost
        # more than the national fast path's own lookup when measured (Python 3.11).
        verdict = self.check(dialled)[0]
        if verdict is _ALLOWED_VERDICT:
            return "allowed"
        return "blocked" if verdict is _BLOCKED else "invalid"

    def _unstack(self, dialled: str) -> list[str] | None:
        """Stacked dial prefixes stripped one by one, when exactly one prefix applies at each
        step: the variants outermost first, the last one the first not to start with a prefix
        (`_strip_all`'s result without the search); None when that is not so."""
        steps = self._steps
        widest = self._widest
        found = [dialled]
        rest = dialled
        while True:
            head = rest[:widest]
            cut = steps.get(head)
            if cut is None:
                cut = self._step(head)
            if not cut:
                return found
            if cut < 0 or len(found) >= MAX_PREFIX_VARIANTS:
                return None
            rest = rest[cut:]
            found.append(rest)

    def _step(self, head: str) -> int:
        """The length of the one dial prefix `head` starts with; 0 when it starts with no
        prefix's first digit, -1 when no prefix or two could apply. `head` holds as many digits
        as the longest prefix, so the answer is that of every string starting with it; cached
        per screener (the plan's prefixes never change), bounded like the per-snapshot caches."""
        prefixes = self._prefixes.get(head[:1])
        if prefixes is None:
            cut = 0
        else:
            applying = [p for p in prefixes if head.startswith(p)]
            cut = len(applying[0]) if len(applying) == 1 else -1
        if len(self._steps) < _MAX_NEARS:
            self._steps[head] = cut
        return cut

    def _guess(self, tables: _Tables, variants: list[str]) -> CheckResult:
        """The speculative readings of each variant (local, national without the trunk 0,
        international without '+' or '00'), for the fast path: only the lookups `guess` found
        worth making. ALLOWED when none is barred."""
        guesses = tables.guesses
        for v in variants:
            start = v[:_GUESS_DIGITS]
            lookups, code, cut = guesses.get(start) or tables.guess(start)
            size = len(v)
            for before, total, needs in lookups:
                if needs <= size:
                    value = int((before + v)[:total])
                    if tables.barred(value):
                        return _new_result(CheckResult, (_BLOCKED, value))
            if code:
                found = self._lookup((code + v[cut:],))
                if found[0] is _BLOCKED:
                    return found
        return _ALLOWED

    def _check_parsed(self, head: str | None, digits: str) -> CheckResult:
        """The general path: `head` is what stood before a '+' (None: no '+'), `digits` the main
        digits with separators and post-dial parts removed."""
        never_e164 = self._never_e164
        candidates: list[str] = []
        if head is not None:
            # '+' may only follow stacked dial prefixes ("9+44...", "141+44..."); else doubt.
            if head:
                heads = _strip_all(head, self._prefixes)
                if heads is None or "" not in heads:
                    return _INVALID
            _international(digits, candidates)
            if not never_e164.isdisjoint(candidates):
                return _ALLOWED
            return self._lookup(candidates)
        variants: list[str] | tuple[str, ...]
        prefixes = self._prefixes
        if digits[0] not in prefixes:
            variants = (digits,)
        elif (
            self._outside_line_alone
            and digits.startswith(self._outside_line)
            and digits[len(self._outside_line) : len(self._outside_line) + 1] not in prefixes
        ):
            # The commonest stack, the outside line alone: _strip_all's result without the search.
            variants = (digits, digits[len(self._outside_line) :])
        else:
            found = _strip_all(digits, prefixes)
            if found is None:
                return _INVALID
            variants = found
        if not self._never_dials.isdisjoint(variants):
            return _ALLOWED  # rule 1: never-block first
        intl, trunk, cc, area = self._intl, self._trunk, self._cc, self._area
        speculative: list[str] = []
        for v in variants:
            if not v:
                continue
            if v.startswith(intl):
                _international(v[len(intl) :], candidates)
            elif trunk and v.startswith(trunk):
                c = cc + v[len(trunk) :]
                if c not in candidates:
                    candidates.append(c)
            else:
                if area:
                    speculative.append(cc + area + v)
                speculative.append(cc + v)
                speculative.append(v)  # international without '+' or '00' ...
                head_trunk = _CC_TRUNK_BY_HEAD.get(v[:3])
                if head_trunk is not None and v.startswith(head_trunk[1], len(head_trunk[0])):
                    # ... with the trunk after the country code ("44 (0)20 ...")
                    code, code_trunk = head_trunk
                    speculative.append(code + v[len(code) + len(code_trunk) :])
        if not never_e164.isdisjoint(candidates):
            return _ALLOWED
        # Definitive readings first: a hit is usually found by the first lookup.
        candidates.extend(speculative)
        return self._lookup(candidates)

    def _lookup(self, candidates: list[str] | tuple[str, ...]) -> CheckResult:
        """BLOCKED if a candidate, or a prefix of one of a possible length, is barred (rule 3);
        ALLOWED if at least one candidate is long enough to be a number; else INVALID."""
        tables = self._tables
        snap = self._holder.current
        if tables.snapshot is not snap:
            # First check after a swap: one attribute store, so a concurrent reader sees either
            # the old tables or the new ones, each consistent with its own snapshot.
            tables = _Tables(snap, self._never_ints, self._plan)
            self._tables = tables
        bitmap = tables.bitmap
        added = tables.added
        removed = tables.removed
        heads = tables.heads
        nears = tables.nears
        usable = False
        for c in candidates:
            head = c[:3]
            info = heads.get(head)
            if info is None:
                info = tables.head(head)
            size = len(c)
            if size < info[0]:
                continue
            usable = True
            # Only lengths at which the list has entries starting with these five digits: most
            # speculative readings ("020 9...", "+90 7...") fall where no number is barred.
            near = c[:_NEAR_DIGITS]
            totals = nears.get(near)
            if totals is None:
                totals = tables.near(near, info[1])
            for total in totals:
                if total > size:
                    break
                value = int(c[:total])
                if (value in bitmap and not (removed and value in removed)) or (
                    added and value in added
                ):
                    # A never-block number can never be barred, even if a list carries it.
                    if tables.never_listed and value in self._never_ints:
                        continue
                    return _new_result(CheckResult, (_BLOCKED, value))
        return _ALLOWED if usable else _INVALID


def _parse(dialled: str) -> tuple[str | None, str] | None:
    """(digits before a '+' or None when there is no '+', main digits) of a formatted dial
    string, or None when the string is not read without doubt (rule 4)."""
    if not dialled or not dialled.isascii():
        return None
    compact = dialled.encode("ascii").translate(None, _SEPARATORS)
    # Digits with separators only (how people write numbers) need no grammar.
    if compact.isdigit():
        return None, compact.decode("ascii")
    if compact[:1] == b"+" and compact[1:].isdigit():
        return "", compact[1:].decode("ascii")
    m = _DIAL.fullmatch(compact.lower())
    if m is None:
        return None
    head, main = m.groups()
    return (None if head is None else head.decode("ascii")), main.decode("ascii")
