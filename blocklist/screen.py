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
from typing import NamedTuple

# What moved to the private modules is bound at module level, so the hot path reads it as a
# global, one lookup as when it was defined here.
from blocklist import _countries
from blocklist._countries import country_lengths, international_readings
from blocklist._native import FastPath
from blocklist._tables import GUESS_DIGITS, MAX_NEARS, NEAR_DIGITS, NO_GUESSES, Tables
from blocklist.dialplan import DialPlan
from blocklist.holder import ListHolder
from blocklist.neverblock import NeverBlock
from blocklist.snapshot import ListSnapshot

__all__ = ["MAX_DIAL_CHARS", "CheckResult", "Screener", "Verdict", "country_lengths"]

# Bound by assignment, not `from ... import`: CPython 3.11 compiles `NAME.get(...)` on a name an
# import binds as an attribute load and a call (it takes NAME for a module), which builds a
# bound method per lookup, where an assigned global gets the cheaper method call.
CC_TRUNK_BY_HEAD = _countries.CC_TRUNK_BY_HEAD

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
        self._tables = self._new_tables(holder.current)

    def _new_tables(self, snapshot: ListSnapshot) -> Tables:
        """The lookup tables of one snapshot, with the C fast path (`blocklist._native.FastPath`)
        over them: `check` asks it first, and it answers only where its answer is exactly
        `_check_py`'s (tests/blocklist/test_fastpath.py)."""
        tables = Tables(snapshot, self._never_ints, self._plan)
        try:
            fast = FastPath(
                cc=self._cc,
                trunk=self._trunk,
                intl=self._intl,
                outside_line=self._outside_line,
                outside_trunk=self._outside_trunk,
                prefixes=tuple(p for group in self._prefixes.values() for p in group),
                max_variants=MAX_PREFIX_VARIANTS,
                separators=_SEPARATORS.decode("ascii"),
                never_long=self._never_long,
                max_dial=MAX_DIAL_CHARS,
                min_total=tables.own[0],
                totals=tables.own[1],
                base=tables.bitmap,
                added=tables.added,
                removed=tables.removed,
                never_ints=self._never_ints,
                never_listed=tables.never_listed,
                trunk_listed=tables.trunk_listed,
                guesses=tables.guesses,
                no_guesses=NO_GUESSES,
                guess_digits=GUESS_DIGITS,
                allowed=_ALLOWED,
                result_type=CheckResult,
                blocked=_BLOCKED,
            )
            tables.fast = fast.check
        except ValueError:
            # A dial plan the C fast path does not take (a part longer than it reads): every
            # dial takes the Python path, which gives the same verdicts, only slower.
            tables.fast = _no_fast_path
        return tables

    @property
    def plan(self) -> DialPlan:
        return self._plan

    @property
    def never_block(self) -> NeverBlock:
        return self._never

    def check(self, dialled: str) -> CheckResult:
        """The verdict for one dial string, against the current snapshot."""
        tables = self._tables
        if tables.snapshot is self._holder.current:
            found = tables.fast(dialled)
            if found is not None:
                return found
        return self._check_py(dialled)

    def _check_py(self, dialled: str) -> CheckResult:
        """`check` in Python: the reference the C fast path is a transcription of, and the whole
        check for every dial string the fast path leaves (None)."""
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
                if guesses.get(v[:GUESS_DIGITS]) is not NO_GUESSES:
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
        if len(self._steps) < MAX_NEARS:
            self._steps[head] = cut
        return cut

    def _guess(self, tables: Tables, variants: list[str]) -> CheckResult:
        """The speculative readings of each variant (local, national without the trunk 0,
        international without '+' or '00'), for the fast path: only the lookups `guess` found
        worth making. ALLOWED when none is barred."""
        guesses = tables.guesses
        for v in variants:
            start = v[:GUESS_DIGITS]
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
            international_readings(digits, candidates)
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
                international_readings(v[len(intl) :], candidates)
            elif trunk and v.startswith(trunk):
                c = cc + v[len(trunk) :]
                if c not in candidates:
                    candidates.append(c)
            else:
                if area:
                    speculative.append(cc + area + v)
                speculative.append(cc + v)
                speculative.append(v)  # international without '+' or '00' ...
                head_trunk = CC_TRUNK_BY_HEAD.get(v[:3])
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
            tables = self._new_tables(snap)
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
            near = c[:NEAR_DIGITS]
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


def _no_fast_path(dialled: str) -> None:
    return None


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
