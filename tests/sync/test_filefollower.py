"""The snapshot-file follower (no Redis): atomic reloads, bad files refused whole."""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

from pyroaring import FrozenBitMap64

from blocklist import ListHolder, ListSnapshot, write_snapshot
from sync import SnapshotFileFollower
from tests.sync.helpers import wait_for

BASE = 447700900000


def snap(values: list[int], version: int) -> ListSnapshot:
    return ListSnapshot(FrozenBitMap64([BASE + v for v in values]), version)


async def test_reload_when_the_file_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "list.snap"
    first = snap([1, 2], 1)
    write_snapshot(path, first)
    holder = ListHolder(first)
    swaps: list[int] = []
    holder.on_swap(lambda s: swaps.append(s.version))
    follower = SnapshotFileFollower(path, holder, poll_interval_s=0.02)
    task = asyncio.create_task(follower.run())
    try:
        await wait_for(lambda: follower.status().connected, what="first poll")
        assert swaps == []  # the same list is not swapped again
        write_snapshot(path, snap([1, 2, 3], 2))
        await wait_for(lambda: holder.current.version == 2, what="reload")
        assert set(holder.current) == {BASE + 1, BASE + 2, BASE + 3}
        st = follower.status()
        assert st.resyncs == 1 and st.last_error is None and st.last_sync_unix is not None
        assert st.hub_version is None and st.lag_versions is None
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_bad_file_keeps_the_old_list_and_says_so(tmp_path: Path) -> None:
    path = tmp_path / "list.snap"
    good = snap([5], 3)
    write_snapshot(path, good)
    holder = ListHolder(ListSnapshot.empty())
    follower = SnapshotFileFollower(path, holder, poll_interval_s=0.02)
    assert await follower.poll() is True and holder.current.version == 3
    # A truncated file (a copy cut short), written in place: refused whole.
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert await follower.poll() is False
    st = follower.status()
    assert st.applied_version == 3 and not st.connected
    assert st.last_error is not None and "truncated" in st.last_error
    assert "keeping list version 3" in st.last_error
    synced_before = st.last_sync_unix
    await follower.poll()  # still bad: last_sync_unix does not advance (readiness goes stale)
    assert follower.status().last_sync_unix == synced_before
    # Fixed: the new file is taken.
    write_snapshot(path, snap([5, 6], 4))
    assert await follower.poll() is True
    assert follower.status().connected and follower.status().last_error is None
    assert holder.current.version == 4


async def test_missing_file_is_a_fault_not_a_crash(tmp_path: Path) -> None:
    holder = ListHolder(snap([1], 1))
    follower = SnapshotFileFollower(tmp_path / "absent.snap", holder, poll_interval_s=0.02)
    assert await follower.poll() is False
    st = follower.status()
    assert not st.connected and st.last_error is not None and "cannot stat" in st.last_error
    assert st.applied_version == 1


async def test_same_size_and_mtime_but_new_inode_is_noticed(tmp_path: Path) -> None:
    path = tmp_path / "list.snap"
    a, b = snap([1], 1), snap([2], 2)  # same entry count: same file size
    write_snapshot(path, a)
    holder = ListHolder(ListSnapshot.empty())
    follower = SnapshotFileFollower(path, holder, poll_interval_s=0.02)
    await follower.poll()
    stat = path.stat()
    write_snapshot(path, b)  # atomic rename: a new inode
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert await follower.poll() is True and holder.current.version == 2
