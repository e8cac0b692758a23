"""The immutable national list: every barred E.164 number as a 64-bit integer in a frozen roaring
bitmap, with the list version and a content checksum.

Readers hold a reference to one snapshot and can never see it change; the single writer builds a
new snapshot (`with_changes`) and swaps the reference (`ListHolder`). An E.164 number has at most
15 digits (ITU-T E.164 §6.2.1), so its digits fit in an unsigned 64-bit integer; the leading `+`
is implied.
"""

from __future__ import annotations

import hashlib
import sys
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import FrozenInstanceError

from pyroaring import BitMap64, FrozenBitMap64

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


def _checksum(bitmap: FrozenBitMap64) -> str:
    # The checksum is over content, not over the serialised bytes, so two lists with the same
    # numbers agree whatever container layout roaring chose: followers compare it bit for bit.
    values = bitmap.to_array()
    if not isinstance(values, array) or values.itemsize != 8:
        values = array("Q", values)
    if sys.byteorder != "little":
        values.byteswap()
    return hashlib.blake2b(values.tobytes(), digest_size=CHECKSUM_BYTES).hexdigest()


def _lengths(bitmap: FrozenBitMap64) -> frozenset[int]:
    # Which digit counts occur: screening then skips candidate lengths that cannot match.
    found = set()
    for n in range(E164_MIN_DIGITS, E164_MAX_DIGITS + 1):
        if bitmap.range_cardinality(10 ** (n - 1), 10**n):
            found.add(n)
    return frozenset(found)


# A change applied by a follower is kept beside the base bitmap (an overlay of added and lifted
# numbers) instead of copying the bitmap: a copy costs O(list) (measured ~5 ms plus a 13 ms
# checksum at 1M entries, per change, per follower), the overlay O(overlay). Past this many
# overlay entries the next change folds the overlay into a new base (one O(list) copy per this
# many changes); membership tests stay two small-set probes at most.
OVERLAY_MAX_ENTRIES = 256


