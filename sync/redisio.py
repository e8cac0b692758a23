"""The thin Redis side shared by publisher, follower and status: Lua scripts and reads.

Every write that touches both the log and the snapshot is one Lua script, so it is atomic: a reader
sees the snapshot and the log either both before or both after it (Redis runs a script alone;
with `appendfsync always` the whole script is in the AOF before the client gets the reply).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions

from blocklist import ListSnapshot, SnapshotFileError, read_snapshot_bytes
from sync.wire import (
    Keys,
    LogEntry,
    SiteReport,
    WireError,
    decode_entry,
    decode_flat,
    decode_site,
)

__all__ = [
    "COMPACT_LUA",
    "FETCH_LUA",
    "PUBLISH_LUA",
    "REDIS_ERRORS",
    "RESET_LUA",
    "TAIL_PAGE_ENTRIES",
    "HubMeta",
    "SyncError",
    "check_binary_client",
    "fetch_snapshot_and_tail",
    "read_meta",
    "read_sites",
    "read_tail",
]

# One XRANGE page when replaying the log: 10k entries is ~1 MB of reply, a few ms of Redis time.
TAIL_PAGE_ENTRIES = 10_000

# Errors that mean "Redis is not there right now": retry with backoff (BusyLoadingError, raised
# while a restarted Redis reloads its AOF, is a ConnectionError; ReadOnlyError is a client still
# talking to a demoted master during a Sentinel failover).
REDIS_ERRORS: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.ReadOnlyError,
    ConnectionError,
    TimeoutError,
    OSError,
)


class SyncError(RuntimeError):
    """The hub's data in Redis cannot be used as it is; the message says what and where."""


# Publish a batch of changes. KEYS: meta, log, idempotency key. ARGV: expected head, idempotency
# TTL in ms, checksum after the batch, then (op, e164, ref) triples. Returns {status, version}:
# 'dup' (this key was already published: its last version), 'conflict' (another publisher moved
# the head: the current head), 'ok' (the last new version). Versions are head+1..head+n: no holes.
PUBLISH_LUA = """
local done = redis.call('GET', KEYS[3])
if done then return {'dup', tonumber(done)} end
local head = tonumber(redis.call('HGET', KEYS[1], 'head') or '0')
if head ~= tonumber(ARGV[1]) then return {'conflict', head} end
local t = redis.call('TIME')
local ts = t[1] .. '.' .. string.format('%06d', tonumber(t[2]))
local n = (#ARGV - 3) / 3
for i = 1, n do
  local b = 3 + (i - 1) * 3
  local id = string.format('%d-0', head + i)
  if i == n then
    redis.call('XADD', KEYS[2], id, 'op', ARGV[b + 1], 'n', ARGV[b + 2], 'ref', ARGV[b + 3],
               'ts', ts, 'sum', ARGV[3])
  else
    redis.call('XADD', KEYS[2], id, 'op', ARGV[b + 1], 'n', ARGV[b + 2], 'ref', ARGV[b + 3],
               'ts', ts)
  end
end
local last = head + n
redis.call('HSET', KEYS[1], 'head', string.format('%d', last), 'head_ts', ts,
           'head_checksum', ARGV[3])
redis.call('SET', KEYS[3], string.format('%d', last), 'PX', ARGV[2])
return {'ok', last}
"""

# Replace the whole list. KEYS: meta, snapshot, log, idempotency key. ARGV: expected head, TTL ms,
# checksum, entries, snapshot bytes (already stamped with version head+1). The log before the
# reset is trimmed: no reader can continue through a replacement without loading the snapshot.
RESET_LUA = """
local done = redis.call('GET', KEYS[4])
if done then return {'dup', tonumber(done)} end
local head = tonumber(redis.call('HGET', KEYS[1], 'head') or '0')
if head ~= tonumber(ARGV[1]) then return {'conflict', head} end
local t = redis.call('TIME')
local ts = t[1] .. '.' .. string.format('%06d', tonumber(t[2]))
local v = string.format('%d', head + 1)
redis.call('SET', KEYS[2], ARGV[5])
redis.call('XADD', KEYS[3], v .. '-0', 'op', 'reset', 'n', '', 'ref', '', 'ts', ts,
           'sum', ARGV[3])
redis.call('XTRIM', KEYS[3], 'MINID', v .. '-0')
redis.call('HSET', KEYS[1], 'head', v, 'head_ts', ts, 'head_checksum', ARGV[3],
           'snap_version', v, 'snap_checksum', ARGV[3], 'snap_entries', ARGV[4], 'snap_ts', ts)
redis.call('SET', KEYS[4], v, 'PX', ARGV[2])
return {'ok', head + 1}
"""

