"""Overload control at the edge: when the gateway cannot keep up, answer new INVITEs 503 with
Retry-After instead of letting the receive queue grow until every call times out (the Kamailio
anchor's "no overload control" trap, shared/anchors/kamailio/RESULTS.md; RFC 3261 §21.5.4).

The core already sheds when its transaction table is full (ProxyConfig.max_transactions); this
module covers the CPU. Its signal is the kernel's receive backlog on the UDP sockets
(/proc/net/udp `rx_queue`): a queue that keeps growing means datagrams arrive faster than the
gateway handles them, whatever the cause (our own cost, or other processes taking the CPU).
Time spent in handlers is no signal on a shared machine: a `sendto` that wakes the peer can be
charged the peer's run time. While the backlog is high, a growing share of *new* INVITEs is
refused before it costs a full parse, a screening, a forward and two sends. Shedding forwards
nothing (safety invariant 1), and a retransmission of an INVITE the core already holds is never
shed: it is recognised by its exact bytes, which a retransmission repeats (RFC 3261 §17.1.1.2).
"""

from __future__ import annotations

import secrets
from collections import OrderedDict

from gateway.sip import Message, SipError, parse_message

__all__ = [
    "SHED_BACKLOG_HIGH_BYTES",
    "SHED_BACKLOG_LOW_BYTES",
    "SHED_MIN_CPU_SHARE",
    "SHED_STEP_DOWN",
    "SHED_STEP_UP",
    "SHED_TAG",
    "SHED_WINDOW_S",
    "LoadMeter",
    "RecentInvites",
    "shed_response",
    "udp_backlog_bytes",
]

# Backlog marks, in kernel-accounted bytes (skb truesize, ~2.3 KB per INVITE-sized datagram):
# 2 MiB is ~900 datagrams, ~75 ms of queueing at 2,000 calls/s (~12,000 datagrams/s in), far
# below T1 = 500 ms (RFC 3261 §17.1.1.1), so callers are refused before they start
# retransmitting. Shedding eases off once the backlog is under 256 KiB.
SHED_BACKLOG_HIGH_BYTES = 2 * 1024 * 1024
SHED_BACKLOG_LOW_BYTES = 256 * 1024
# How often the backlog is read: a few times per T1, for ~50 µs each (one small /proc read).
SHED_WINDOW_S = 0.1
# Shedding ratio steps per window. Up only while the backlog is high *and still growing* (a
# shrinking queue means enough is being refused already: stepping further would refuse calls
# the gateway could carry, as measured here), down slowly to probe capacity back.
SHED_STEP_UP = 0.1
SHED_STEP_DOWN = 0.05
# Shed only while this process itself uses most of a core: a backlog that builds while it idles
# comes from CPU contention (on the 2-core test machine: sipp and other jobs), and refusing
# calls then lowered the calls completed without draining the queue (measured here).
SHED_MIN_CPU_SHARE = 0.85
SHED_GROWTH_DIVISOR = 16  # growth under 1/16 of the high mark per window counts as steady
SHED_TAG = "shed"  # To-tag prefix of our 503s, so their ACKs are recognised and absorbed here
# INVITEs remembered for retransmission checks: 64*T1 = 32 s, Timer B (RFC 3261 §17.1.1.2),
# after which no PBX retransmits an INVITE.
RECENT_INVITE_S = 32.0
RECENT_INVITE_MAX = 200_000  # 2,000 calls/s for 32 s is 64,000; bounded against floods
_PROC_UDP = ("/proc/net/udp", "/proc/net/udp6")


def udp_backlog_bytes(inodes: set[int]) -> int | None:
    """Bytes queued for reading on the UDP sockets with these inodes (Linux); None if unknown."""
    total = 0
    found = False
    for path in _PROC_UDP:
        try:
            with open(path, encoding="ascii") as fh:
                next(fh, None)  # header
                for line in fh:
                    fields = line.split()
                    # sl local rem st tx_queue:rx_queue tr:when retrnsmt uid timeout inode ...
                    if len(fields) > 9 and int(fields[9]) in inodes:
                        total += int(fields[4].partition(":")[2], 16)
                        found = True
        except (OSError, ValueError):
            continue
    return total if found else None


