"""Configuration for the sync layer: one frozen dataclass per side, units in the field names.

Every default is a named constant with the reason for its value, and the CLI shows them.
`SyncConfig` is shared by the hub (publisher) and the prisons (followers): both must agree on the
key prefix. The retry policy is injected (STYLE.md rule 7): tests pass `Backoff.none()`.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Protocol

__all__ = [
    "DEFAULT_KEY_PREFIX",
    "Backoff",
    "FollowerConfig",
    "RetryPolicy",
    "SyncConfig",
    "SyncConfigError",
]

DEFAULT_KEY_PREFIX = "upcs"  # interfaces.md: the attempts stream uses the same default prefix
# A follower that fell behind by less than this replays the log instead of downloading the whole
# list; 10,000 changes is weeks of approvals at the hub's rate, and ~1 MB of stream in Redis.
DEFAULT_COMPACT_EVERY_VERSIONS = 10_000
DEFAULT_RETAIN_VERSIONS = 10_000
# The hub's outbox relay retries a failed publish within minutes; a week also covers a Redis outage
# over a long weekend, after which a retry must still not create a second version.
DEFAULT_IDEMPOTENCY_TTL_S = 7 * 24 * 3600.0
# A publish keeps retrying through a Redis restart (Sentinel failover takes ~10-30 s) before it
# reports failure to the caller (the outbox keeps the change and retries later).
DEFAULT_PUBLISH_TIMEOUT_S = 30.0
# How long one blocking XREAD waits: also how often an idle follower re-checks the hub's head and
# reports itself, so a dead connection is noticed within about this time plus the socket timeout.
DEFAULT_BLOCK_S = 1.0
# Entries per XREAD: large enough that a backlog is applied in few swaps (a batch too big for an
# overlay costs one copy of the whole list, ~5 ms at 1M entries on the reference machine).
DEFAULT_BATCH_MAX_ENTRIES = 10_000
# Comparing the list with the hub's checksum hashes every entry (~18 ms at 1M entries on the
# reference machine), so a follower under a stream of changes does it about this often (with
# +-50% jitter), and whenever the log goes quiet; each change itself is applied in O(change).
# A divergence (which only a bug can cause) is found within this time and fixed by a resync
# that never undoes a bar.
DEFAULT_VERIFY_INTERVAL_S = 10.0
DEFAULT_REPORT_INTERVAL_S = 1.0  # `upcs sync status` shows each site to within a second
# Persisting rewrites the whole file (fsync); every 10 s bounds both the disk work and what a
# restart without the hub could miss (nothing: the log replays it when the hub is back).
DEFAULT_PERSIST_INTERVAL_S = 10.0
DEFAULT_CONNECT_TIMEOUT_S = 5.0  # redis-py's own default
# Extra time beyond the XREAD block before a silent socket counts as dead.
DEFAULT_SOCKET_MARGIN_S = 5.0
# Backoff: first retry after 0.1 s, doubling, never more than 10 s apart, full jitter so 120
# prisons reconnecting after a hub failover do not arrive in lockstep (AWS architecture blog,
# "Exponential Backoff And Jitter", 2015).
DEFAULT_BACKOFF_INITIAL_S = 0.1
DEFAULT_BACKOFF_CAP_S = 10.0
DEFAULT_BACKOFF_FACTOR = 2.0


class SyncConfigError(ValueError):
    """A [sync] setting is missing, unknown or out of range; the message names it."""


class RetryPolicy(Protocol):
    def delay_s(self, attempt: int) -> float:
        """Seconds to wait before retry number `attempt` (0 for the first retry)."""
        ...


@dataclass(frozen=True)
class Backoff:
    """Capped exponential backoff with full jitter: uniform(0, min(cap, initial * factor**n))."""

    initial_s: float = DEFAULT_BACKOFF_INITIAL_S
    cap_s: float = DEFAULT_BACKOFF_CAP_S
    factor: float = DEFAULT_BACKOFF_FACTOR
    jitter: bool = True
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.initial_s < 0 or self.cap_s < 0 or self.factor < 1:
            raise SyncConfigError("backoff: initial_s and cap_s must be >= 0 and factor >= 1")

    @classmethod
    def none(cls) -> Backoff:
        """Retry at once (tests)."""
        return cls(initial_s=0.0, cap_s=0.0, jitter=False)

    def delay_s(self, attempt: int) -> float:
        ceiling = min(self.cap_s, self.initial_s * self.factor ** min(attempt, 64))
        return self.rng.uniform(0.0, ceiling) if self.jitter else ceiling


@dataclass(frozen=True)
class SyncConfig:
    """What the hub and every prison agree on. Key names derive from `key_prefix`."""

    key_prefix: str = DEFAULT_KEY_PREFIX
    compact_every_versions: int = DEFAULT_COMPACT_EVERY_VERSIONS
    retain_versions: int = DEFAULT_RETAIN_VERSIONS
    idempotency_ttl_s: float = DEFAULT_IDEMPOTENCY_TTL_S
    publish_timeout_s: float = DEFAULT_PUBLISH_TIMEOUT_S
    retry: RetryPolicy = field(default_factory=Backoff, compare=False)

    def __post_init__(self) -> None:
        if not self.key_prefix or any(ch in self.key_prefix for ch in "{} \t\r\n"):
            raise SyncConfigError("sync.key_prefix must be non-empty without braces or whitespace")
        if self.compact_every_versions < 1:
            raise SyncConfigError("sync.compact_every_versions must be at least 1")
        if self.retain_versions < 0:
            raise SyncConfigError("sync.retain_versions must not be negative")
        if self.idempotency_ttl_s <= 0 or self.publish_timeout_s < 0:
            raise SyncConfigError("sync.idempotency_ttl_s must be > 0, publish_timeout_s >= 0")

    @classmethod
    def from_section(cls, section: Mapping[str, Any], **overrides: Any) -> SyncConfig:
        """Build from the config file's [sync] table (unknown keys are refused by name)."""
        return cls(**_pick(cls, section, overrides, ignore=FollowerConfig.field_names()))


