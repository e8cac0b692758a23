"""The publisher against the real Redis: versions, idempotency, concurrency, compaction, reset."""

from __future__ import annotations

import asyncio
import logging

import pytest
import redis.asyncio as aioredis
from pyroaring import FrozenBitMap64

from blocklist import ListSnapshot, read_snapshot_bytes
from sync import Change, Keys, Publisher, PublishError, SyncConfig, SyncMachine
from sync.config import Backoff
from sync.redisio import decode_entries, fetch_snapshot_and_tail, read_meta

pytestmark = pytest.mark.redis

BASE = 447700900000


def mobile(n: int) -> str:
    return f"+{BASE + n}"


async def hub_snapshot(client: aioredis.Redis, keys: Keys) -> ListSnapshot:
    data = await client.get(keys.snapshot)
    assert isinstance(data, bytes)
    return read_snapshot_bytes(data, "test")


async def log_versions(client: aioredis.Redis, keys: Keys) -> list[int]:
    return [e.version for e in decode_entries(await client.xrange(keys.log))]


async def test_each_change_gets_the_next_version(rclient: aioredis.Redis, prefix: str) -> None:
    pub = Publisher(rclient, SyncConfig(key_prefix=prefix))
    assert await pub.publish([Change("add", mobile(1)), Change("add", mobile(2))]) == 2
    assert await pub.publish([("remove", mobile(1), "case-7")]) == 3
    entries = decode_entries(await rclient.xrange(pub.keys.log))
    assert [(e.version, e.op, e.number) for e in entries] == [
        (1, "add", BASE + 1),
        (2, "add", BASE + 2),
        (3, "remove", BASE + 1),
    ]
    assert entries[2].ref == "case-7"
    # Only the last entry of each publish carries the list checksum, and it is the right one.
    assert entries[0].checksum is None
    assert entries[1].checksum == ListSnapshot.from_numbers([BASE + 1, BASE + 2], 2).checksum
    assert entries[2].checksum == ListSnapshot.from_numbers([BASE + 2], 3).checksum
    meta = await read_meta(rclient, pub.keys)
    assert meta.head == 3 and meta.head_checksum == entries[2].checksum


async def test_same_idempotency_key_adds_nothing(rclient: aioredis.Redis, prefix: str) -> None:
    pub = Publisher(rclient, SyncConfig(key_prefix=prefix))
    first = await pub.publish(
        [Change("add", mobile(1)), Change("add", mobile(2))], idempotency_key="outbox:1"
    )
    again = await pub.publish(
        [Change("add", mobile(1)), Change("add", mobile(2))], idempotency_key="outbox:1"
    )
    # A second publisher (another hub process) retrying the same row also adds nothing.
    other = Publisher(rclient, SyncConfig(key_prefix=prefix))
    third = await other.publish([Change("add", mobile(1))], idempotency_key="outbox:1")
    assert first == again == third == 2
    assert await log_versions(rclient, pub.keys) == [1, 2]
    assert await pub.publish([Change("add", mobile(3))], idempotency_key="outbox:2") == 3


async def test_concurrent_publishers_leave_no_holes(
    rclient: aioredis.Redis, prefix: str, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="upcs.sync.publisher")
    config = SyncConfig(key_prefix=prefix, compact_every_versions=70, retain_versions=5)
    clients = [aioredis.Redis.from_url(redis_url) for _ in range(3)]
    pubs = [Publisher(c, config) for c in clients]
    try:

        async def worker(i: int, pub: Publisher) -> list[int]:
            got = []
            for k in range(40):
                got.append(await pub.publish([Change("add", mobile(i * 100 + k))]))
            return got

        results = await asyncio.gather(*(worker(i, p) for i, p in enumerate(pubs)))
    finally:
        for c in clients:
            await c.aclose()
    versions = sorted(v for r in results for v in r)
    assert versions == list(range(1, 121))  # every publish its own version, no holes
    # The interleaving really made publishers lose the race and catch up from the log.
    assert any("sync.publish_conflict" in r.getMessage() for r in caplog.records)
    # The hub's snapshot + log replay to exactly the 120 numbers, with the checksum stamped last.
    snap, head, tail = await fetch_snapshot_and_tail(rclient, Keys(prefix))
    m = SyncMachine(snap)
    m.receive(tail)
    assert head == 120 and m.version == 120 and m.gap is None
    expected = {BASE + i * 100 + k for i in range(3) for k in range(40)}
    assert set(m.current) == expected
    assert snap.version >= 70  # compacted by whichever publisher crossed the threshold


