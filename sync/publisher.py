"""The hub side: publish approved changes as numbered log entries beside a compacted snapshot.

The publisher keeps a mirror of the published list (the hub snapshot plus the log replayed through
the same `SyncMachine` the prisons use). That mirror lets it (1) stamp the list checksum on the
last entry of every publish, so each follower can prove it holds exactly the hub's list, and (2)
compact exactly: the snapshot it writes is the list at a version every entry up to which it has
applied. Several publishers are safe: the Lua script assigns versions only if the head is still
the one the publisher's mirror is at; otherwise it catches up from the log and tries again.

"Acknowledged" means `publish` returned a version: the script ran, and with `appendfsync always`
Redis wrote it to the AOF before replying. A connection lost before the reply is retried with the
same idempotency key, so a publish that did land is never applied twice.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence

import redis.asyncio as aioredis

from blocklist import ListSnapshot, snapshot_to_bytes
from sync.config import SyncConfig
from sync.redisio import (
    COMPACT_LUA,
    PUBLISH_LUA,
    REDIS_ERRORS,
    RESET_LUA,
    TAIL_PAGE_ENTRIES,
    SyncError,
    check_binary_client,
    fetch_snapshot_and_tail,
    read_meta,
    read_tail,
    where,
)
from sync.state import SyncMachine, apply_entries
from sync.wire import Change, Keys, LogEntry, changes_args

__all__ = ["MAX_CHANGES_PER_PUBLISH", "MIN_ATTEMPT_S", "PublishError", "Publisher"]

log = logging.getLogger("upcs.sync.publisher")

DEFAULT_SYNC_CONFIG = SyncConfig()

# One publish is one Lua script: Redis serves nobody else while it runs. 10k XADDs take ~10 ms;
# anything larger is a whole-list replacement and belongs in `publish_snapshot`.
MAX_CHANGES_PER_PUBLISH = 10_000
# The least time one attempt gets, even past the deadline: a healthy Redis answers in ms, and a
# 1M-list replacement (2 MB) in well under this.
MIN_ATTEMPT_S = 1.0


class PublishError(RuntimeError):
    """A publish could not be acknowledged (Redis unreachable past the deadline, hub damaged)."""


class Publisher:
    """Publishes changes and whole lists to the hub's Redis. One instance per process is enough;
    several (in several processes) are safe."""

    def __init__(self, redis: aioredis.Redis, config: SyncConfig = DEFAULT_SYNC_CONFIG) -> None:
        check_binary_client(redis)
        self._redis = redis
        self._config = config
        self._keys = Keys(config.key_prefix)
        self._machine: SyncMachine | None = None
        self._snap_version = 0
        self._lock = asyncio.Lock()
        self._publish = redis.register_script(PUBLISH_LUA)
        self._reset = redis.register_script(RESET_LUA)
        self._compact = redis.register_script(COMPACT_LUA)

    @property
    def keys(self) -> Keys:
        return self._keys

    @property
    def mirror(self) -> ListSnapshot | None:
        """The list as this publisher last saw it published (None before the first call)."""
        return None if self._machine is None else self._machine.current

    async def publish(
        self,
        changes: Sequence[Change | tuple[str, str, str]],
        *,
        idempotency_key: str | None = None,
    ) -> int:
        """Publish `changes` in order, one version each; return the last version.

        The same `idempotency_key` published again returns the first result and adds nothing.
        Without a key, one is made for this call so its own retries stay idempotent.
        """
        batch = [c if isinstance(c, Change) else _change(c) for c in changes]
        if not batch:
            raise ValueError("publish: no changes given")
        if len(batch) > MAX_CHANGES_PER_PUBLISH:
            raise ValueError(
                f"publish: {len(batch)} changes in one call, at most {MAX_CHANGES_PER_PUBLISH};"
                " replace the whole list with publish_snapshot instead"
            )
        key = self._keys.idempotency(idempotency_key or f"auto:{uuid.uuid4().hex}")
        args = changes_args(batch)
        ttl_ms = int(self._config.idempotency_ttl_s * 1000)
        async with self._lock:
            version = await self._retrying(lambda: self._publish_once(batch, key, args, ttl_ms))
            await self._maybe_compact()
            return version

    async def publish_snapshot(self, snapshot: ListSnapshot) -> int:
        """Replace the whole list with `snapshot`'s entries at a new version; return it.

        Followers see a reset entry and load the snapshot; the log before it is trimmed.
        """
        key = self._keys.idempotency(f"auto:{uuid.uuid4().hex}")
        ttl_ms = int(self._config.idempotency_ttl_s * 1000)
        async with self._lock:
            return await self._retrying(lambda: self._reset_once(snapshot, key, ttl_ms))

    async def compact(self) -> int:
        """Write the snapshot at the current head now; return its version."""
        async with self._lock:
            return await self._retrying(self._compact_once)

    async def _retrying(self, attempt_fn: Callable[[], Awaitable[int | None]]) -> int:
        """Run one attempt until it gives a version; retry Redis outages until the deadline."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._config.publish_timeout_s
        attempt = 0
        while True:
            try:
                # Bound each attempt too: the caller's client may carry its own retry policy
                # (redis-py's default retries with backoff for seconds). A timed-out attempt is
                # unacknowledged; its retry, now or by the caller, reuses the idempotency key.
                budget = max(deadline - loop.time(), MIN_ATTEMPT_S)
                async with asyncio.timeout(budget):
                    result = await attempt_fn()
            except REDIS_ERRORS as exc:
                if loop.time() >= deadline:
                    raise PublishError(
                        f"redis at {where(self._redis)} unreachable for "
                        f"{self._config.publish_timeout_s:g} s: {exc}"
                    ) from None
                delay = self._config.retry.delay_s(attempt)
                attempt += 1
                log.warning(
                    "sync.publish_retry attempt=%d delay_s=%.3f error=%s",
                    attempt,
                    delay,
                    type(exc).__name__,
                )
                await asyncio.sleep(min(delay, max(0.0, deadline - loop.time())))
                continue
            if result is not None:
                return result

    async def _publish_once(
        self, batch: list[Change], key: str, args: list[str], ttl_ms: int
    ) -> int | None:
        machine = await self._catch_up()
        base = machine.current
        entries = [
            LogEntry(base.version + i, c.op, c.number, c.ref) for i, c in enumerate(batch, 1)
        ]
        new = apply_entries(base, entries)
        status, version = await self._publish(
            keys=[self._keys.meta, self._keys.log, key],
            args=[base.version, ttl_ms, new.checksum, *args],
        )
        return self._outcome(status, int(version), new)

    async def _reset_once(self, snapshot: ListSnapshot, key: str, ttl_ms: int) -> int | None:
        machine = await self._catch_up()
        version = machine.version + 1
        stamped = ListSnapshot(snapshot.entries, version, snapshot.checksum, snapshot.lengths)
        status, got = await self._reset(
            keys=[self._keys.meta, self._keys.snapshot, self._keys.log, key],
            args=[
                machine.version,
                ttl_ms,
                stamped.checksum,
                len(stamped),
                snapshot_to_bytes(stamped),
            ],
        )
        result = self._outcome(status, int(got), stamped)
        if result is not None and status == b"ok":
            self._snap_version = version
        return result

    def _outcome(self, status: bytes, version: int, new: ListSnapshot) -> int | None:
        if status == b"ok":
            if version != new.version:
                raise SyncError(f"hub assigned version {version}, expected {new.version}")
            assert self._machine is not None
            self._machine.offer_snapshot(new)
            return version
        if status == b"dup":
            log.info("sync.publish_duplicate version=%d", version)
            return version  # the mirror catches up from the log on the next call
        if status == b"conflict":
            log.info("sync.publish_conflict head=%d", version)
            return None  # another publisher moved the head: catch up and try again
        raise SyncError(f"publish script answered {status!r}")

    async def _catch_up(self) -> SyncMachine:
        """Bring the mirror to the hub head: replay the log, or reload if it was trimmed."""
        meta = await read_meta(self._redis, self._keys)
        self._snap_version = meta.snap_version or 0
        machine = self._machine
        if machine is not None and meta.head < machine.version:
            raise PublishError(
                f"hub Redis head is version {meta.head}, behind version {machine.version} this "
                "publisher saw acknowledged: Redis lost data (check AOF appendfsync always); "
                "republish the whole list with `upcs sync publish`"
            )
        while machine is not None and machine.version < meta.head:
            tail = await read_tail(self._redis, self._keys, machine.version, TAIL_PAGE_ENTRIES)
            machine.receive(tail)
            if machine.gap is not None or not tail:
                machine = None  # trimmed past us, or a reset: load the snapshot instead
        if machine is None:
            machine = await self._load()
        self._machine = machine
        return machine

    async def _load(self) -> SyncMachine:
        snapshot, head, tail = await fetch_snapshot_and_tail(self._redis, self._keys)
        machine = SyncMachine(snapshot)
        machine.receive(tail)
        while machine.gap is None and machine.version < head and tail:
            tail = await read_tail(self._redis, self._keys, machine.version, TAIL_PAGE_ENTRIES)
            machine.receive(tail)
        if machine.gap is not None or machine.version < head:
            raise SyncError(
                f"hub log in redis {self._keys.log} does not continue its snapshot "
                f"(snapshot {snapshot.version}, head {head}): {machine.gap}"
            )
        return machine

    async def _maybe_compact(self) -> None:
        machine = self._machine
        if machine is None:
            return
        if machine.version - self._snap_version < self._config.compact_every_versions:
            return
        try:
            await self._compact_once()
        except REDIS_ERRORS as exc:
            # The publish itself is acknowledged; compaction is retried after the next one.
            log.warning("sync.compact_failed error=%s", type(exc).__name__)

    async def _compact_once(self) -> int:
        machine = await self._catch_up()
        snap = machine.current
        keep = max(1, snap.version + 1 - self._config.retain_versions)
        stored = await self._compact(
            keys=[self._keys.meta, self._keys.snapshot, self._keys.log],
            args=[snap.version, snap.checksum, len(snap), snapshot_to_bytes(snap), keep],
        )
        if int(stored):
            self._snap_version = snap.version
            log.info(
                "sync.compacted version=%d entries=%d keep_from=%d", snap.version, len(snap), keep
            )
        return snap.version


def _change(raw: tuple[str, str, str]) -> Change:
    op, e164, ref = raw
    if op not in ("add", "remove"):
        raise ValueError(f"change op must be 'add' or 'remove', not {op!r}")
    return Change("add" if op == "add" else "remove", e164, ref)
