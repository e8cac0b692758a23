"""Per-snapshot lookup tables for `blocklist.screen.Screener`, and the bounds of their caches.

A `Tables` belongs to one list snapshot: the screener builds a fresh one on the first check after
a swap and replaces it with one attribute store, so the hot path takes no lock. Its caches are
keyed by a candidate's first digits and tell which candidate lengths are worth a lookup; they
live here, apart from the screening rules, because they only make lookups cheaper and never
change a verdict. Private to `blocklist`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from blocklist import _countries
from blocklist.dialplan import DialPlan
from blocklist.snapshot import E164_MAX_DIGITS, E164_MIN_DIGITS, ListSnapshot

if TYPE_CHECKING:
    from blocklist.screen import CheckResult

__all__ = ["GUESS_DIGITS", "MAX_NEARS", "NEAR_DIGITS", "NO_GUESSES", "Tables"]

# Bound by assignment, not `from ... import`, for the method calls on them (`.get`): see the
# same binding in `blocklist.screen`.
CC_BY_HEAD = _countries.CC_BY_HEAD
CC_TRUNK_BY_HEAD = _countries.CC_TRUNK_BY_HEAD
COUNTRY_LENGTHS = _countries.COUNTRY_LENGTHS

# Candidates are pre-screened by their first digits: a few range counts on the bitmap per
# five-digit head, cached per snapshot, replace most lookups of speculative readings. The cache
# starts afresh with each snapshot and stops growing at MAX_NEARS heads (a few MB at most, so
# dialling random numbers cannot grow it without bound); heads past that are counted each time.
NEAR_DIGITS = 5
MAX_NEARS = 1 << 14
# The fast path's speculative readings are pre-screened by one digit more: a prefixed variant's
# six digits ("1410 7x" behind 141) cover three readings, and the sixth digit is what tells a
# local number from a national one written after the prefix ("44 141 07..." is no Glasgow
# number, but every "44 141 0" to "44 141 9" five-digit head is).
GUESS_DIGITS = 6
assert GUESS_DIGITS <= E164_MIN_DIGITS  # a head never outgrows the numbers it pre-screens

# The table entry for a head that names no country code: no candidate is ever long enough.
_NO_NUMBER: tuple[int, tuple[int, ...]] = (sys.maxsize, ())

# The speculative readings of a dial variant, from its first six digits: (what the reading
# puts in front of the variant, candidate length, digits of the variant that length takes) for
# each lookup worth making, in the general path's order; then the country code and the digits
# to cut for the reading with the trunk after the country code ("44 (0)20 ..."), or ("", 0).
_Guesses = tuple[tuple[tuple[str, int, int], ...], str, int]
NO_GUESSES: _Guesses = ((), "", 0)  # the commonest entry: no lookup worth making


class Tables:
    """Per-snapshot lookup tables, keyed by a candidate's first three digits (which name its
    country code): the shortest candidate that can be a number at all, and the candidate
    lengths (prefixes, for overdialling) worth looking up because this snapshot has entries of
    that length. Filled lazily; a racing reader computes the same value."""

    __slots__ = (
        "added",
        "bitmap",
        "fast",
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

    fast: Callable[[str], CheckResult | None]  # set by the screener: its C fast path

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
        lengths = COUNTRY_LENGTHS.get(cc)
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
        if len(self.nears) < MAX_NEARS:
            self.nears[near] = found
        return found

    def _any_in(self, low: int, high: int) -> bool:
        # Counting the base ignores its removed entries: "maybe" is safe, it only costs a probe.
        if self.bitmap.range_cardinality(low, high):
            return True
        return any(low <= n < high for n in self.added)

    def head(self, head: str) -> tuple[int, tuple[int, ...]]:
        cc = CC_BY_HEAD.get(head) if len(head) == 3 else None
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
            near = (before + start)[:GUESS_DIGITS]
            info = self.heads.get(near[:3]) or self.head(near[:3])
            totals = self.nears.get(near)
            if totals is None:
                totals = self.near(near, info[1])
            lookups.extend((before, total, total - len(before)) for total in totals)
        code, cut = "", 0
        head_trunk = CC_TRUNK_BY_HEAD.get(start[:3])
        if head_trunk is not None and start.startswith(head_trunk[1], len(head_trunk[0])):
            code, cut = head_trunk[0], len(head_trunk[0]) + len(head_trunk[1])
        found = (tuple(lookups), code, cut) if lookups or code else NO_GUESSES
        if len(self.guesses) < MAX_NEARS:
            self.guesses[start] = found
        return found

    def barred(self, value: int) -> bool:
        """Whether the list bars `value` (a never-block number never is, even if listed)."""
        if (value in self.bitmap and not (self.removed and value in self.removed)) or (
            self.added and value in self.added
        ):
            return not (self.never_listed and value in self.never_ints)
        return False
