"""What a follower reports about itself (the gateway exports it as metrics and uses it for
readiness: `/readyz` fails when `last_sync_unix` is older than its configured age)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FollowerStatus"]


@dataclass(frozen=True)
class FollowerStatus:
    applied_version: int
    entries: int
    checksum: str  # of the newest list hashed here (version `checksum_version`)
    hub_version: int | None  # newest version the hub is known to have (None: never reached it)
    lag_versions: int | None  # hub_version - applied_version
    lag_seconds: float | None  # 0 when in sync; else seconds since last fully in sync
    reconnects: int
    resyncs: int  # full reloads (hub snapshot, or snapshot file reloads)
    last_sync_unix: float | None  # last time the list was confirmed current with its source
    connected: bool
    last_error: str | None = None  # the latest fault, for logs and operators (never a number)
    checksum_version: int | None = None  # None: applied_version
