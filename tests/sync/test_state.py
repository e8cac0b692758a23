"""The sync state machine without any I/O: snapshots, deltas, gaps, duplicates, reordering."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyroaring import FrozenBitMap64

from blocklist import ListSnapshot
from sync.state import Gap, HubBehindError, SyncMachine, fold
from sync.wire import LogEntry

BASE = 447700900000  # Ofcom drama mobiles +44 7700 900000-900999


def add(version: int, n: int, checksum: str | None = None) -> LogEntry:
    return LogEntry(version, "add", BASE + n, checksum=checksum)


def rm(version: int, n: int, checksum: str | None = None) -> LogEntry:
    return LogEntry(version, "remove", BASE + n, checksum=checksum)


def snap(values: list[int], version: int) -> ListSnapshot:
    # from_numbers([]) trips over an empty bitmap's min() (reported to the lead); build directly.
    return ListSnapshot(FrozenBitMap64(values), version)


def numbers(snap: ListSnapshot) -> set[int]:
    return {n - BASE for n in snap}


def test_contiguous_batch_becomes_one_snapshot() -> None:
    m = SyncMachine(ListSnapshot.empty())
    step = m.receive([add(1, 1), add(2, 2), rm(3, 1)])
    assert step.snapshot is m.current
    assert step.applied == 3 and step.gap is None and step.duplicates == 0
    assert m.version == 3 and numbers(m.current) == {2}


def test_duplicates_are_ignored_and_counted() -> None:
    m = SyncMachine(ListSnapshot.empty())
    m.receive([add(1, 1), add(2, 2)])
    before = m.current
    step = m.receive([add(1, 1), add(2, 2), add(2, 2)])
    assert step.snapshot is None and step.duplicates == 3 and step.applied == 0
    assert m.current is before


def test_duplicate_within_one_batch_counted_once_applied_once() -> None:
    m = SyncMachine(ListSnapshot.empty())
    step = m.receive([add(1, 1), add(1, 1), add(2, 2)])
    assert step.applied == 2 and step.duplicates == 1 and m.version == 2


def test_reordered_batch_is_sorted_by_version() -> None:
    m = SyncMachine(ListSnapshot.empty())
    step = m.receive([rm(3, 1), add(1, 1), add(2, 2)])
    assert step.applied == 3 and numbers(m.current) == {2}


def test_order_matters_for_same_number() -> None:
    m = SyncMachine(ListSnapshot.empty())
    m.receive([add(1, 5), rm(2, 5), add(3, 5)])
    assert numbers(m.current) == {5}
    m.receive([rm(4, 5)])
    assert numbers(m.current) == set()


def test_version_jump_is_a_gap_and_later_entries_wait() -> None:
    m = SyncMachine(ListSnapshot.empty())
    step = m.receive([add(1, 1), add(4, 4), add(5, 5)])
    assert step.applied == 1 and m.version == 1
    assert step.gap == Gap("version jump: have 1, next is 4", 2)
    assert m.pending == 2
    # The hole fills (a reordering source): everything drains in order, gap gone.
    step = m.receive([add(3, 3), add(2, 2)])
    assert step.applied == 4 and step.gap is None and m.version == 5
    assert numbers(m.current) == {1, 2, 3, 4, 5}


def test_snapshot_fills_a_gap_and_pending_entries_follow() -> None:
    m = SyncMachine(ListSnapshot.empty())
    m.receive([add(1, 1), add(11, 11), add(12, 12)])
    assert m.gap is not None
    hub = snap([BASE + 7], 10)
    step = m.offer_snapshot(hub)
    assert step.gap is None and m.version == 12
    assert numbers(m.current) == {7, 11, 12}


def test_older_or_equal_snapshot_is_ignored() -> None:
    m = SyncMachine(ListSnapshot.empty())
    m.receive([add(1, 1), add(2, 2)])
    current = m.current
    assert m.offer_snapshot(snap([BASE + 9], 2)).snapshot is None
    assert m.offer_snapshot(snap([BASE + 9], 1)).snapshot is None
    assert m.current is current


def test_reset_entry_demands_a_snapshot() -> None:
    m = SyncMachine(ListSnapshot.empty())
    step = m.receive([add(1, 1), LogEntry(2, "reset", 0), add(3, 3)])
    assert step.applied == 1 and m.version == 1
    assert step.gap == Gap("list replaced at version 2", 2)
    step = m.offer_snapshot(snap([BASE + 8], 2))
    assert step.gap is None and m.version == 3 and numbers(m.current) == {8, 3}


def test_checksum_on_last_entry_is_verified() -> None:
    m = SyncMachine(ListSnapshot.empty())
    good = snap([BASE + 1], 1).checksum
    step = m.receive([add(1, 1, checksum=good)])
    assert step.gap is None
    step = m.receive([add(2, 2, checksum="0" * 32)])
    assert step.snapshot is not None  # newest bars are enforced even while the fault stands
    assert step.gap == Gap("checksum mismatch at version 2", 2)
    # The fault stays until a hub rebuild, even if later entries look fine.
    m.receive([add(3, 3)])
    assert m.gap is not None and m.gap.reason.startswith("checksum mismatch")


def test_deferred_checksum_waits_for_verify() -> None:
    # A follower applies each change at once and hashes the list later (it costs O(list)).
    m = SyncMachine(ListSnapshot.empty(), defer_checksums=True)
    good = snap([BASE + 1], 1).checksum
    step = m.receive([add(1, 1, checksum=good)])
    assert step.gap is None and m.unverified and not m.current.checksum_known
    assert m.verify() is None and not m.unverified
    step = m.receive([add(2, 2, checksum="0" * 32)])
    assert step.snapshot is not None and BASE + 2 in step.snapshot  # enforced at once
    assert step.gap is None and m.unverified
    m.receive([add(3, 3)])  # no checksum: the pending one stays
    assert m.verify() == Gap("checksum mismatch at version 2", 2)
    assert not m.unverified
    m.receive([add(4, 4)])
    assert m.gap is not None and m.gap.reason.startswith("checksum mismatch")
    assert m.verify() == m.gap  # nothing new to compare: the fault stays


def test_a_newer_snapshot_or_a_rebuild_supersedes_a_pending_checksum() -> None:
    m = SyncMachine(ListSnapshot.empty(), defer_checksums=True)
    m.receive([add(1, 1, checksum="0" * 32)])
    m.offer_snapshot(snap([BASE + 1, BASE + 2], 5))
    assert not m.unverified and m.verify() is None
    m.receive([add(6, 6, checksum="0" * 32)])
    step = m.resync(snap([BASE + 1], 4), [add(5, 5), add(6, 6), add(7, 7)])
    assert step.gap is None and not m.unverified and m.verify() is None


def test_deferred_and_immediate_machines_apply_the_same_lists() -> None:
    entries = [add(v, v % 7) if v % 3 else rm(v, (v * 5) % 7) for v in range(1, 60)]
    lazy = SyncMachine(ListSnapshot.empty(), defer_checksums=True)
    eager = SyncMachine(ListSnapshot.empty())
    for i in range(0, len(entries), 4):
        lazy.receive(entries[i : i + 4])
        eager.receive(entries[i : i + 4])
        assert numbers(lazy.current) == numbers(eager.current)
    assert lazy.current.checksum == eager.current.checksum


def test_resync_rebuilds_aside_and_clears_a_mismatch() -> None:
    m = SyncMachine(snap([BASE + 666], 5))  # diverged: 666 is not the hub's
    m.receive([add(6, 6, checksum="f" * 32)])
    assert m.gap is not None
    hub = snap([BASE + 1], 4)
    tail = [add(5, 5), add(6, 6), add(7, 7)]
    step = m.resync(hub, tail)
    assert step.gap is None and m.version == 7
    assert numbers(m.current) == {1, 5, 6, 7}
    assert step.snapshot is m.current


def test_resync_never_goes_back_in_version() -> None:
    m = SyncMachine(ListSnapshot.empty())
    m.receive([add(1, 1), add(2, 2), add(3, 3)])
    current = m.current
    with pytest.raises(HubBehindError, match="behind the applied version 3"):
        m.resync(snap([], 1), [add(2, 2)])
    assert m.current is current


def test_pending_overflow_is_a_fault() -> None:
    m = SyncMachine(ListSnapshot.empty(), max_pending=3)
    m.receive([add(v, v) for v in range(10, 20)])
    assert m.pending == 3
    assert m.gap is not None and "waiting past a hole" in m.gap.reason
    m.offer_snapshot(snap([], 15))
    assert m.gap is None


def test_fold_keeps_last_operation_per_number() -> None:
    entries = [add(1, 1), rm(2, 1), add(3, 2), rm(4, 3), add(5, 3)]
    adds, removes = fold(entries)
    assert sorted(adds) == [BASE + 2, BASE + 3] and removes == [BASE + 1]


@settings(max_examples=60, deadline=None)
@given(
    ops=st.lists(st.tuples(st.booleans(), st.integers(0, 30)), min_size=1, max_size=60),
    seed=st.integers(0, 2**32),
    cuts=st.lists(st.integers(0, 60), max_size=6),
)
def test_any_batching_and_reordering_matches_one_by_one(
    ops: list[tuple[bool, int]], seed: int, cuts: list[int]
) -> None:
    """Invariant: however the log is cut into batches and shuffled within a batch, with
    duplicates replayed, the end list equals applying each change in version order."""
    entries = [
        LogEntry(v, "add" if is_add else "remove", BASE + n) for v, (is_add, n) in enumerate(ops, 1)
    ]
    expected: set[int] = set()
    for is_add, n in ops:
        (expected.add if is_add else expected.discard)(n)
    rng = random.Random(seed)
    bounds = sorted({0, len(entries), *[c for c in cuts if c < len(entries)]})
    m = SyncMachine(ListSnapshot.empty())
    for lo, hi in itertools.pairwise(bounds):
        batch = entries[lo:hi] + rng.sample(entries[:hi], k=min(2, hi))  # replayed duplicates
        rng.shuffle(batch)
        m.receive(batch)
    assert m.gap is None and m.version == len(entries)
    assert numbers(m.current) == expected
    assert m.current.lengths == ListSnapshot(m.current.bitmap, 1).lengths  # exact, not a guess
    assert m.current.checksum == snap([BASE + n for n in expected], 1).checksum
