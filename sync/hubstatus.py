"""The hub's view of every site: what `upcs sync status` prints."""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis

from sync.config import SyncConfig
from sync.redisio import check_binary_client, read_meta, read_sites
from sync.wire import Keys

__all__ = ["HubStatus", "SiteStatus", "read_hub_status"]

_DEFAULT = SyncConfig()


@dataclass(frozen=True)
class SiteStatus:
    site: str
    applied_version: int
    checksum: str
    checksum_version: int  # the site's version that `checksum` is of
    entries: int
    lag_versions: int  # hub head now - the site's applied version at its last report
    lag_seconds: float | None  # as the site itself measured it at its last report
    last_seen_s: float  # seconds since its last report
    in_sync: bool  # at the hub head, with the hub's checksum for it


@dataclass(frozen=True)
class HubStatus:
    version: int
    checksum: str | None
    published_unix: float | None
    snapshot_version: int | None
    snapshot_entries: int | None
    sites: tuple[SiteStatus, ...]


async def read_hub_status(
    client: aioredis.Redis, config: SyncConfig = _DEFAULT, *, now_unix: float
) -> HubStatus:
    check_binary_client(client)
    keys = Keys(config.key_prefix)
    meta = await read_meta(client, keys)
    sites = []
    for report in await read_sites(client, keys):
        at_head = report.applied_version == meta.head
        checksum_version = (
            report.applied_version if report.checksum_version is None else report.checksum_version
        )
        sites.append(
            SiteStatus(
                site=report.site,
                applied_version=report.applied_version,
                checksum=report.checksum,
                checksum_version=checksum_version,
                entries=report.entries,
                lag_versions=max(0, meta.head - report.applied_version),
                lag_seconds=report.lag_seconds,
                last_seen_s=max(0.0, now_unix - report.reported_unix),
                in_sync=at_head
                and (
                    meta.head_checksum is None
                    or (checksum_version == meta.head and report.checksum == meta.head_checksum)
                ),
            )
        )
    return HubStatus(
        version=meta.head,
        checksum=meta.head_checksum,
        published_unix=meta.head_ts,
        snapshot_version=meta.snap_version,
        snapshot_entries=meta.snap_entries,
        sites=tuple(sites),
    )