class LoadMeter:
    """Receive backlog, read once per window, turned into a shedding ratio.

    Above the high mark, while the backlog is not shrinking, the share of new INVITEs refused
    grows by `SHED_STEP_UP` per window; under the low mark it shrinks by `SHED_STEP_DOWN`;
    otherwise it holds. So the gateway settles on refusing about the excess, not everything.
    """

    __slots__ = ("_credit", "_high", "_low", "last_backlog", "shed_ratio")

    def __init__(
        self,
        high_bytes: int = SHED_BACKLOG_HIGH_BYTES,
        low_bytes: int = SHED_BACKLOG_LOW_BYTES,
    ) -> None:
        self._high = high_bytes
        self._low = min(low_bytes, high_bytes)
        self._credit = 0.0
        self.shed_ratio = 0.0
        self.last_backlog = 0

    @property
    def overloaded(self) -> bool:
        return self.shed_ratio > 0.0

    def should_shed(self) -> bool:
        """Whether to refuse this new INVITE: exactly `shed_ratio` of them, evenly spread."""
        if self.shed_ratio <= 0.0:
            return False
        self._credit += self.shed_ratio
        if self._credit >= 1.0:
            self._credit -= 1.0
            return True
        return False

    def update(self, backlog_bytes: int) -> bool:
        """Take one backlog reading; True when the overloaded state changed (caller logs it)."""
        was = self.overloaded
        # "Growing" means by a margin: a queue hovering at one level is noise, not a trend.
        growing = backlog_bytes > self.last_backlog + self._high // SHED_GROWTH_DIVISOR
        self.last_backlog = backlog_bytes
        if backlog_bytes >= self._high and growing:
            self.shed_ratio = min(1.0, self.shed_ratio + SHED_STEP_UP)
        elif backlog_bytes <= self._low:
            self.shed_ratio = max(0.0, self.shed_ratio - SHED_STEP_DOWN)
            if self.shed_ratio < SHED_STEP_DOWN / 2:  # float residue: call it zero
                self.shed_ratio = 0.0
        return was != self.overloaded


class RecentInvites:
    """Exact bytes (hashed) of INVITEs handed to the core lately, to recognise retransmissions."""

    __slots__ = ("_seen",)

    def __init__(self) -> None:
        self._seen: OrderedDict[int, float] = OrderedDict()  # oldest first

    def add(self, data: bytes, now: float) -> None:
        seen = self._seen
        key = hash(data)
        seen[key] = now
        seen.move_to_end(key)
        cutoff = now - RECENT_INVITE_S
        while seen:
            oldest, when = next(iter(seen.items()))
            if when >= cutoff and len(seen) <= RECENT_INVITE_MAX:
                break
            del seen[oldest]

    def __contains__(self, data: bytes) -> bool:
        return hash(data) in self._seen

    def __len__(self) -> int:
        return len(self._seen)


def shed_response(data: bytes, retry_after_s: int) -> tuple[bytes, str] | None:
    """The 503 + Retry-After for a new INVITE, and its Call-ID; None when the message is not a
    new, readable INVITE (the core then handles it as usual)."""
    try:
        msg = parse_message(data)
        if msg.method != "INVITE" or msg.to().tag or not msg.via_values():
            return None
        msg.from_()
    except SipError:
        return None
    headers: list[tuple[str, str, str]] = []
    for key, name, value in msg.headers:
        if key in ("via", "from", "call-id", "cseq"):
            headers.append((key, name, value))
        elif key == "to":
            # §8.2.6.2: a final response adds a To tag; a fresh one per refusal.
            headers.append((key, name, f"{value};tag={SHED_TAG}{secrets.token_hex(4)}"))
    headers.append(("retry-after", "Retry-After", str(retry_after_s)))
    return Message.response(503, "Service Unavailable", headers).render(), msg.call_id
