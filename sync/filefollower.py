"""Follow a snapshot file instead of the hub: the embedded default for a single site.

The file is replaced atomically by its writer (`upcs blocklist build` and `write_snapshot` write a
temporary file and rename it), so a change shows as a new inode, size or mtime. On a change the
whole file is read and verified off the event loop; a good file is swapped in at once, a bad one
is refused whole and the old list stays (the fault is logged and shown in `status()`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from blocklist import ListHolder, SnapshotFileError, read_snapshot
from sync.status import FollowerStatus

__all__ = ["DEFAULT_POLL_INTERVAL_S", "SnapshotFileFollower"]

log = logging.getLogger("upcs.sync.file")

DEFAULT_POLL_INTERVAL_S = 1.0  # a stat() a second is free; an operator's new file is live in 1 s

_Identity = tuple[int, int, int, int]  # (device, inode, size, mtime in ns)


class SnapshotFileFollower:
    """Reload `path` into `holder` whenever the file changes; keep the old list if it is bad."""

    def __init__(
        self,
        path: Path,
        holder: ListHolder,
        poll_interval_s: float = DEFAULT_POLL_INTERVAL_S,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if poll_interval_s <= 0:
            raise ValueError("poll_interval_s must be positive")
        self._path = Path(path)
        self._holder = holder
        self._poll_s = poll_interval_s
        self._clock = clock
        self._seen: _Identity | None = None
        self._reloads = 0
        self._last_sync_unix: float | None = None
        self._last_error: str | None = None
        self._healthy = False

    def status(self) -> FollowerStatus:
        current = self._holder.current
        return FollowerStatus(
            applied_version=current.version,
            entries=len(current),
            checksum=current.checksum,
            hub_version=None,
            lag_versions=None,
            lag_seconds=None,
            reconnects=0,
            resyncs=self._reloads,
            last_sync_unix=self._last_sync_unix,
            connected=self._healthy,
            last_error=self._last_error,
        )

    async def run(self) -> None:
        """Poll until cancelled."""
        while True:
            await self.poll()
            await asyncio.sleep(self._poll_s)

    async def poll(self) -> bool:
        """Check the file once; reload it if it changed. True if a new list was swapped in."""
        try:
            st = os.stat(self._path)
        except OSError as exc:
            self._fault(f"{self._path}: cannot stat ({exc.strerror})")
            return False
        identity = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        if identity == self._seen:
            if self._healthy:
                self._last_sync_unix = self._clock()
            return False
        self._seen = identity
        try:
            snap = await asyncio.to_thread(read_snapshot, self._path)
        except SnapshotFileError as exc:
            self._fault(f"{exc}; keeping list version {self._holder.current.version}")
            return False
        self._healthy = True
        self._last_error = None
        self._last_sync_unix = self._clock()
        current = self._holder.current
        if snap.version == current.version and snap.checksum == current.checksum:
            return False
        if snap.version < current.version:
            log.warning(
                "sync.file_version_went_back path=%s from=%d to=%d",
                self._path,
                current.version,
                snap.version,
            )
        self._holder.swap(snap)
        self._reloads += 1
        log.info(
            "sync.file_reloaded path=%s version=%d entries=%d", self._path, snap.version, len(snap)
        )
        return True

    def _fault(self, message: str) -> None:
        if message != self._last_error:
            log.error("sync.file_bad %s", message)
        self._healthy = False
        self._last_error = message
