"""The gateway's one frozen config (STYLE.md rule 5): what `upcs gateway run` and `[gateway]` set.

Defaults are defined here once; the CLI shows them. Units are in the field names.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from gateway.transport.endpoint import Endpoint

__all__ = [
    "DEFAULT_ALLOW_FROM",
    "DEFAULT_DRAIN_TIMEOUT_S",
    "DEFAULT_RETRY_AFTER_S",
    "GatewaySettings",
    "Network",
]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# No open relay by default (issue 3): only the local host may send calls until told otherwise.
DEFAULT_ALLOW_FROM: tuple[Network, ...] = (
    ipaddress.IPv4Network("127.0.0.0/8"),
    ipaddress.IPv6Network("::1/128"),
)
# Timer B / F run 64*T1 = 32 s (RFC 3261 §17.1.1.2, §17.1.2.2): after that every client
# transaction has ended on its own, so waiting longer for in-flight work gains nothing.
DEFAULT_DRAIN_TIMEOUT_S = 32.0
# RFC 3261 §20.33: how long a refused PBX should wait before retrying; a restart takes seconds.
DEFAULT_RETRY_AFTER_S = 5


@dataclass(frozen=True)
class GatewaySettings:
    """Everything `upcs gateway run` needs, resolved from flags over `[gateway]` over defaults."""

    listen: tuple[Endpoint, ...]
    upstream: Endpoint
    snapshot_path: Path | None = None
    allow_from: tuple[Network, ...] = DEFAULT_ALLOW_FROM
    metrics: tuple[str, int] | None = None  # (host, port) of /metrics, /healthz, /readyz
    record_route: bool = True  # needed to see in-dialog REFER (DESIGN.md screening rule 6)
    refusal_status: int = 403
    refusal_reason: str = "Forbidden"
    workers: int = 1
    max_list_age_s: float | None = None  # /readyz fails when the list is older; None = no limit
    drain_timeout_s: float = DEFAULT_DRAIN_TIMEOUT_S
    retry_after_s: int = DEFAULT_RETRY_AFTER_S
    # Overload control: beyond this many transactions new requests get 503 + Retry-After;
    # None keeps the core's own limit (gateway/sip/limits.py MAX_TRANSACTIONS, sized for 2,000
    # calls/s with completed transactions lingering 64*T1).
    max_transactions: int | None = None
    allow_empty: bool = False
    advertise_host: str | None = None  # Via / Record-Route host when listening on a wildcard
    redis_url: str | None = None
    site: str | None = None
    key_prefix: str = "upcs"  # Redis key prefix shared with sync (attempts stream)
    timers_s: dict[str, float] = field(default_factory=dict)  # t1_s, t2_s, t4_s, timer_c_s
    # Overload control at the edge (gateway/transport/overload.py): new INVITEs start getting
    # 503 + Retry-After when this many bytes wait in the UDP receive queues. Off (0) by default:
    # on the shared 2-core test machine it completed fewer calls than no shedding at 1.2-2x
    # overload (figures in the gateway report), so it stays opt-in until the benchmark tunes it
    # (SHED_BACKLOG_HIGH_BYTES is the starting point). The core's transaction limit is always on.
    shed_backlog_bytes: int = 0
    log_key: bytes | None = None  # key for short number tags in logs; random per process if None
    worker_index: int | None = None  # set in each process of a --workers N gateway
