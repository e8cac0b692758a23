"""The prison side: follow the hub's log in Redis and keep the local list current.

Start from the local snapshot file (so a prison restarts without the hub), take the hub snapshot
if it is newer, then follow the log with blocking XREADs. Each batch of entries becomes one new
immutable snapshot swapped into the `ListHolder` (readers see before or after, never between).
A gap (trimmed log, version jump, list replaced, checksum mismatch) triggers a resync from the hub
snapshot. Each change is applied in O(change) (an overlay on the list, `ListSnapshot.apply`); the
hub's checksum, which costs a hash of the whole list, is compared when the log goes quiet and at
most every `verify_interval_s` while changes stream in. The list is persisted atomically every
`persist_interval_s` and on the way out.
Connection failures are retried forever with the injected backoff; cancellation is the only way
out, and it is a normal path: `CancelledError` propagates after a shielded `aclose()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from blocklist import ListHolder, ListSnapshot, SnapshotFileError, read_snapshot, write_snapshot
from sync.config import FollowerConfig
from sync.redisio import (
    REDIS_ERRORS,
    SyncError,
    decode_entries,
    fetch_snapshot_and_tail,
    read_meta,
    read_tail,
)
from sync.state import HubBehindError, Step, SyncMachine
from sync.status import FollowerStatus
from sync.wire import Keys, SiteReport, WireError, encode_site

__all__ = ["RedisFollower"]

log = logging.getLogger("upcs.sync.follower")

T = TypeVar("T")

DEFAULT_FOLLOWER_CONFIG = FollowerConfig()

# From this list size a new snapshot costs over ~5 ms (measured: 5 ms at 100k entries, 30 ms at
# 1M on the reference machine), far more than the ~0.1 ms a thread hop costs.
THREAD_APPLY_MIN_ENTRIES = 100_000

# Faults that end one session and are retried after a backoff: Redis gone, or the hub's data
# unusable right now (a damaged snapshot, a hub that lost changes we hold). The list is kept.
SESSION_ERRORS: tuple[type[BaseException], ...] = (
    *REDIS_ERRORS,
    redis.exceptions.RedisError,
    SyncError,
    WireError,
    HubBehindError,
)


class RedisFollower:
    """Keeps `holder` equal to the hub's list; persists it to `snapshot_path`."""

    def __init__(
        self,
        redis_url: str,
        site: str,
        holder: ListHolder,
        snapshot_path: Path,
        config: FollowerConfig = DEFAULT_FOLLOWER_CONFIG,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not site or len(site) > 100:
            raise ValueError("site name must be 1 to 100 characters")
        self._url = redis_url
        self._site = site
        self._holder = holder
        self._path = Path(snapshot_path)
        self._config = config
        self._keys = Keys(config.sync.key_prefix)
        self._clock = clock
        self._machine = SyncMachine(holder.current, defer_checksums=True)
        # The newest list whose checksum is known here: what the site reports (hashing the
        # current list on every report would cost O(list) a second under a stream of changes).
        self._hashed = holder.current
        self._entry_unix = clock()  # when the log last brought entries
        # Hashing is spread at random over 0.5-1.5 intervals, so followers started together
        # (a hub failover, or many on one host) do not all hash their lists at the same moment.
        self._jitter = random.Random()
        self._verify_due_unix = clock() + self._verify_gap_s()
        self._client: aioredis.Redis | None = None
        self._connected = False
        self._reconnects = 0
        self._resyncs = 0
        self._attempt = 0
        self._hub_version: int | None = None
        self._in_sync_unix: float | None = None
        self._last_sync_unix: float | None = None
        self._last_error: str | None = None
        self._persisted: ListSnapshot | None = None
        self._persisted_unix = clock()
        self._last_report = 0.0
        self._reported: tuple[int, int] = (-1, -1)  # (applied, hashed) versions last reported
        self._closed = False

    @property
    def site(self) -> str:
        return self._site

    def status(self) -> FollowerStatus:
        current = self._machine.current
        if current.checksum_known:
            self._hashed = current
        hashed = self._hashed
        hub = self._hub_version
        lag = None if hub is None else max(0, hub - current.version)
        lag_s: float | None = None
        if lag == 0:
            lag_s = 0.0
        elif lag is not None and self._in_sync_unix is not None:
            lag_s = max(0.0, self._clock() - self._in_sync_unix)
        return FollowerStatus(
            applied_version=current.version,
            entries=len(current),
            checksum=hashed.checksum,
            checksum_version=hashed.version,
            hub_version=hub,
            lag_versions=lag,
            lag_seconds=lag_s,
            reconnects=self._reconnects,
            resyncs=self._resyncs,
            last_sync_unix=self._last_sync_unix,
            connected=self._connected,
            last_error=self._last_error,
        )

    async def run(self) -> None:
        """Follow the hub until cancelled; persists the list and closes Redis on the way out."""
        try:
            await self._load_local()
            while True:
                _raise_if_cancel_swallowed()
                try:
                    await self._session()
                except Exception as exc:
                    if not isinstance(exc, SESSION_ERRORS):
                        # A bug, not an outage: say so loudly, but keep protecting the site
                        # with the list it has and keep trying.
                        log.exception("sync.follower_bug site=%s", self._site)
                    self._connected = False
                    self._reconnects += 1
                    self._last_error = f"{type(exc).__name__}: {exc}"
                    delay = self._config.backoff.delay_s(self._attempt)
                    self._attempt += 1
                    log.warning(
                        "sync.follower_disconnected site=%s error=%s retry_in_s=%.3f",
                        self._site,
                        self._last_error,
                        delay,
                    )
                    await self._drop_client()
                    await asyncio.sleep(delay)
        finally:
            await asyncio.shield(self.aclose())

    async def aclose(self) -> None:
        """Persist the list and close the connection; idempotent."""
        if self._closed:
            return
        self._closed = True
        self._connected = False
        await self._persist(force=True)
        await self._drop_client()

    # -- one connected session -------------------------------------------------------------

    async def _session(self) -> None:
        client = self._client = aioredis.Redis.from_url(
            self._url,
            socket_connect_timeout=self._config.connect_timeout_s,
            socket_timeout=self._config.block_s + self._config.socket_margin_s,
            retry=Retry(NoBackoff(), 0),  # our own policy retries (STYLE.md rule 7)
            decode_responses=False,
        )
        # Raw XREAD replies: redis-py's default parser turns every entry into a dict, which
        # costs more than the whole decode (measured 64 vs 27 ms for 10k entries).
        client.set_response_callback("XREAD", _raw_reply)
        meta = await read_meta(client, self._keys)
        self._hub_version = meta.head
        self._check_hub_behind(meta.head)
        if (meta.snap_version or 0) > self._machine.version:
            await self._resync(client, f"hub snapshot {meta.snap_version} is newer", fault=False)
        self._connected = True
        self._attempt = 0
        if meta.head >= self._machine.version:
            self._last_error = None
        self._mark_synced()
        await self._report(client)
        block_ms = int(self._config.block_s * 1000)
        while True:
            block = block_ms
            if self._reported != (self._machine.version, self._hashed.version):
                # Something new to report: wake up when the report is due, not a block later.
                due_s = self._last_report + self._config.report_interval_s - self._clock()
                block = max(1, min(block_ms, int(due_s * 1000)))
            resp = await client.xread(
                {self._keys.log: f"{self._machine.version}-0"},
                count=self._config.batch_max_entries,
                block=block,
            )
            _raise_if_cancel_swallowed()
            if resp:
                entries = decode_entries(_stream_entries(resp))
                self._hub_version = max(self._hub_version or 0, entries[-1].version)
                self._take(await self._off_loop(self._machine.receive, entries))
                gap = self._machine.gap
                if gap is not None:
                    await self._resync(client, gap.reason)
            now = self._clock()
            if resp:
                self._entry_unix = now
            # Quiet means a whole block without entries; a read cut short for a report is not.
            quiet = now - self._entry_unix >= self._config.block_s
            if self._machine.unverified and (quiet or now >= self._verify_due_unix):
                await self._verify(client)
            self._mark_synced()
            if now - self._last_report >= self._config.report_interval_s:
                meta = await read_meta(client, self._keys)
                self._hub_version = meta.head
                self._check_hub_behind(meta.head)
                if not resp and meta.head > self._machine.version:
                    # Nothing came after us, yet the hub is ahead: were our entries trimmed?
                    first = await read_tail(client, self._keys, self._machine.version, 1)
                    if not first or first[0].version != self._machine.version + 1:
                        await self._resync(
                            client, f"log trimmed past version {self._machine.version}"
                        )
                await self._report(client)
            if now - self._persisted_unix >= self._config.persist_interval_s:
                await self._persist()

    async def _resync(self, client: aioredis.Redis, reason: str, *, fault: bool = True) -> None:
        log.log(
            logging.WARNING if fault else logging.INFO,
            "sync.resync site=%s from_version=%d reason=%s",
            self._site,
            self._machine.version,
            reason,
        )
        snapshot, head, tail = await fetch_snapshot_and_tail(
            client, self._keys, self._config.batch_max_entries
        )
        self._hub_version = max(self._hub_version or 0, head)
        self._take(await self._off_loop(self._machine.resync, snapshot, tail))
        self._resyncs += 1
        gap = self._machine.gap
        if gap is not None:
            raise SyncError(f"hub snapshot and log do not agree after a resync: {gap.reason}")

    async def _verify(self, client: aioredis.Redis) -> None:
        """Compare the applied list with the hub's checksum for it; resync on a mismatch."""
        gap = await self._off_loop(self._machine.verify)
        self._verify_due_unix = self._clock() + self._verify_gap_s()
        if self._machine.current.checksum_known:
            self._hashed = self._machine.current
        if gap is not None:
            await self._resync(client, gap.reason)

    def _verify_gap_s(self) -> float:
        return self._config.verify_interval_s * self._jitter.uniform(0.5, 1.5)

    async def _off_loop(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a state-machine step; on a big list, in a thread so the loop keeps serving.

        Folding an overlay into a new list or hashing it for a checksum takes milliseconds to
        tens of ms on a large list, which would stall the gateway's SIP handling on this loop;
        hashlib releases the GIL, so a thread even hashes beside the loop. Only this task
        touches the machine, and the swap itself stays on the loop (its listeners update
        metrics).
        """
        if len(self._machine.current) < THREAD_APPLY_MIN_ENTRIES:
            return fn(*args)
        return await asyncio.to_thread(fn, *args)

    def _check_hub_behind(self, head: int) -> None:
        if head >= self._machine.version:
            return
        message = (
            f"hub head is version {head}, behind the applied version {self._machine.version}: "
            "the hub lost changes; keeping this list until the hub passes it"
        )
        if message != self._last_error:
            log.error("sync.hub_behind site=%s %s", self._site, message)
        self._last_error = message

    def _take(self, step: Step) -> None:
        if step.snapshot is not None:
            self._holder.swap(step.snapshot)

    def _mark_synced(self) -> None:
        now = self._clock()
        if self._machine.gap is None:
            self._last_sync_unix = now
        if self._hub_version is not None and self._machine.version >= self._hub_version:
            self._in_sync_unix = now

    async def _report(self, client: aioredis.Redis) -> None:
        st = self.status()
        now = self._clock()
        report = SiteReport(
            site=self._site,
            applied_version=st.applied_version,
            checksum=st.checksum,
            entries=st.entries,
            reported_unix=now,
            hub_version=st.hub_version,
            lag_seconds=st.lag_seconds,
            resyncs=st.resyncs,
            reconnects=st.reconnects,
            checksum_version=st.checksum_version,
        )
        await client.hset(self._keys.sites, self._site, encode_site(report))
        self._last_report = now
        self._reported = (st.applied_version, self._hashed.version)

    # -- local file ------------------------------------------------------------------------

    async def _load_local(self) -> None:
        if not self._path.exists():
            return
        try:
            local = await asyncio.to_thread(read_snapshot, self._path)
        except SnapshotFileError as exc:
            self._last_error = str(exc)
            log.error("sync.local_snapshot_bad site=%s error=%s", self._site, exc)
            return
        self._persisted = local
        if local.version > self._machine.version:
            self._take(self._machine.offer_snapshot(local))
            log.info("sync.local_snapshot_loaded site=%s version=%d", self._site, local.version)

    async def _persist(self, force: bool = False) -> None:
        snap = self._machine.current
        self._persisted_unix = self._clock()
        if snap is self._persisted and (not force or self._path.exists()):
            return
        try:
            await asyncio.to_thread(write_snapshot, self._path, snap)
        except OSError as exc:
            self._last_error = f"cannot persist snapshot: {exc}"
            log.error("sync.persist_failed site=%s error=%s", self._site, exc)
            return
        self._persisted = snap

    async def _drop_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.aclose()


def _raw_reply(response: Any, **options: Any) -> Any:
    return response


def _stream_entries(resp: Any) -> list[Any]:
    # Raw XREAD on one stream: {key: [[id, [k, v, ...]], ...]} (RESP3) or [[key, [...]]] (RESP2).
    if isinstance(resp, dict):
        return list(next(iter(resp.values())))
    return list(resp[0][1])


def _raise_if_cancel_swallowed() -> None:
    """Re-raise a cancellation that redis-py lost.

    redis-py can swallow a CancelledError that lands while a blocking read is inside its socket
    timeout (redis/redis-py#2028, #2551; seen here with XREAD BLOCK on 8.1): the command returns
    normally and the loop would run on forever. The task still counts the cancel request.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
