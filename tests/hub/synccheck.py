"""Checks that what the hub approved is what the gateways get, exactly once, via the REAL sync.

`assert_exactly_once` reads the sync change log straight from Redis and proves that every outbox
row appears as exactly its own changes, in order, at the versions the relay recorded, with no
other entry anywhere (so no row was published twice); then a real `sync.RedisFollower` (what each
prison runs) follows the hub to its head and must hold exactly the numbers the hub bars.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from sqlalchemy import select
from sqlalchemy.engine import Engine

import sync
from blocklist import ListHolder, ListSnapshot, int_to_e164
from hub.bars import barred_numbers
from hub.schema import outbox

__all__ = ["assert_exactly_once", "follower_numbers", "log_entries"]

FOLLOW_TIMEOUT_S = 20.0


async def log_entries(url: str, prefix: str) -> list[tuple[int, str, str, str]]:
    """Every (version, op, E.164, ref) in the sync log, oldest first."""
    client = aioredis.Redis.from_url(url)
    try:
        raw: Any = await client.xrange(sync.Keys(prefix).log, min="-", max="+")
    finally:
        await client.aclose()
    out = []
    for entry_id, fields in raw:
        version = int(entry_id.decode().split("-")[0])
        out.append(
            (
                version,
                fields[b"op"].decode(),
                fields.get(b"n", b"").decode(),
                fields.get(b"ref", b"").decode(),
            )
        )
    return out


async def follower_numbers(url: str, prefix: str, head: int, workdir: Path) -> set[str]:
    """The list a real prison follower holds once it has applied version `head`."""
    holder = ListHolder(ListSnapshot.empty())
    config = sync.FollowerConfig(sync=sync.SyncConfig(key_prefix=prefix), block_s=0.2)
    follower = sync.RedisFollower(url, "hub-test-site", holder, workdir / "site.snapshot", config)
    task = asyncio.create_task(follower.run())
    try:
        async with asyncio.timeout(FOLLOW_TIMEOUT_S):
            # The follower's public surface is its status(); there is no event to wait on.
            while follower.status().applied_version < head:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return {int_to_e164(n) for n in holder.current.bitmap}


async def assert_exactly_once(engine: Engine, url: str, prefix: str, workdir: Path) -> int:
    """All outbox rows published exactly once and the gateways' list right; the log head."""
    with engine.connect() as conn:
        rows = conn.execute(select(outbox).order_by(outbox.c.id)).all()
        barred = barred_numbers(conn)
    pending = [r.id for r in rows if r.published_at is None]
    assert not pending, f"outbox rows still pending: {pending}"
    entries = await log_entries(url, prefix)
    by_version = {e[0]: e[1:] for e in entries}
    assert len(by_version) == len(entries)
    total = sum(len(json.loads(r.changes)) for r in rows)
    # No extra entries: each change of each row exactly once, nothing else in the log.
    assert len(entries) == total, f"{len(entries)} log entries for {total} outbox changes"
    assert [e[0] for e in entries] == list(range(1, total + 1)), "versions not contiguous"
    for r in rows:
        changes = [tuple(c) for c in json.loads(r.changes)]
        first = r.version - len(changes) + 1
        got = [by_version[v] for v in range(first, r.version + 1)]
        assert got == changes, f"outbox row {r.id} is not at versions {first}..{r.version}"
    head = entries[-1][0] if entries else 0
    assert await follower_numbers(url, prefix, head, workdir) == barred
    return head
