"""The proxy core's one frozen configuration (STYLE.md rule 5) and its output record."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import NamedTuple

from gateway.sip.limits import MAX_DIALOGS, MAX_TRANSACTIONS

__all__ = ["DEFAULT_ALLOW_FROM", "Network", "Outgoing", "ProxyConfig"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
# DESIGN.md "Contracts": the default --allow-from is loopback only.
DEFAULT_ALLOW_FROM: tuple[Network, ...] = (
    ipaddress.ip_network("127.0.0.0/8"),
    ipaddress.ip_network("::1/128"),
)


class Outgoing(NamedTuple):
    """One message to send: wire bytes, "udp" or "tcp", and (host, port)."""

    data: bytes
    transport: str
    dest: tuple[str, int]


@dataclass(frozen=True, slots=True)
class ProxyConfig:
    """Configuration of `ProxyCore`.

    upstream: (transport "udp"|"tcp", host, port) of the carrier trunk; every request from the
      PBX goes there, and only requests from there count as the trunk side.
    local_host, local_port: what the gateway puts in Via and Record-Route.
    allow_from: networks the PBX side may send from; anything else (not the trunk) gets the
      refusal.
    refusal_status/refusal_reason: the answer to blocked, invalid and unauthorised requests
      (one look for all: safety invariant 3).
    record_route: add Record-Route with ;lr so in-dialog requests pass the gateway (§16.6 step 4).
    t1_s, t2_s, t4_s: RFC 3261 §17.1.1.1 timer bases; timer_c_s: proxy INVITE timer (§16.6
      step 11, "greater than 3 minutes").
    dialog_idle_s: how long a dialog is remembered without any request in it.
    forward_register: pass REGISTER to the trunk (it reaches no callee); off refuses it.
    branch_secret: key for branch ids and To tags (deterministic per instance, §16.11); empty
      means a random one per process.
    max_transactions, max_dialogs: beyond these, new requests get 503 (overload, not collapse).
    retry_after_s: the Retry-After on 503 when overloaded.
    """

    upstream: tuple[str, str, int]
    local_host: str
    local_port: int
    allow_from: tuple[Network, ...] = DEFAULT_ALLOW_FROM
    refusal_status: int = 403
    refusal_reason: str = "Forbidden"
    record_route: bool = True
    t1_s: float = 0.5
    t2_s: float = 4.0
    t4_s: float = 5.0
    timer_c_s: float = 180.0
    dialog_idle_s: float = 4 * 3600.0
    forward_register: bool = False
    branch_secret: bytes = b""
    max_transactions: int = MAX_TRANSACTIONS
    max_dialogs: int = MAX_DIALOGS
    retry_after_s: int = 5

    def __post_init__(self) -> None:
        transport = self.upstream[0].lower()
        if transport not in ("udp", "tcp"):
            raise ValueError(f"upstream transport {self.upstream[0]!r}: must be udp or tcp")
        if not 400 <= self.refusal_status <= 699:
            raise ValueError(f"refusal_status {self.refusal_status}: must be a 4xx-6xx status")
        if not 0 < self.t1_s <= self.t2_s:
            raise ValueError("timers: need 0 < t1_s <= t2_s")
