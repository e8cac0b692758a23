"""A follower in its own process, for the chaos test and the benchmark (so kill -9 is real).

    python tests/sync/follower_proc.py URL SITE SNAPSHOT_PATH KEY_PREFIX

Starts from SNAPSHOT_PATH if it exists; SIGTERM cancels the follower (persist, close, exit 0).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from pathlib import Path

from blocklist import ListHolder, ListSnapshot, SnapshotFileError, read_snapshot
from sync import Backoff, FollowerConfig, RedisFollower, SyncConfig


async def main(url: str, site: str, path: Path, prefix: str) -> None:
    start = ListSnapshot.empty()
    with contextlib.suppress(SnapshotFileError):
        start = read_snapshot(path)
    config = FollowerConfig(
        sync=SyncConfig(key_prefix=prefix),
        block_s=0.5,
        report_interval_s=0.1,
        persist_interval_s=0.5,
        backoff=Backoff(initial_s=0.02, cap_s=0.2),
    )
    follower = RedisFollower(url, site, ListHolder(start), path, config)
    task = asyncio.create_task(follower.run())
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], Path(sys.argv[3]), sys.argv[4]))
