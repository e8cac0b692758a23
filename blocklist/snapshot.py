"""The immutable national list: every barred E.164 number as a 64-bit integer in a compact frozen
set (`blocklist._native.U64Set`), with the list version and a content checksum.

Readers hold a reference to one snapshot and can never see it change; the single writer builds a
new snapshot (`with_changes`) and swaps the reference (`ListHolder`). An E.164 number has at most
15 digits (ITU-T E.164 §6.2.1), so its digits fit in an unsigned 64-bit integer; the leading `+`
is implied.

What is resident is a U64Set, not the roaring bitmap the list was first held in: measured on 1M
entries it answers a cold membership test in less than half the time, in half the memory
(bench/RESULTS.md). Roaring stays the format on disk and on the sync wire (`bitmap` builds one on
demand), and builds the set from an unsorted input (it sorts 1M ints faster than `sorted`).
"""

from __future__ import annotations

import hashlib
import sys
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import FrozenInstanceError

from pyroaring import BitMap64, FrozenBitMap64

from blocklist._native import U64Set

__all__ = [
    "E164_MAX_DIGITS",
    "E164_MIN_DIGITS",
    "ListSnapshot",
    "SnapshotError",
    "e164_to_int",
    "int_to_e164",
]

E164_MAX_DIGITS = 15  # ITU-T E.164 §6.2.1: country code + national significant number
# Shortest possible number in phonenumbers' metadata: a 2-digit code and a 4-digit national number
# (Austria, Germany, Iran); intake accepts every possible number, so the list must hold them.
E164_MIN_DIGITS = 6
_DIGITS_RANGE = f"{E164_MIN_DIGITS} to {E164_MAX_DIGITS}"
CHECKSUM_BYTES = 16  # blake2b-128 over the sorted entries; collision odds irrelevant at 1e6 entries


class SnapshotError(ValueError):
    """An entry or change that can never be part of a list (bad E.164, wrong version order)."""


def e164_to_int(e164: str) -> int:
    """`"+447700900123"` -> `447700900123`; refuses anything that is not canonical E.164."""
    digits = e164[1:] if e164.startswith("+") else ""
    if not (
        digits.isascii()
        and digits.isdigit()
        and E164_MIN_DIGITS <= len(digits) <= E164_MAX_DIGITS
        and digits[0] != "0"
    ):
        raise SnapshotError(f"not a canonical E.164 number (want '+' and {_DIGITS_RANGE} digits)")
    return int(digits)


def int_to_e164(number: int) -> str:
    return f"+{number}"


def _checksum(entries: U64Set) -> str:
    # The checksum is over content (the sorted entries as little-endian uint64), not over any
    # serialised bytes, so two lists with the same numbers agree whatever layout holds them:
    # followers compare it bit for bit, and it is the same as when roaring held the list.
    values = entries.to_array()
    if sys.byteorder != "little":
        values.byteswap()
    return hashlib.blake2b(values.tobytes(), digest_size=CHECKSUM_BYTES).hexdigest()


def _lengths(entries: U64Set) -> frozenset[int]:
    # Which digit counts occur: screening then skips candidate lengths that cannot match.
    found = set()
    for n in range(E164_MIN_DIGITS, E164_MAX_DIGITS + 1):
        if entries.range_cardinality(10 ** (n - 1), 10**n):
            found.add(n)
    return frozenset(found)


def _roaring_values(bitmap: FrozenBitMap64 | BitMap64) -> array[int]:
    """A roaring bitmap's values, ascending, as array('Q')."""
    values = bitmap.to_array()
    if not isinstance(values, array) or values.itemsize != 8:
        values = array("Q", values)
    return values


def _as_u64set(entries: U64Set | FrozenBitMap64 | BitMap64) -> U64Set:
    """The resident set for a snapshot given either layout (roaring: from a file, the sync wire
    or a test)."""
    return entries if isinstance(entries, U64Set) else U64Set(_roaring_values(entries))


def _sorted_array(numbers: Iterable[int]) -> array[int]:
    """Distinct numbers, ascending, as array('Q') (roaring sorts and deduplicates them)."""
    return _roaring_values(BitMap64(numbers))