class ListSnapshot:
    """One version of the national list. Immutable; build new ones with `with_changes` (a
    compact copy) or `apply` (an overlay on this one, for a stream of small changes).

    The list is `(base - removed) | added`, with `added` disjoint from `base` and `removed` a
    subset of it. `bitmap` is that list as one frozen bitmap (built on first use when an overlay
    exists); `checksum` is computed on first use unless given; both are then cached, and a
    racing reader computes the same value.
    """

    __slots__ = ("_bitmap", "_checksum", "added", "base", "lengths", "removed", "version")

    base: FrozenBitMap64
    added: frozenset[int]
    removed: frozenset[int]
    version: int
    lengths: frozenset[int]
    _bitmap: FrozenBitMap64 | None
    _checksum: str

    def __init__(
        self,
        bitmap: FrozenBitMap64,
        version: int,
        checksum: str = "",
        lengths: frozenset[int] = frozenset(),
        *,
        added: frozenset[int] = frozenset(),
        removed: frozenset[int] = frozenset(),
    ) -> None:
        if version < 0:
            raise SnapshotError(f"list version {version} is negative")
        setattr_ = object.__setattr__
        setattr_(self, "base", bitmap)
        setattr_(self, "added", added)
        setattr_(self, "removed", removed)
        setattr_(self, "version", version)
        setattr_(self, "_bitmap", None if (added or removed) else bitmap)
        setattr_(self, "_checksum", checksum)
        setattr_(self, "lengths", lengths or _lengths(self.bitmap))

    def __setattr__(self, name: str, value: object) -> None:
        raise FrozenInstanceError(f"ListSnapshot is immutable (tried to set {name!r})")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"ListSnapshot is immutable (tried to delete {name!r})")

    def __repr__(self) -> str:
        # Never the entries: they are victims' numbers (DEVELOPERS.md invariant 4).
        return f"ListSnapshot(version={self.version}, entries={len(self)})"

    @property
    def bitmap(self) -> FrozenBitMap64:
        """Every entry as one frozen bitmap (the base itself when there is no overlay)."""
        merged = self._bitmap
        if merged is None:
            merged = self.base
            if self.removed:
                merged = merged - BitMap64(self.removed)
            if self.added:
                merged = merged | BitMap64(self.added)
            object.__setattr__(self, "_bitmap", merged)
        return merged

    @property
    def checksum(self) -> str:
        """blake2b-128 over the sorted entries (hex), computed on first use."""
        found = self._checksum
        if not found:
            found = _checksum(self.bitmap)
            object.__setattr__(self, "_checksum", found)
        return found

    @property
    def checksum_known(self) -> bool:
        """Whether `checksum` is already computed (reading it then costs nothing)."""
        return bool(self._checksum)

    @classmethod
    def empty(cls) -> ListSnapshot:
        return cls(FrozenBitMap64(), 0)

    @classmethod
    def from_numbers(cls, numbers: Iterable[int], version: int) -> ListSnapshot:
        bitmap = BitMap64(numbers)
        # Entries are sorted, so the smallest and largest bound every entry's digit count.
        if bitmap and not (_plausible(bitmap.min()) and _plausible(bitmap.max())):
            raise SnapshotError(f"an entry is not a {_DIGITS_RANGE} digit E.164 number")
        bitmap.run_optimize()
        bitmap.shrink_to_fit()
        return cls(FrozenBitMap64(bitmap), version)

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
        return iter(self.bitmap)

    def with_changes(
        self, adds: Iterable[int], removes: Iterable[int], version: int
    ) -> ListSnapshot:
        """A new, compact snapshot at `version` with `adds` barred and `removes` lifted.

        A number both added and removed in one batch ends up removed only if the remove is
        applied after it: callers with ordered changes apply them one batch per order.
        """
        self._check_follows(version)
        add_set = BitMap64(adds)
        if add_set and not (_plausible(add_set.min()) and _plausible(add_set.max())):
            raise SnapshotError(f"an added entry is not a {_DIGITS_RANGE} digit E.164 number")
        bitmap = BitMap64(self.bitmap)
        bitmap |= add_set
        bitmap -= BitMap64(removes)
        bitmap.run_optimize()
        return ListSnapshot(FrozenBitMap64(bitmap), version)

    def apply(self, adds: Sequence[int], removes: Sequence[int], version: int) -> ListSnapshot:
        """A new snapshot at `version` with `adds` barred and `removes` lifted.

        `adds` and `removes` must be disjoint (one final operation per number, as
        `sync.state.fold` gives). A small batch becomes an overlay on this snapshot's base,
        O(overlay) rather than O(list); once the overlay would outgrow OVERLAY_MAX_ENTRIES the
        result is compact: the frozen bitmap's `|` and `-` build it in one copy (half the cost
        of `with_changes`, which copies to a mutable bitmap and again to freeze it).
        """
        self._check_follows(version)
        for n in adds:
            if not _plausible(n):
                raise SnapshotError(f"an added entry is not a {_DIGITS_RANGE} digit E.164 number")
        if len(adds) + len(removes) + len(self.added) + len(self.removed) > OVERLAY_MAX_ENTRIES:
            bitmap = self.bitmap
            if adds:
                bitmap = bitmap | BitMap64(adds)
            if removes:
                bitmap = bitmap - BitMap64(removes)
            return ListSnapshot(bitmap, version)
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
        """Bytes roaring keeps for the entries (its own statistics; excludes Python headers and
        the small overlay)."""
        stats = self.base.get_statistics()
        return int(
            stats["n_bytes_array_containers"]
            + stats["n_bytes_run_containers"]
            + stats["n_bytes_bitset_containers"]
        )


def _plausible(n: int) -> bool:
    return bool(10 ** (E164_MIN_DIGITS - 1) <= n < 10**E164_MAX_DIGITS)
