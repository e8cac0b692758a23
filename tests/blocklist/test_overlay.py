"""Snapshots with an overlay (`ListSnapshot.apply`): the same list as a compact copy in every
respect a reader or a follower can observe, and screened exactly alike. Ofcom drama numbers only.
"""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blocklist import CheckResult, DialPlan, ListHolder, ListSnapshot, Screener, Verdict
from blocklist.snapshot import OVERLAY_MAX_ENTRIES, SnapshotError

MOBILES = 447700900000  # +44 7700 900000-900999
LONDON = 442079460000  # +44 20 7946 0000-0999
LEEDS = 441134960000  # +44 113 496 0000-0999 (12 digits)
SHORT = 44163296000  # +44 1632 96000x: 11 digits, so lengths change as these come and go


def compact(numbers: set[int], version: int) -> ListSnapshot:
    return ListSnapshot.from_numbers(sorted(numbers), version)


def assert_same_list(snap: ListSnapshot, expected: set[int], probes: set[int]) -> None:
    ref = compact(expected, snap.version)
    assert len(snap) == len(expected)
    assert list(snap) == sorted(expected)
    assert snap.lengths == ref.lengths  # exact: screening skips no length it needs
    for n in probes:
        assert (n in snap) == (n in expected), n
    assert snap.checksum == ref.checksum


def test_small_changes_become_an_overlay_on_the_same_base() -> None:
    base = ListSnapshot.from_numbers([MOBILES + 1, MOBILES + 2], 1)
    nxt = base.apply([MOBILES + 3], [MOBILES + 1], 2)
    assert nxt.base is base.base  # no copy of the list
    assert nxt.added == {MOBILES + 3} and nxt.removed == {MOBILES + 1}
    assert not nxt.checksum_known  # hashed only when asked
    assert_same_list(nxt, {MOBILES + 2, MOBILES + 3}, {MOBILES + n for n in range(5)})
    assert nxt.checksum_known
    assert "+44" not in repr(nxt) and str(MOBILES + 2) not in repr(nxt)


def test_lift_then_bar_again_and_bar_then_lift() -> None:
    base = ListSnapshot.from_numbers([MOBILES + 1], 1)
    lifted = base.apply([], [MOBILES + 1], 2)
    assert MOBILES + 1 not in lifted and len(lifted) == 0 and lifted.lengths == frozenset()
    again = lifted.apply([MOBILES + 1], [], 3)
    assert MOBILES + 1 in again and again.removed == frozenset() and again.added == frozenset()
    assert again.lengths == frozenset({12})
    barred = again.apply([LONDON + 5], [], 4)
    gone = barred.apply([], [LONDON + 5], 5)
    assert_same_list(gone, {MOBILES + 1}, {MOBILES + 1, LONDON + 5})


def test_a_lifted_short_number_that_returns_keeps_its_length() -> None:
    # The only 11-digit entry lifted and barred again: its length must come back, or screening
    # would skip 11-digit candidates and let the number through.
    base = ListSnapshot.from_numbers([SHORT + 1, MOBILES + 1], 1)
    lifted = base.apply([], [SHORT + 1], 2)
    assert lifted.lengths == frozenset({12})
    again = lifted.apply([SHORT + 1], [], 3)
    assert again.lengths == frozenset({11, 12})
    s = Screener(DialPlan(), ListHolder(again))
    assert s.check("01632 96001").matched_e164 == f"+{SHORT + 1}"


def test_the_overlay_is_folded_into_a_new_base_when_it_grows() -> None:
    snap = ListSnapshot.from_numbers([LONDON + n for n in range(100)], 1)
    expected = {LONDON + n for n in range(100)}
    for i in range(OVERLAY_MAX_ENTRIES + 1):
        snap = snap.apply([MOBILES + i], [], snap.version + 1)
        expected.add(MOBILES + i)
    assert not snap.added and not snap.removed  # compact again
    assert_same_list(snap, expected, expected | {MOBILES + 999})


def test_apply_refuses_what_with_changes_refuses() -> None:
    snap = ListSnapshot.from_numbers([MOBILES + 1], 3)
    with pytest.raises(SnapshotError, match="does not follow"):
        snap.apply([MOBILES + 2], [], 3)
    with pytest.raises(SnapshotError, match=r"E\.164"):
        snap.apply([12345], [], 4)