async def test_compaction_is_exact_and_trims_only_what_it_covers(
    rclient: aioredis.Redis, prefix: str
) -> None:
    pub = Publisher(
        rclient, SyncConfig(key_prefix=prefix, compact_every_versions=25, retain_versions=10)
    )
    for k in range(30):
        await pub.publish([Change("add" if k % 3 else "remove", mobile(k % 7))])
    meta = await read_meta(rclient, pub.keys)
    assert meta.snap_version == 25 and meta.head == 30
    stored = await hub_snapshot(rclient, pub.keys)
    assert stored.version == 25 and stored.checksum == meta.snap_checksum
    # Replaying the first 25 changes gives exactly the stored snapshot.
    expected: set[int] = set()
    for k in range(25):
        (expected.add if k % 3 else expected.discard)(BASE + k % 7)
    assert set(stored) == expected
    # Entries 16..25 are kept for followers slightly behind; nothing above 25 was trimmed.
    assert await log_versions(rclient, pub.keys) == list(range(16, 31))


async def test_publish_snapshot_replaces_the_list(rclient: aioredis.Redis, prefix: str) -> None:
    pub = Publisher(rclient, SyncConfig(key_prefix=prefix))
    await pub.publish([Change("add", mobile(1)), Change("add", mobile(2))])
    replacement = ListSnapshot(FrozenBitMap64([BASE + 500, BASE + 501, BASE + 502]), 77)
    version = await pub.publish_snapshot(replacement)
    assert version == 3
    entries = decode_entries(await rclient.xrange(pub.keys.log))
    assert [(e.version, e.op) for e in entries] == [(3, "reset")]
    stored = await hub_snapshot(rclient, pub.keys)
    assert stored.version == 3 and set(stored) == set(replacement)
    assert stored.checksum == replacement.checksum
    # Publishing continues from the replacement.
    assert await pub.publish([Change("remove", mobile(500))]) == 4
    assert pub.mirror is not None and set(pub.mirror) == {BASE + 501, BASE + 502}


async def test_fresh_publisher_learns_the_existing_list(
    rclient: aioredis.Redis, prefix: str
) -> None:
    config = SyncConfig(key_prefix=prefix, compact_every_versions=5, retain_versions=0)
    first = Publisher(rclient, config)
    for k in range(12):
        await first.publish([Change("add", mobile(k))])
    second = Publisher(rclient, config)
    assert await second.publish([Change("remove", mobile(0))]) == 13
    assert second.mirror is not None
    assert set(second.mirror) == {BASE + k for k in range(1, 12)}


async def test_bad_changes_are_refused_before_any_io(rclient: aioredis.Redis, prefix: str) -> None:
    pub = Publisher(rclient, SyncConfig(key_prefix=prefix))
    with pytest.raises(ValueError, match="no changes"):
        await pub.publish([])
    with pytest.raises(ValueError, match=r"E\.164"):
        await pub.publish([("add", "07700900001", "")])
    with pytest.raises(ValueError, match="op"):
        await pub.publish([("bar", mobile(1), "")])
    assert await rclient.exists(pub.keys.log) == 0


async def test_unreachable_redis_gives_up_at_the_deadline() -> None:
    client = aioredis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    pub = Publisher(client, SyncConfig(publish_timeout_s=0.3, retry=Backoff(0.05, 0.1)))
    with pytest.raises(PublishError, match="unreachable"):
        await pub.publish([Change("add", mobile(1))])
    await client.aclose()


async def test_decoding_client_is_refused(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    with pytest.raises(ValueError, match="decode_responses"):
        Publisher(client)
    await client.aclose()
