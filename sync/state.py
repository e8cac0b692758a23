"""The sync state machine: given the applied list and what arrives from the hub, decide (no I/O).

Everything that decides whether an incoming entry or snapshot is applied lives here:

    entry version <= applied                 duplicate: ignored (counted)
    entry version == applied + 1             applied, in version order, batched into one swap
    entry version >  applied + 1             held as pending; gap reported (need applied + 1)
    entry op "reset" at v                    entries before it applied; gap (need a snapshot >= v)
    last applied entry carries a checksum    compared with the new list's; mismatch -> gap
                                             (with defer_checksums: kept, compared by verify())
    snapshot offered, version > applied      replaces the list, then pending entries are drained
    snapshot offered, version <= applied     ignored unless a gap forces a rebuild (`resync`)
    resync(snapshot, tail)                   built aside; taken only if it ends >= applied, so a
                                             reader never sees an older list (no bar undone)

Entries within a batch may arrive in any order; they are sorted by version. A batch becomes ONE new
immutable snapshot: readers see the list before or after it, never a half-applied batch. The
adapter swaps `Step.snapshot` into the `ListHolder` and, on `Step.gap`, fetches the hub snapshot.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from blocklist import ListSnapshot, SnapshotError
from sync.wire import LogEntry

__all__ = [
    "MAX_PENDING_ENTRIES",
    "Gap",
    "HubBehindError",
    "Step",
    "SyncMachine",
    "apply_entries",
    "fold",
]

# Entries held past a hole, waiting for the hole to fill. A Redis stream never reorders, so a hole
# there means trimmed or lost entries and the adapter resyncs at once; the bound only stops a
# misbehaving source from growing memory without limit (10k entries ~ 2 MB of Python objects).
MAX_PENDING_ENTRIES = 10_000


class HubBehindError(RuntimeError):
    """The hub offers a list older than the one applied here: it lost changes we already have."""


@dataclass(frozen=True, slots=True)
class Gap:
    """Why the applied list cannot be continued from the log alone."""

    reason: str
    need_version: int  # a hub snapshot at or beyond this version fixes it


@dataclass(frozen=True, slots=True)
class Step:
    """The outcome of one input: a new snapshot to swap in (or None), and what was seen."""

    snapshot: ListSnapshot | None
    applied: int = 0
    duplicates: int = 0
    gap: Gap | None = None
    last_ts: float | None = None  # hub publish time of the last applied entry


def fold(entries: Iterable[LogEntry]) -> tuple[list[int], list[int]]:
    """Ordered add/remove entries -> (adds, removes) with the same effect applied at once.

    A number's final membership depends only on its last operation, so keep that one.
    """
    last: dict[int, bool] = {}
    for entry in entries:
        last[entry.number] = entry.op == "add"
    adds = [n for n, present in last.items() if present]
    removes = [n for n, present in last.items() if not present]
    return adds, removes


def apply_entries(base: ListSnapshot, run: Sequence[LogEntry]) -> ListSnapshot:
    """`base` with the contiguous `run` applied, as a new snapshot at the run's last version.

    A short run becomes an overlay on `base` (O(run), whatever the list's size), a long one a
    compact copy: `ListSnapshot.apply`. Entries were validated as E.164 when decoded
    (`sync.wire`), so no entry here can be implausible.
    """
    version = run[-1].version
    if version <= base.version:
        raise SnapshotError(f"version {version} does not follow the list's version {base.version}")
    adds, removes = fold(run)
    return base.apply(adds, removes, version)


class SyncMachine:
    """The applied list plus entries held past a hole. Single-threaded; no clock, no I/O."""

    def __init__(
        self,
        snapshot: ListSnapshot,
        max_pending: int = MAX_PENDING_ENTRIES,
        *,
        defer_checksums: bool = False,
    ) -> None:
        self._current = snapshot
        self._pending: dict[int, LogEntry] = {}
        self._max_pending = max_pending
        # A fault only a hub snapshot fixes (checksum mismatch, overflow); holes are derived.
        self._fault: Gap | None = None
        # With defer_checksums, the newest applied snapshot that came with the hub's checksum
        # for it, waiting for verify(): hashing the list is O(list), applying a change is not.
        self._defer = defer_checksums
        self._expected: tuple[ListSnapshot, str] | None = None

    @property
    def current(self) -> ListSnapshot:
        return self._current

    @property
    def version(self) -> int:
        return self._current.version

    @property
    def pending(self) -> int:
        return len(self._pending)

    @property
    def unverified(self) -> bool:
        """Whether a hub checksum is waiting for verify() (only with defer_checksums)."""
        return self._expected is not None

    def verify(self) -> Gap | None:
        """Compare the newest snapshot that came with a hub checksum against it; a mismatch is a
        fault only a hub snapshot fixes. O(list): adapters run it off the hot path. Returns the
        machine's gap afterwards."""
        expected, self._expected = self._expected, None
        if expected is not None:
            snapshot, checksum = expected
            if snapshot.checksum != checksum:
                version = snapshot.version
                self._fault = Gap(f"checksum mismatch at version {version}", version)
        return self.gap

    @property
    def gap(self) -> Gap | None:
        if self._fault is not None:
            return self._fault
        if not self._pending:
            return None
        first = min(self._pending)
        if first == self.version + 1 and self._pending[first].op == "reset":
            return Gap(f"list replaced at version {first}", first)
        return Gap(f"version jump: have {self.version}, next is {first}", self.version + 1)

    def receive(self, entries: Iterable[LogEntry]) -> Step:
        """Take log entries (any order); apply every contiguous one as one new snapshot."""
        duplicates = 0
        for entry in entries:
            if entry.version <= self._current.version or entry.version in self._pending:
                duplicates += 1
                continue
            if len(self._pending) >= self._max_pending:
                # Drop it: the hole must be filled from a hub snapshot anyway.
                self._fault = Gap(
                    f"more than {self._max_pending} entries waiting past a hole",
                    self._current.version + 1,
                )
                continue
            self._pending[entry.version] = entry
        new, applied, last_ts = self._drain()
        return Step(new, applied, duplicates, self.gap, last_ts)

    def offer_snapshot(self, snapshot: ListSnapshot) -> Step:
        """A hub snapshot: taken if newer than the applied list, then pending entries follow."""
        if snapshot.version <= self._current.version:
            return Step(None, duplicates=1, gap=self.gap)
        self._current = snapshot
        self._fault = None
        self._expected = None  # that list is gone; the new one is checked on its own terms
        self._pending = {v: e for v, e in self._pending.items() if v > snapshot.version}
        new, applied, last_ts = self._drain()
        return Step(new or snapshot, applied, 0, self.gap, last_ts)

    def resync(self, snapshot: ListSnapshot, tail: Iterable[LogEntry]) -> Step:
        """Rebuild from a hub snapshot and the log after it, aside; take it only if not older.

        Used after a gap or a checksum mismatch, when the applied list cannot be continued. The
        rebuilt list replaces the applied one only if its version is at least the applied
        version: otherwise the hub has lost changes applied here, and HubBehindError says so
        (readers never see an older list: no approved bar is silently undone).
        """
        aside = SyncMachine(snapshot, self._max_pending)
        step = aside.receive(tail)
        if aside.version < self._current.version:
            raise HubBehindError(
                f"hub snapshot and log end at version {aside.version}, "
                f"behind the applied version {self._current.version}"
            )
        self._current = aside._current
        self._fault = aside._fault  # the rebuild checked its checksums as it went
        self._expected = None
        kept = {v: e for v, e in self._pending.items() if v > aside.version}
        kept.update(aside._pending)
        self._pending = kept
        new, applied, last_ts = self._drain()
        return Step(
            new or aside._current,
            step.applied + applied,
            step.duplicates,
            self.gap,
            last_ts if last_ts is not None else step.last_ts,
        )

    def _drain(self) -> tuple[ListSnapshot | None, int, float | None]:
        """Apply the contiguous run from applied + 1 as one snapshot; check its checksum."""
        run: list[LogEntry] = []
        nxt = self._current.version + 1
        while nxt in self._pending and self._pending[nxt].op != "reset":
            run.append(self._pending.pop(nxt))
            nxt += 1
        if not run:
            return None, 0, None
        new = apply_entries(self._current, run)
        self._current = new
        last = run[-1]
        if last.checksum is not None:
            if self._defer:
                self._expected = (new, last.checksum)
            elif last.checksum != new.checksum:
                self._fault = Gap(f"checksum mismatch at version {last.version}", last.version)
        return new, len(run), last.ts
