"""Hub-to-prison sync: a versioned snapshot and an ordered change log in Redis (DESIGN.md).

`Publisher` (hub side) appends changes and compacts the snapshot; `RedisFollower` (prison side)
keeps a `blocklist.ListHolder` equal to the hub's list; `SnapshotFileFollower` follows a snapshot
file when there is no hub. The decisions live in the sans-I/O `SyncMachine` (sync/state.py).
"""

from sync.config import Backoff, FollowerConfig, RetryPolicy, SyncConfig, SyncConfigError
from sync.filefollower import SnapshotFileFollower
from sync.follower import RedisFollower
from sync.hubstatus import HubStatus, SiteStatus, read_hub_status
from sync.publisher import MAX_CHANGES_PER_PUBLISH, Publisher, PublishError
from sync.redisio import SyncError
from sync.state import Gap, HubBehindError, Step, SyncMachine
from sync.status import FollowerStatus
from sync.wire import Change, Keys, LogEntry, SiteReport, WireError

__all__ = [
    "MAX_CHANGES_PER_PUBLISH",
    "Backoff",
    "Change",
    "FollowerConfig",
    "FollowerStatus",
    "Gap",
    "HubBehindError",
    "HubStatus",
    "Keys",
    "LogEntry",
    "PublishError",
    "Publisher",
    "RedisFollower",
    "RetryPolicy",
    "SiteReport",
    "SiteStatus",
    "SnapshotFileFollower",
    "Step",
    "SyncConfig",
    "SyncConfigError",
    "SyncError",
    "SyncMachine",
    "WireError",
    "read_hub_status",
]
