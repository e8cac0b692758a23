"""Type stub for the C extension blocklist._native (blocklist/_native.c)."""

from array import array
from collections.abc import Iterator
from typing import Any

class U64Set:
    """An immutable compact set of unsigned 64-bit integers, built from strictly ascending
    values (ValueError otherwise)."""

    def __new__(cls, values: array[int] | memoryview = ...) -> U64Set: ...
    def __contains__(self, value: object) -> bool: ...
    def __len__(self) -> int: ...
    def __iter__(self) -> Iterator[int]: ...
    def range_cardinality(self, start: int, end: int) -> int: ...
    def rank(self, value: int) -> int: ...
    def to_array(self) -> array[int]: ...
    def merged(self, adds: array[int], removes: array[int]) -> U64Set: ...
    def min(self) -> int: ...
    def max(self) -> int: ...
    @property
    def nbytes(self) -> int: ...
    @property
    def shards(self) -> int: ...

class FastPath:
    """`Screener.check`'s fast path over one snapshot's tables (see blocklist/_native.c)."""

    def __new__(
        cls,
        *,
        cc: str,
        trunk: str,
        intl: str,
        outside_line: str,
        outside_trunk: str,
        prefixes: tuple[str, ...],
        max_variants: int,
        separators: str,
        never_long: int,
        max_dial: int,
        min_total: int,
        totals: tuple[int, ...],
        base: object,
        added: frozenset[int],
        removed: frozenset[int],
        never_ints: frozenset[int],
        never_listed: bool,
        trunk_listed: bool,
        guesses: dict[str, Any],
        no_guesses: object,
        guess_digits: int,
        allowed: object,
        result_type: type,
        blocked: object,
    ) -> FastPath: ...
    def check(self, dialled: str) -> Any: ...
