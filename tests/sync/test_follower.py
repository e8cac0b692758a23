"""Publisher and followers through the real Redis: follow, late start, offline through a trim,
checksum divergence, restart without the hub, Redis restart, list replacement, cancellation."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from pyroaring import FrozenBitMap64

import sync.follower as sync_follower
from blocklist import ListHolder, ListSnapshot, read_snapshot, write_snapshot
from sync import (
    Backoff,
    Change,
    FollowerConfig,
    Publisher,
    RedisFollower,
    SyncConfig,
    read_hub_status,
)
from sync.redisio import read_tail
from tests.sync.helpers import RedisServer, wait_for

pytestmark = pytest.mark.redis

BASE = 447700900000


def mobile(n: int) -> str:
    return f"+{BASE + n}"


def fast(sync: SyncConfig, **kw: float) -> FollowerConfig:
    values = {"block_s": 0.2, "report_interval_s": 0.1, "persist_interval_s": 0.2, **kw}
    return FollowerConfig(sync=sync, backoff=Backoff(0.01, 0.05), **values)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def running(follower: RedisFollower) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(follower.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def in_step(follower: RedisFollower, pub: Publisher) -> bool:
    mirror = pub.mirror
    st = follower.status()
    return mirror is not None and st.applied_version == mirror.version and st.connected


async def test_follower_applies_every_change_and_reports(
    rclient: aioredis.Redis, prefix: str, redis_url: str, tmp_path: Path
) -> None:
    sync = SyncConfig(key_prefix=prefix)
    pub = Publisher(rclient, sync)
    holder = ListHolder(ListSnapshot.empty())
    seen: list[int] = []
    holder.on_swap(lambda s: seen.append(s.version))
    follower = RedisFollower(redis_url, "hmp-alpha", holder, tmp_path / "a.snap", fast(sync))
    async with running(follower):
        await wait_for(lambda: follower.status().connected, what="connect")
        await pub.publish([Change("add", mobile(1)), Change("add", mobile(2))])
        await pub.publish([Change("remove", mobile(1))])
        await wait_for(lambda: in_step(follower, pub), what="follower at the hub head")
        assert set(holder.current) == {BASE + 2}
        assert pub.mirror is not None and holder.current.checksum == pub.mirror.checksum
        assert seen == sorted(seen) and seen[-1] == 3  # versions only ever go forward
        st = follower.status()
        assert st.lag_versions == 0 and st.lag_seconds == 0.0 and st.hub_version == 3
        assert st.last_sync_unix is not None and st.resyncs == 0
        for _ in range(100):  # the report follows within a report interval (0.1 s), and
            # the hashed version once the log has been quiet for one block (0.2 s)
            hub = await read_hub_status(rclient, sync, now_unix=st.last_sync_unix)
            if hub.sites and hub.sites[0].checksum_version == 3:
                break
            await asyncio.sleep(0.02)
        (site,) = hub.sites
        assert site.site == "hmp-alpha" and site.applied_version == 3 and site.in_sync
        raw = await rclient.hget(pub.keys.sites, "hmp-alpha")
        assert raw is not None and json.loads(raw)["checksum"] == holder.current.checksum
    # Cancelled: the list was persisted on the way out.
    assert read_snapshot(tmp_path / "a.snap").checksum == holder.current.checksum


async def test_late_follower_takes_snapshot_then_tail(
    rclient: aioredis.Redis, prefix: str, redis_url: str, tmp_path: Path
) -> None:
    sync = SyncConfig(key_prefix=prefix, compact_every_versions=20, retain_versions=3)
    pub = Publisher(rclient, sync)
    for k in range(47):
        await pub.publish([Change("add" if k % 4 else "remove", mobile(k % 13))])
    holder = ListHolder(ListSnapshot.empty())
    follower = RedisFollower(redis_url, "late", holder, tmp_path / "late.snap", fast(sync))
    async with running(follower):
        await wait_for(lambda: in_step(follower, pub), what="late follower caught up")
        assert pub.mirror is not None and holder.current.checksum == pub.mirror.checksum
        assert follower.status().resyncs == 1  # one snapshot load, then the tail


async def test_follower_offline_while_the_log_was_trimmed(
    rclient: aioredis.Redis, prefix: str, redis_url: str, tmp_path: Path
) -> None:
    sync = SyncConfig(key_prefix=prefix, compact_every_versions=10, retain_versions=0)
    pub = Publisher(rclient, sync)
    path = tmp_path / "offline.snap"
    holder = ListHolder(ListSnapshot.empty())
    follower = RedisFollower(redis_url, "offline", holder, path, fast(sync))
    async with running(follower):
        await pub.publish([Change("add", mobile(1))])
        await wait_for(lambda: in_step(follower, pub), what="first change")
    assert read_snapshot(path).version == 1
    # While it is down: many changes, compaction, and the log trimmed far past version 1.
    for k in range(2, 40):
        await pub.publish([Change("add", mobile(k))])
    first_kept = await read_tail(rclient, pub.keys, 0, 1)
    assert first_kept[0].version > 2
    # Restart from the persisted file into a fresh holder (a restarted gateway).
    holder2 = ListHolder(read_snapshot(path))
    follower2 = RedisFollower(redis_url, "offline", holder2, path, fast(sync))
    async with running(follower2):
        await wait_for(lambda: in_step(follower2, pub), what="resync after trim")
        assert pub.mirror is not None and holder2.current.checksum == pub.mirror.checksum
        assert follower2.status().resyncs == 1


async def test_trim_while_idle_is_noticed_without_new_entries(
    rclient: aioredis.Redis, prefix: str, redis_url: str, tmp_path: Path
) -> None:
    """A follower left behind with an empty log after it must still find the snapshot."""
    sync = SyncConfig(key_prefix=prefix, compact_every_versions=1, retain_versions=0)
    pub = Publisher(rclient, sync)
    await pub.publish([Change("add", mobile(1))])
    path = tmp_path / "idle.snap"
    write_snapshot(path, ListSnapshot.empty())
    for k in range(2, 6):
        await pub.publish([Change("add", mobile(k))])
    assert await rclient.xlen(pub.keys.log) == 0  # everything compacted away
    holder = ListHolder(ListSnapshot.empty())
    follower = RedisFollower(redis_url, "idle", holder, path, fast(sync))
    async with running(follower):
        await wait_for(lambda: in_step(follower, pub), what="snapshot load")
        assert len(holder.current) == 5


async def diverged(
    rclient: aioredis.Redis, prefix: str, tmp_path: Path
) -> tuple[SyncConfig, Publisher, Path]:
    """A hub at version 5, and a local file claiming version 5 with different content (a
    corrupted or foreign list)."""
    sync = SyncConfig(key_prefix=prefix)
    pub = Publisher(rclient, sync)
    for k in range(5):
        await pub.publish([Change("add", mobile(k))])
    path = tmp_path / "diverged.snap"
    write_snapshot(path, ListSnapshot(FrozenBitMap64([BASE + 666]), 5))
    return sync, pub, path


async def test_checksum_divergence_is_repaired(
    rclient: aioredis.Redis, prefix: str, redis_url: str, tmp_path: Path
) -> None:
    sync, pub, path = await diverged(rclient, prefix, tmp_path)
    holder = ListHolder(ListSnapshot.empty())
    follower = RedisFollower(redis_url, "diverged", holder, path, fast(sync))
    async with running(follower):
        await wait_for(lambda: follower.status().applied_version == 5, what="local file loaded")
        await pub.publish([Change("add", mobile(6))])  # carries the hub's checksum
        await wait_for(
            lambda: pub.mirror is not None and holder.current.checksum == pub.mirror.checksum,
            what="repair by resync",
        )
        assert BASE + 666 not in holder.current
        assert follower.status().resyncs == 1


async def test_divergence_is_found_while_changes_keep_streaming(
    rclient: aioredis.Redis, prefix: str, redis_url: str, tmp_path: Path
) -> None:
    # The log never goes quiet for a whole block here, so only verify_interval_s can bring the
    # comparison with the hub's checksum about.
    sync, pub, path = await diverged(rclient, prefix, tmp_path)
    holder = ListHolder(ListSnapshot.empty())
    config = fast(sync, block_s=2.0, verify_interval_s=0.3, persist_interval_s=3600.0)
    follower = RedisFollower(redis_url, "streaming", holder, path, config)
    async with running(follower):
        await wait_for(lambda: follower.status().applied_version == 5, what="local file loaded")
        for k in range(6, 60):
            await pub.publish([Change("add", mobile(k))])
            await asyncio.sleep(0.05)
            if follower.status().resyncs:
                break
        assert follower.status().resyncs == 1, "no comparison while the log streamed"
        await wait_for(lambda: in_step(follower, pub), what="follower at the hub head")
        assert pub.mirror is not None and holder.current.checksum == pub.mirror.checksum
        assert BASE + 666 not in holder.current


async def test_restart_without_the_hub_uses_the_persisted_list(
    rclient: aioredis.Redis, prefix: str, redis_url: str, tmp_path: Path
) -> None:
    sync = SyncConfig(key_prefix=prefix)
    pub = Publisher(rclient, sync)
    path = tmp_path / "site.snap"
    holder = ListHolder(ListSnapshot.empty())
    follower = RedisFollower(redis_url, "site", holder, path, fast(sync))
    async with running(follower):
        await pub.publish([Change("add", mobile(k)) for k in range(10)])
        await wait_for(lambda: in_step(follower, pub), what="caught up")
    holder2 = ListHolder(ListSnapshot.empty())
    dead = RedisFollower("redis://127.0.0.1:1/0", "site", holder2, path, fast(sync))
    async with running(dead):
        await wait_for(lambda: dead.status().reconnects >= 2, what="retries")
        st = dead.status()
        assert st.applied_version == 10 and not st.connected and st.last_error
        assert holder2.current.checksum == holder.current.checksum


async def test_list_replacement_reaches_the_follower(
    rclient: aioredis.Redis, prefix: str, redis_url: str, tmp_path: Path
) -> None:
    sync = SyncConfig(key_prefix=prefix)
    pub = Publisher(rclient, sync)
    holder = ListHolder(ListSnapshot.empty())
    follower = RedisFollower(redis_url, "replaced", holder, tmp_path / "r.snap", fast(sync))
    async with running(follower):
        await pub.publish([Change("add", mobile(1))])
        await wait_for(lambda: in_step(follower, pub), what="first")
        await pub.publish_snapshot(ListSnapshot(FrozenBitMap64([BASE + 7, BASE + 8]), 1))
        await pub.publish([Change("add", mobile(9))])
        await wait_for(lambda: in_step(follower, pub), what="after replacement")
        assert set(holder.current) == {BASE + 7, BASE + 8, BASE + 9}


async def test_hub_behind_keeps_the_list_and_says_so(
    rclient: aioredis.Redis, prefix: str, redis_url: str, tmp_path: Path
) -> None:
    sync = SyncConfig(key_prefix=prefix)
    path = tmp_path / "ahead.snap"
    ahead = ListSnapshot(FrozenBitMap64([BASE + 1, BASE + 2]), 50)
    write_snapshot(path, ahead)
    await Publisher(rclient, sync).publish([Change("add", mobile(3))])  # hub only at version 1
    holder = ListHolder(ListSnapshot.empty())
    follower = RedisFollower(redis_url, "ahead", holder, path, fast(sync))
    async with running(follower):
        await wait_for(lambda: follower.status().last_error is not None, what="hub behind")
        st = follower.status()
        assert st.applied_version == 50 and "behind" in (st.last_error or "")
        assert holder.current.checksum == ahead.checksum


async def test_follower_survives_a_redis_restart(redis_server: RedisServer, tmp_path: Path) -> None:
    sync = SyncConfig(key_prefix="restart", retry=Backoff(0.02, 0.1))
    client = aioredis.Redis.from_url(redis_server.url)
    pub = Publisher(client, sync)
    holder = ListHolder(ListSnapshot.empty())
    follower = RedisFollower(redis_server.url, "r", holder, tmp_path / "r.snap", fast(sync))
    try:
        async with running(follower):
            await pub.publish([Change("add", mobile(1))])
            await wait_for(lambda: in_step(follower, pub), what="before restart")
            redis_server.kill()
            await wait_for(lambda: not follower.status().connected, what="disconnect noticed")
            redis_server.start()
            await pub.publish([Change("add", mobile(2))])
            await wait_for(lambda: in_step(follower, pub), timeout_s=10, what="after restart")
            assert set(holder.current) == {BASE + 1, BASE + 2}
            assert follower.status().reconnects >= 1
    finally:
        await client.aclose()


async def test_cancellation_propagates_and_closes(
    rclient: aioredis.Redis, prefix: str, redis_url: str, tmp_path: Path
) -> None:
    sync = SyncConfig(key_prefix=prefix)
    holder = ListHolder(ListSnapshot.empty())
    follower = RedisFollower(redis_url, "c", holder, tmp_path / "c.snap", fast(sync))
    task = asyncio.create_task(follower.run())
    await wait_for(lambda: follower.status().connected, what="connect")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()
    assert not follower.status().connected
    assert read_snapshot(tmp_path / "c.snap").version == 0
    await follower.aclose()  # idempotent


async def test_cancel_at_any_moment_always_stops(
    rclient: aioredis.Redis, prefix: str, redis_url: str, tmp_path: Path
) -> None:
    """Regression: redis-py can swallow a cancel inside a blocking XREAD; the follower must
    still stop (a gateway that cannot shut down cannot drain)."""
    sync = SyncConfig(key_prefix=prefix)
    rng = random.Random(4)
    for i in range(25):
        follower = RedisFollower(
            redis_url,
            "x",
            ListHolder(ListSnapshot.empty()),
            tmp_path / f"x{i}.snap",
            fast(sync, block_s=0.05),
        )
        task = asyncio.create_task(follower.run())
        await asyncio.sleep(rng.uniform(0.0, 0.15))
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=2.0)
        assert done, f"follower {i} ignored its cancellation"
        assert task.cancelled()


async def test_big_list_path_applies_off_the_loop(
    rclient: aioredis.Redis,
    prefix: str,
    redis_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The thread path used for big lists gives the same result (forced here for a small one)."""
    monkeypatch.setattr(sync_follower, "THREAD_APPLY_MIN_ENTRIES", 0)
    sync = SyncConfig(key_prefix=prefix, compact_every_versions=10, retain_versions=2)
    pub = Publisher(rclient, sync)
    for k in range(25):
        await pub.publish([Change("add" if k % 5 else "remove", mobile(k % 9))])
    holder = ListHolder(ListSnapshot.empty())
    follower = RedisFollower(redis_url, "big", holder, tmp_path / "big.snap", fast(sync))
    async with running(follower):
        await wait_for(lambda: in_step(follower, pub), what="resync via thread")
        await pub.publish([Change("add", mobile(100)), Change("remove", mobile(1))])
        await wait_for(lambda: in_step(follower, pub), what="apply via thread")
        assert pub.mirror is not None and holder.current.checksum == pub.mirror.checksum