# A change applied by a follower is kept beside the base set (an overlay of added and lifted
# numbers) instead of copying the set: a copy costs O(list) (measured ~5 ms plus a 13 ms
# checksum at 1M entries, per change, per follower), the overlay O(overlay). Past this many
# overlay entries the next change folds the overlay into a new base (one O(list) copy per this
# many changes); membership tests stay two small-set probes at most.
OVERLAY_MAX_ENTRIES = 256


class ListSnapshot:
    """One version of the national list. Immutable; build new ones with `with_changes` (a
    compact copy) or `apply` (an overlay on this one, for a stream of small changes).

    The list is `(base - removed) | added`, with `added` disjoint from `base` and `removed` a
    subset of it. `entries` is that list as one U64Set (built on first use when an overlay
    exists); `checksum` is computed on first use unless given; both are then cached, and a
    racing reader computes the same value. `bitmap` is the list as roaring, for files and the
    sync wire, built on each call so that roaring never stays resident.
    """

    __slots__ = ("_checksum", "_entries", "added", "base", "lengths", "removed", "version")

    base: U64Set
    added: frozenset[int]
    removed: frozenset[int]
    version: int
    lengths: frozenset[int]
    _entries: U64Set | None
    _checksum: str

    def __init__(
        self,
        entries: U64Set | FrozenBitMap64 | BitMap64,
        version: int,
        checksum: str = "",
        lengths: frozenset[int] = frozenset(),
        *,
        added: frozenset[int] = frozenset(),
        removed: frozenset[int] = frozenset(),
    ) -> None:
        if version < 0:
            raise SnapshotError(f"list version {version} is negative")
        base = _as_u64set(entries)
        setattr_ = object.__setattr__
        setattr_(self, "base", base)
        setattr_(self, "added", added)
        setattr_(self, "removed", removed)
        setattr_(self, "version", version)
        setattr_(self, "_entries", None if (added or removed) else base)
        setattr_(self, "_checksum", checksum)
        setattr_(self, "lengths", lengths or _lengths(self.entries))

    def __setattr__(self, name: str, value: object) -> None:
        raise FrozenInstanceError(f"ListSnapshot is immutable (tried to set {name!r})")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"ListSnapshot is immutable (tried to delete {name!r})")

    def __repr__(self) -> str:
        # Never the entries: they are victims' numbers (DEVELOPERS.md invariant 4).
        return f"ListSnapshot(version={self.version}, entries={len(self)})"

    @property
    def entries(self) -> U64Set:
        """Every entry as one U64Set (the base itself when there is no overlay)."""
        merged = self._entries
        if merged is None:
            merged = self.base.merged(
                array("Q", sorted(self.added)), array("Q", sorted(self.removed))
            )
            object.__setattr__(self, "_entries", merged)
        return merged

    @property
    def bitmap(self) -> FrozenBitMap64:
        """Every entry as a frozen roaring bitmap: the snapshot file's and the sync wire's
        payload. O(list) on each call and not kept, so that only the compact set is resident."""
        return FrozenBitMap64(self.entries.to_array())

    @property
    def checksum(self) -> str:
        """blake2b-128 over the sorted entries (hex), computed on first use."""
        found = self._checksum
        if not found:
            found = _checksum(self.entries)
            object.__setattr__(self, "_checksum", found)
        return found

    @property
    def checksum_known(self) -> bool:
        """Whether `checksum` is already computed (reading it then costs nothing)."""
        return bool(self._checksum)

    @classmethod
    def empty(cls) -> ListSnapshot:
        return cls(U64Set(), 0)

    @classmethod
    def from_numbers(cls, numbers: Iterable[int], version: int) -> ListSnapshot:
        values = _sorted_array(numbers)
        # Entries are sorted, so the smallest and largest bound every entry's digit count.
        if values and not (_plausible(values[0]) and _plausible(values[-1])):
            raise SnapshotError(f"an entry is not a {_DIGITS_RANGE} digit E.164 number")
        return cls(U64Set(values), version)

    @classmethod
    def from_e164(cls, numbers: Iterable[str], version: int) -> ListSnapshot:
        return cls.from_numbers((e164_to_int(n) for n in numbers), version)

    def __contains__(self, number: object) -> bool:
        if not isinstance(number, int):
            return False
        if number in self.base:
            return number not in self.removed
        return number in self.added

    def __len__(self) -> int:
        return len(self.base) - len(self.removed) + len(self.added)

    def __iter__(self) -> Iterator[int]:
        return iter(self.entries)

    def with_changes(
        self, adds: Iterable[int], removes: Iterable[int], version: int
    ) -> ListSnapshot:
        """A new, compact snapshot at `version` with `adds` barred and `removes` lifted.

        A number both added and removed in one batch ends up removed only if the remove is
        applied after it: callers with ordered changes apply them one batch per order.
        """
        self._check_follows(version)
        add_values = _sorted_array(adds)
        if add_values and not (_plausible(add_values[0]) and _plausible(add_values[-1])):
            raise SnapshotError(f"an added entry is not a {_DIGITS_RANGE} digit E.164 number")
        return ListSnapshot(self.entries.merged(add_values, _sorted_array(removes)), version)

    def apply(self, adds: Sequence[int], removes: Sequence[int], version: int) -> ListSnapshot:
        """A new snapshot at `version` with `adds` barred and `removes` lifted.

        `adds` and `removes` must be disjoint (one final operation per number, as
        `sync.state.fold` gives). A small batch becomes an overlay on this snapshot's base,
        O(overlay) rather than O(list); once the overlay would outgrow OVERLAY_MAX_ENTRIES the
        result is compact: the base, the overlay and the batch merged in one pass.
        """
        self._check_follows(version)
        for n in adds:
            if not _plausible(n):
                raise SnapshotError(f"an added entry is not a {_DIGITS_RANGE} digit E.164 number")
        if len(adds) + len(removes) + len(self.added) + len(self.removed) > OVERLAY_MAX_ENTRIES:
            # The overlay and the batch as one change to the base, merged in one pass: later
            # operations win, and within the batch a remove wins over an add of the same number
            # (as in the overlay below). `added` is disjoint from the base and `removed` a
            # subset of it, so the two sets are disjoint.
            add_set, remove_set = set(adds), set(removes)
            adds_all = (self.added | add_set) - remove_set
            removes_all = (self.removed - add_set) | remove_set
            return ListSnapshot(
                self.base.merged(array("Q", sorted(adds_all)), array("Q", sorted(removes_all))),
                version,
            )
        base = self.base
        added = set(self.added)
        removed = set(self.removed)
        lengths = set(self.lengths)
        for n in adds:
            if n in base:
                removed.discard(n)  # lifted earlier in the overlay, barred again
            else:
                added.add(n)
            lengths.add(len(str(n)))
        gone: set[int] = set()
        for n in removes:
            if n in base:
                removed.add(n)
            else:
                added.discard(n)
            gone.add(len(str(n)))
        for digits in gone & lengths:
            # Still an entry of this many digits? Exact, so screening skips no length it needs.
            low, high = 10 ** (digits - 1), 10**digits
            left = (
                base.range_cardinality(low, high)
                - sum(1 for n in removed if low <= n < high)
                + sum(1 for n in added if low <= n < high)
            )
            if not left:
                lengths.discard(digits)
        return ListSnapshot(
            base,
            version,
            lengths=frozenset(lengths),
            added=frozenset(added),
            removed=frozenset(removed),
        )

    def _check_follows(self, version: int) -> None:
        if version <= self.version:
            raise SnapshotError(
                f"version {version} does not follow the list's version {self.version}"
            )

    def resident_bytes(self) -> int:
        """Bytes the compact set keeps for the entries (its own allocations; excludes Python
        headers and the small overlay)."""
        return self.base.nbytes


def _plausible(n: int) -> bool:
    return bool(10 ** (E164_MIN_DIGITS - 1) <= n < 10**E164_MAX_DIGITS)
