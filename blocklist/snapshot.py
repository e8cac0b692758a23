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
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

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


@dataclass(frozen=True, eq=False, slots=True)
class ListSnapshot:
    """One version of the national list. Immutable; build new ones with `with_changes`."""

    bitmap: FrozenBitMap64
    version: int
    checksum: str = field(default="")
    lengths: frozenset[int] = field(default=frozenset())

    def __post_init__(self) -> None:
        if self.version < 0:
            raise SnapshotError(f"list version {self.version} is negative")
        if not self.checksum:
            object.__setattr__(self, "checksum", _checksum(self.bitmap))
        if not self.lengths:
            object.__setattr__(self, "lengths", _lengths(self.bitmap))

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
        return isinstance(number, int) and bool(number in self.bitmap)

    def __len__(self) -> int:
        return len(self.bitmap)

    def __iter__(self) -> Iterator[int]:
        return iter(self.bitmap)

    def with_changes(
        self, adds: Iterable[int], removes: Iterable[int], version: int
    ) -> ListSnapshot:
        """A new snapshot at `version` with `adds` barred and `removes` lifted.

        A number both added and removed in one batch ends up removed only if the remove is
        applied after it: callers with ordered changes apply them one batch per order.
        """
        if version <= self.version:
            raise SnapshotError(
                f"version {version} does not follow the list's version {self.version}"
            )
        add_set = BitMap64(adds)
        if add_set and not (_plausible(add_set.min()) and _plausible(add_set.max())):
            raise SnapshotError(f"an added entry is not a {_DIGITS_RANGE} digit E.164 number")
        bitmap = BitMap64(self.bitmap)
        bitmap |= add_set
        bitmap -= BitMap64(removes)
        bitmap.run_optimize()
        return ListSnapshot(FrozenBitMap64(bitmap), version)

    def resident_bytes(self) -> int:
        """Bytes roaring keeps for the entries (its own statistics; excludes Python headers)."""
        stats = self.bitmap.get_statistics()
        return int(
            stats["n_bytes_array_containers"]
            + stats["n_bytes_run_containers"]
            + stats["n_bytes_bitset_containers"]
        )


def _plausible(n: int) -> bool:
    return bool(10 ** (E164_MIN_DIGITS - 1) <= n < 10**E164_MAX_DIGITS)