# Store a compacted snapshot. KEYS: meta, snapshot, log. ARGV: version, checksum, entries, bytes,
# lowest version to keep in the log. Refuses to go back (a slower compactor loses the race) and
# never trims a version the new snapshot does not cover.
COMPACT_LUA = """
local sv = tonumber(redis.call('HGET', KEYS[1], 'snap_version') or '-1')
local v = tonumber(ARGV[1])
if v <= sv then return 0 end
local head = tonumber(redis.call('HGET', KEYS[1], 'head') or '0')
if v > head then return redis.error_reply('compact: snapshot version beyond the log head') end
local keep = tonumber(ARGV[5])
if keep > v + 1 then return redis.error_reply('compact: would trim versions not in snapshot') end
local t = redis.call('TIME')
redis.call('SET', KEYS[2], ARGV[4])
redis.call('HSET', KEYS[1], 'snap_version', ARGV[1], 'snap_checksum', ARGV[2],
           'snap_entries', ARGV[3], 'snap_ts', t[1] .. '.' .. string.format('%06d', tonumber(t[2])))
redis.call('XTRIM', KEYS[3], 'MINID', string.format('%d-0', keep))
return 1
"""

# Read the snapshot and the start of the log after it in one atomic step (a compaction between a
# GET and an XRANGE could otherwise trim the entries the reader needs). KEYS: meta, snapshot, log.
# ARGV: max entries. Returns {snapshot bytes or nil, head, entries}.
FETCH_LUA = """
local sv = redis.call('HGET', KEYS[1], 'snap_version')
local head = redis.call('HGET', KEYS[1], 'head') or '0'
local data = false
local from = 1
if sv then
  data = redis.call('GET', KEYS[2])
  from = tonumber(sv) + 1
end
local tail = redis.call('XRANGE', KEYS[3], string.format('%d-0', from), '+', 'COUNT', ARGV[1])
return {data, head, tail}
"""


@dataclass(frozen=True, slots=True)
class HubMeta:
    head: int
    head_ts: float | None
    head_checksum: str | None
    snap_version: int | None
    snap_checksum: str | None
    snap_entries: int | None


def check_binary_client(client: aioredis.Redis) -> None:
    """Refuse a client that decodes replies: the snapshot is binary."""
    if _kwargs(client).get("decode_responses"):
        raise ValueError("sync needs a redis client with decode_responses=False")


def _kwargs(client: aioredis.Redis) -> dict[str, Any]:
    kwargs: dict[str, Any] = client.get_connection_kwargs()  # type: ignore[no-untyped-call]
    return kwargs


def _int(raw: Any) -> int | None:
    return None if raw is None else int(raw)


def _float(raw: Any) -> float | None:
    return None if raw is None else float(raw)


def _str(raw: Any) -> str | None:
    if raw is None:
        return None
    return raw.decode("ascii") if isinstance(raw, bytes) else str(raw)


async def read_meta(client: aioredis.Redis, keys: Keys) -> HubMeta:
    raw = await client.hmget(
        keys.meta,
        ["head", "head_ts", "head_checksum", "snap_version", "snap_checksum", "snap_entries"],
    )
    try:
        return HubMeta(
            head=_int(raw[0]) or 0,
            head_ts=_float(raw[1]),
            head_checksum=_str(raw[2]),
            snap_version=_int(raw[3]),
            snap_checksum=_str(raw[4]),
            snap_entries=_int(raw[5]),
        )
    except (ValueError, UnicodeDecodeError):
        raise SyncError(f"redis {keys.meta}: not a upcs sync meta record") from None


def decode_entries(raw: Sequence[Any] | None) -> list[LogEntry]:
    out = []
    for entry_id, fields in raw or ():
        if isinstance(fields, list):  # raw reply (Lua script, raw XREAD): [k1, v1, k2, v2, ...]
            out.append(decode_flat(entry_id, fields))
        else:
            out.append(decode_entry(entry_id, fields))
    return out


async def read_tail(
    client: aioredis.Redis, keys: Keys, after: int, limit: int = TAIL_PAGE_ENTRIES
) -> list[LogEntry]:
    """Up to `limit` log entries with version > `after`, in order."""
    raw = await client.xrange(keys.log, min=f"{after + 1}-0", max="+", count=limit)
    return decode_entries(raw or [])


async def fetch_snapshot_and_tail(
    client: aioredis.Redis, keys: Keys, limit: int = TAIL_PAGE_ENTRIES
) -> tuple[ListSnapshot, int, list[LogEntry]]:
    """The hub snapshot (empty at version 0 if none yet), its head, and the log after it."""
    script = client.register_script(FETCH_LUA)
    data, head, tail = await script(keys=[keys.meta, keys.snapshot, keys.log], args=[limit])
    where = f"redis key {keys.snapshot}"
    try:
        snapshot = (
            ListSnapshot.empty()
            if data is None
            # Verifying and decoding 1M entries takes ~40 ms: off the loop (hashlib and the
            # copy release the GIL for part of it).
            else await asyncio.to_thread(read_snapshot_bytes, data, where)
        )
        return snapshot, int(head), decode_entries(tail)
    except (SnapshotFileError, WireError) as exc:
        raise SyncError(str(exc)) from None


async def read_sites(client: aioredis.Redis, keys: Keys) -> list[SiteReport]:
    raw = await client.hgetall(keys.sites)
    out = []
    for name, value in sorted(raw.items()):
        site = name.decode() if isinstance(name, bytes) else str(name)
        out.append(decode_site(site, value))
    return out


def where(client: aioredis.Redis) -> str:
    """host:port of a client, for messages (never the password)."""
    kw = _kwargs(client)
    if kw.get("path"):
        return str(kw["path"])
    return f"{kw.get('host', '?')}:{kw.get('port', '?')}"
