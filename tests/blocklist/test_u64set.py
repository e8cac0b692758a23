"""The list's resident layout (blocklist._native.U64Set, C) against Python's set and bisect.

Every answer is compared with the obvious implementation over the same values: membership, rank,
range counts, iteration, min/max, merge, equality; over shapes that take each layout branch
(sparse shards with 32-bit entries, dense shards with a full 16-bit directory and 16-bit entries,
values at shard and bucket edges, the ends of the uint64 range).
"""

from __future__ import annotations

import bisect
import itertools
import operator
import random
from array import array

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blocklist._native import U64Set

U64_MAX = (1 << 64) - 1


def build(values: set[int]) -> tuple[U64Set, list[int]]:
    ordered = sorted(values)
    return U64Set(array("Q", ordered)), ordered


def check_against(u: U64Set, ordered: list[int], probes: list[int]) -> None:
    present = set(ordered)
    assert len(u) == len(ordered)
    assert list(u) == ordered
    assert u.to_array().tolist() == ordered
    for p in probes:
        assert (p in u) == (p in present), p
        assert u.rank(p) == bisect.bisect_left(ordered, p), p
    for a, b in itertools.pairwise(probes):
        expected = max(0, bisect.bisect_left(ordered, b) - bisect.bisect_left(ordered, a))
        assert u.range_cardinality(a, b) == expected, (a, b)
    if ordered:
        assert u.min() == ordered[0] and u.max() == ordered[-1]


def probes_for(ordered: list[int], rng: random.Random) -> list[int]:
    out = [0, 1, U64_MAX, U64_MAX - 1, 1 << 32, (1 << 32) - 1, 1 << 48]
    for v in ordered[:: max(1, len(ordered) // 500)]:
        out += [v, v - 1 if v else 0, v + 1 if v < U64_MAX else v, v ^ 0xFFFF, v & ~0xFFFF]
    out += [rng.randrange(U64_MAX) for _ in range(200)]
    return out


values_strategy = st.sets(
    st.one_of(
        st.integers(0, U64_MAX),
        st.integers(447700900000, 447700900999),  # clustered: many in one bucket
        st.integers((1 << 32) - 3, (1 << 32) + 3),  # a shard edge
        st.integers(0, 70000),  # the first shard's buckets
    ),
    max_size=300,
)


@given(values_strategy, st.lists(st.integers(0, U64_MAX), max_size=50))
@settings(max_examples=300, deadline=None)
def test_matches_a_python_set(values: set[int], extra: list[int]) -> None:
    u, ordered = build(values)
    check_against(u, ordered, probes_for(ordered, random.Random(len(values))) + extra)


@pytest.mark.parametrize("count", [1, 2, 3, 100, 70_000, 140_000, 300_000])
def test_dense_and_sparse_shards(count: int) -> None:
    # UK-like numbers in one country code span a few shards; 140k+ in one shard takes the full
    # 16-bit directory with 16-bit entries, fewer take a smaller directory with 32-bit entries.
    rng = random.Random(count)
    values = set(rng.sample(range(447000000000, 447000000000 + (1 << 33)), count))
    values |= {441632960000 + i for i in range(1000)}  # a run of consecutive numbers
    u, ordered = build(values)
    check_against(u, ordered, probes_for(ordered, rng))
    assert u.nbytes > 0 and u.shards >= 2


def test_empty_and_errors() -> None:
    empty = U64Set()
    assert len(empty) == 0 and list(empty) == [] and 5 not in empty
    assert empty.range_cardinality(0, U64_MAX) == 0 and empty.rank(7) == 0
    assert U64Set(array("Q")) == empty
    with pytest.raises(ValueError, match="min"):
        empty.min()
    with pytest.raises(ValueError, match="max"):
        empty.max()
    with pytest.raises(ValueError, match="strictly ascending: entry 2"):
        U64Set(array("Q", [1, 2, 2]))
    with pytest.raises(ValueError, match="strictly ascending: entry 1"):
        U64Set(array("Q", [5, 4]))
    with pytest.raises(TypeError, match="unsigned 64-bit"):
        U64Set(array("i", [1, 2]))
    with pytest.raises(TypeError, match="bounds must be int"):
        empty.range_cardinality("0", 5)  # type: ignore[arg-type]
    u = U64Set(array("Q", [10, 20]))
    for outside in (-1, -(1 << 80), 1 << 64, 1 << 100, "10", 10.0, None):
        assert outside not in u
    assert u.range_cardinality(-(1 << 80), 1 << 80) == 2
    assert u.range_cardinality(20, 10) == 0
    assert repr(u) == "U64Set(len=2)"  # never the values (invariant 4)
    with pytest.raises(TypeError):
        hash(u)


@given(values_strategy, values_strategy, values_strategy)
@settings(max_examples=200, deadline=None)
def test_merged_is_union_then_difference(base: set[int], adds: set[int], removes: set[int]) -> None:
    u, _ = build(base)
    merged = u.merged(array("Q", sorted(adds)), array("Q", sorted(removes)))
    expected = sorted((base | adds) - removes)
    assert list(merged) == expected
    assert merged == build((base | adds) - removes)[0]
    assert list(u) == sorted(base)  # the original is untouched


def test_merged_refuses_unsorted_changes() -> None:
    u, _ = build({1, 2, 3})
    with pytest.raises(ValueError, match="adds must be strictly ascending"):
        u.merged(array("Q", [9, 8]), array("Q"))
    with pytest.raises(ValueError, match="removes must be strictly ascending"):
        u.merged(array("Q"), array("Q", [2, 2]))
    assert list(u) == [1, 2, 3]


def test_equality() -> None:
    a, _ = build({1, 2, 1 << 40})
    b, _ = build({1, 2, 1 << 40})
    c, _ = build({1, 3, 1 << 40})
    # Both operators, each way: __eq__ and __ne__ are one C function with an operator switch.
    assert operator.eq(a, b) and not operator.ne(a, b)
    assert operator.ne(a, c) and not operator.eq(a, c)
    assert not operator.eq(a, {1, 2, 1 << 40})  # no cross-type equality
