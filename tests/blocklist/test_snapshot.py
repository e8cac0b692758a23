"""The immutable list snapshot, the single-writer holder, and the dial plan."""

from __future__ import annotations

import dataclasses

import pytest
from pyroaring import BitMap64, FrozenBitMap64

from blocklist import (
    DialPlan,
    DialPlanError,
    ListHolder,
    ListSnapshot,
    SnapshotError,
    e164_to_int,
    int_to_e164,
)

A, B, C = 447700900001, 447700900002, 442079460000


def test_e164_conversion_is_strict() -> None:
    assert e164_to_int("+447700900001") == A
    assert int_to_e164(A) == "+447700900001"
    for bad in ("447700900001", "+0447700900001", "+44770090000123456", "+44 7700", "+١٢٣٤٥٦٧", ""):
        with pytest.raises(SnapshotError):
            e164_to_int(bad)
    assert e164_to_int("+989601") == 989601  # the shortest possible numbers are 6 digits


def test_snapshot_is_immutable() -> None:
    snap = ListSnapshot.from_numbers([A, B], 1)
    assert isinstance(snap.bitmap, FrozenBitMap64)
    with pytest.raises(dataclasses.FrozenInstanceError):
        snap.version = 2
    with pytest.raises(AttributeError):
        snap.bitmap.add(C)  # type: ignore[attr-defined]
    assert A in snap and C not in snap and "x" not in snap
    assert len(snap) == 2
    assert sorted(snap) == [A, B]


def test_with_changes_builds_a_new_snapshot_and_leaves_the_old_one() -> None:
    old = ListSnapshot.from_numbers([A, B], 1)
    new = old.with_changes(adds=[C], removes=[A], version=2)
    assert sorted(old) == [A, B] and old.version == 1
    assert sorted(new) == sorted([B, C]) and new.version == 2
    assert new.checksum != old.checksum
    # removing what is not there and adding what is there are no-ops, not errors
    same = new.with_changes(adds=[B], removes=[A], version=3)
    assert sorted(same) == sorted(new) and same.checksum == new.checksum


def test_with_changes_refuses_a_version_that_does_not_follow() -> None:
    snap = ListSnapshot.from_numbers([A], 5)
    for version in (5, 4, 0):
        with pytest.raises(SnapshotError, match="does not follow"):
            snap.with_changes([B], [], version)


def test_empty_lists_build_from_any_constructor() -> None:
    for snap in (
        ListSnapshot.from_numbers([], 3),
        ListSnapshot.from_e164([], 3),
        ListSnapshot.from_numbers([A], 2).with_changes([], [A], 3),
    ):
        assert len(snap) == 0 and snap.version == 3
        assert snap.checksum == ListSnapshot.empty().checksum


def test_implausible_entries_are_refused() -> None:
    for bad in (12345, 10**15, 0):
        with pytest.raises(SnapshotError):
            ListSnapshot.from_numbers([A, bad], 1)
        with pytest.raises(SnapshotError):
            ListSnapshot.from_numbers([A], 1).with_changes([bad], [], 2)
    with pytest.raises(SnapshotError):
        ListSnapshot.from_numbers([A], -1)


def test_checksum_is_over_content_not_layout() -> None:
    one = ListSnapshot.from_numbers([A, B, C], 1)
    other = ListSnapshot(FrozenBitMap64(BitMap64([C, B, A])), 9)
    assert one.checksum == other.checksum
    assert len(one.checksum) == 32
    assert ListSnapshot.empty().checksum != one.checksum


def test_lengths_present_are_tracked() -> None:
    snap = ListSnapshot.from_numbers([A, 33123456789], 1)
    assert snap.lengths == frozenset({11, 12})
    assert ListSnapshot.empty().lengths == frozenset()


def test_holder_swap_is_seen_at_once_and_tells_listeners() -> None:
    first = ListSnapshot.from_numbers([A], 1)
    holder = ListHolder(first)
    seen: list[int] = []
    holder.on_swap(lambda snap: seen.append(snap.version))
    reader_view = holder.current
    second = first.with_changes([B], [], 2)
    holder.swap(second)
    assert holder.current is second
    assert seen == [2]
    # a reader that took the old snapshot keeps a complete, unchanged one
    assert sorted(reader_view) == [A] and reader_view.version == 1


def test_dial_plan_validation() -> None:
    plan = DialPlan()
    assert (plan.country_code, plan.trunk_prefix, plan.international_prefix) == ("44", "0", "00")
    assert plan.dial_prefixes == ("9", "141", "1470", "18001", "18002")
    assert DialPlan(outside_line="").dial_prefixes == ("141", "1470", "18001", "18002")
    assert DialPlan(country="us").country == "US"
    for kwargs, message in [
        ({"country": "XX"}, "country"),
        ({"area_code": "020"}, "without the trunk 0"),
        ({"area_code": "2O"}, "area_code"),
        ({"outside_line": "９"}, "outside_line"),
    ]:
        with pytest.raises(DialPlanError, match=message):
            DialPlan(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(DialPlanError, match="unknown key"):
        DialPlan.from_section({"country": "GB", "areacode": "20"})
    with pytest.raises(DialPlanError, match="must be a string"):
        DialPlan.from_section({"area_code": 20})
    assert DialPlan.from_section({"never_block_extra": ["0113 496 0000"]}).never_block_extra == (
        "0113 496 0000",
    )


def test_resident_layout_is_the_compact_set_and_roaring_is_not_kept() -> None:
    # The list is held as a U64Set; roaring is built on demand for files and the sync wire and
    # never cached on the snapshot (it would double what each gateway keeps resident).
    from blocklist._native import U64Set

    snap = ListSnapshot.from_numbers([C, A, B, A], 3)
    assert isinstance(snap.base, U64Set) and snap.entries is snap.base
    first, second = snap.bitmap, snap.bitmap
    assert first is not second and first == second == FrozenBitMap64([A, B, C])
    assert list(snap) == sorted([A, B, C])
    assert snap.resident_bytes() == snap.base.nbytes > 0
    # Built from roaring (a file, the sync wire) or from the set: the same list, same checksum.
    again = ListSnapshot(FrozenBitMap64([A, B, C]), 3)
    assert isinstance(again.base, U64Set) and again.checksum == snap.checksum