@dataclass(frozen=True)
class FollowerConfig:
    """The prison side: how to read, how often to report and persist, how to retry."""

    sync: SyncConfig = field(default_factory=SyncConfig)
    block_s: float = DEFAULT_BLOCK_S
    batch_max_entries: int = DEFAULT_BATCH_MAX_ENTRIES
    report_interval_s: float = DEFAULT_REPORT_INTERVAL_S
    persist_interval_s: float = DEFAULT_PERSIST_INTERVAL_S
    verify_interval_s: float = DEFAULT_VERIFY_INTERVAL_S  # 0: after every batch
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S
    socket_margin_s: float = DEFAULT_SOCKET_MARGIN_S
    backoff: RetryPolicy = field(default_factory=Backoff, compare=False)

    def __post_init__(self) -> None:
        if self.block_s <= 0 or self.report_interval_s <= 0 or self.persist_interval_s <= 0:
            raise SyncConfigError(
                "sync: block_s, report_interval_s and persist_interval_s must be positive"
            )
        if self.verify_interval_s < 0:
            raise SyncConfigError("sync.verify_interval_s must not be negative")
        if self.batch_max_entries < 1:
            raise SyncConfigError("sync.batch_max_entries must be at least 1")
        if self.connect_timeout_s <= 0 or self.socket_margin_s <= 0:
            raise SyncConfigError("sync: connect_timeout_s and socket_margin_s must be positive")

    @classmethod
    def field_names(cls) -> frozenset[str]:
        return frozenset(f.name for f in fields(cls)) - {"sync", "backoff"}

    @classmethod
    def from_section(cls, section: Mapping[str, Any], **overrides: Any) -> FollowerConfig:
        """Build from the [sync] table: follower keys here, shared keys into `sync`."""
        shared = {k: v for k, v in section.items() if k not in cls.field_names()}
        own = {k: v for k, v in section.items() if k in cls.field_names()}
        sync = SyncConfig.from_section(shared)
        return cls(sync=sync, **_pick(cls, own, overrides, ignore=frozenset({"sync"})))


def _pick(
    cls: type[Any], section: Mapping[str, Any], overrides: Mapping[str, Any], ignore: frozenset[str]
) -> dict[str, Any]:
    known = {f.name: f for f in fields(cls)}
    chosen: dict[str, Any] = {}
    for key, value in section.items():
        if key in ignore:
            continue
        if key not in known or key in ("retry", "backoff", "sync"):
            raise SyncConfigError(f"[sync]: unknown setting {key!r}")
        if not _type_ok(known[key].default, value):
            raise SyncConfigError(
                f"[sync] {key}: expected {type(known[key].default).__name__}, got {value!r}"
            )
        chosen[key] = value
    chosen.update(overrides)
    return chosen


def _type_ok(default: object, value: object) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(default, str):
        return isinstance(value, str)
    if isinstance(default, float):
        return isinstance(value, int | float)
    return isinstance(value, int) and isinstance(default, int)