def test_overlay_snapshot_is_immutable() -> None:
    snap = ListSnapshot.from_numbers([MOBILES + 1], 1).apply([MOBILES + 2], [], 2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        snap.version = 3
    with pytest.raises(AttributeError):
        snap.added.add(MOBILES + 3)  # type: ignore[attr-defined]


_numbers = st.sampled_from(
    [MOBILES + n for n in range(0, 40)] + [SHORT + n for n in range(4)] + [LEEDS + 7]
)
_batches = st.lists(
    st.tuples(st.sets(_numbers, max_size=6), st.sets(_numbers, max_size=6)), max_size=25
)


def apply_all(
    initial: set[int], batches: list[tuple[set[int], set[int]]], check_each: bool = False
) -> tuple[ListSnapshot, set[int], set[int]]:
    """(the overlaid snapshot, the numbers it must hold, every number touched)."""
    snap = ListSnapshot.from_numbers(sorted(initial), 1)
    expected = set(initial)
    touched = set(initial)
    for adds, wanted_removes in batches:
        removes = wanted_removes - adds  # one final operation per number, as fold gives
        snap = snap.apply(sorted(adds), sorted(removes), snap.version + 1)
        expected = (expected | adds) - removes
        touched |= adds | removes
        if check_each:
            assert len(snap) == len(expected)
            assert snap.lengths == compact(expected, 1).lengths
    return snap, expected, touched


@settings(max_examples=150, deadline=None)
@given(initial=st.sets(_numbers, max_size=20), batches=_batches)
def test_any_sequence_of_batches_equals_the_compact_list(
    initial: set[int], batches: list[tuple[set[int], set[int]]]
) -> None:
    snap, expected, touched = apply_all(initial, batches, check_each=True)
    assert_same_list(snap, expected, touched)


# Dial forms of the number `n` (E.164 digits "44..."), for a London site with outside line 9:
# fast paths, the prefix path, the general path and the parser.
def _forms(n: int) -> list[str]:
    d = str(n)
    return [
        "0" + d[2:],
        "+" + d,
        "00" + d,
        "9 0" + d[2:],
        "141 0" + d[2:],
        "9 141 0" + d[2:],
        f"0{d[2:6]} {d[6:]}",
        f"+44 (0){d[2:6]} {d[6:]}",
        d,
        "0" + d[2:] + "5",  # overdialled
    ]


@settings(max_examples=60, deadline=None)
@given(initial=st.sets(_numbers, max_size=12), batches=_batches)
def test_screening_an_overlay_agrees_with_the_compact_list(
    initial: set[int], batches: list[tuple[set[int], set[int]]]
) -> None:
    snap, expected, touched = apply_all(initial, batches)
    layered = Screener(DialPlan(), ListHolder(snap))
    reference = Screener(DialPlan(), ListHolder(compact(expected, snap.version)))
    for n in touched | {MOBILES + 999}:
        for dialled in _forms(n):
            assert layered.check(dialled) == reference.check(dialled), dialled
        assert layered.check("0" + str(n)[2:]).verdict is (
            Verdict.BLOCKED if n in expected else Verdict.ALLOWED
        )


def test_a_never_block_number_in_an_overlay_never_blocks() -> None:
    # Intake refuses Childline, but a list that carries it must still let it through.
    childline = 448001111
    s = Screener(DialPlan(), ListHolder(ListSnapshot.empty().apply([childline], [], 1)))
    for dialled in ("0800 1111", "08001111", "+448001111", "0800 11112"):
        assert s.check(dialled) == CheckResult(Verdict.ALLOWED), dialled


@settings(max_examples=150, deadline=None)
@given(initial=st.sets(_numbers, max_size=20), batches=_batches, fold_past=st.integers(0, 8))
def test_folding_the_overlay_keeps_every_operation(
    initial: set[int], batches: list[tuple[set[int], set[int]]], fold_past: int
) -> None:
    # A small OVERLAY_MAX_ENTRIES folds the overlay into a new base every few batches, so the
    # fold itself meets every state: numbers lifted then barred again, barred then lifted, and
    # (outside the disjoint contract) one batch adding and removing the same number, where the
    # remove wins in the overlay and must win in the fold too.
    import blocklist.snapshot as snapshot_module

    original = snapshot_module.OVERLAY_MAX_ENTRIES
    snapshot_module.OVERLAY_MAX_ENTRIES = fold_past
    try:
        snap = ListSnapshot.from_numbers(sorted(initial), 1)
        expected = set(initial)
        for adds, removes in batches:
            snap = snap.apply(sorted(adds), sorted(removes), snap.version + 1)
            expected = (expected | adds) - removes
            assert set(snap) == expected
            assert len(snap) == len(expected)
    finally:
        snapshot_module.OVERLAY_MAX_ENTRIES = original
