"""CPU per call through the SIP core alone (no sockets): `python -m bench.sip_core`.

Drives `gateway.sip.ProxyCore` the way the asyncio adapter does (receive, then drain
`outgoing()` and `events()`, fire due timers) with a fake clock advancing at `--rate` calls/s,
for the issue's benchmark call mix: half the calls allowed (INVITE, 100 and 180 and 200 back,
ACK and BYE through Record-Route, 200 to the BYE) and half blocked (INVITE, 403, ACK for the
403). The peers' messages are built outside the timed sections; only the core's own work is
timed (per call: every receive/outgoing/events/handle_timer it took).

Baselines measured in the same run, so results compare across machines and loads: the parse of
the INVITE alone and the injected screen alone, per call.
"""

from __future__ import annotations

import argparse
import ipaddress
import random
import statistics
import time
from collections.abc import Callable

from blocklist import DialPlan, ListHolder, ListSnapshot, Screener
from gateway.app import settle_heap
from gateway.sip import Message, ProxyConfig, ProxyCore, parse_message

__all__ = ["main", "run"]

PBX = ("127.0.0.1", 5070)
TRUNK = ("127.0.0.1", 5080)
GW = ("127.0.0.1", 5060)
# Ofcom drama mobiles (common.md): 900000-900499 barred, 900500-900999 dialled as allowed.
BARRED_BASE = 447700900000
LIST_FILLER = 100_000  # seeded random UK-like numbers so the list is not trivially small
LIST_SEED = 20261203


def _screen() -> Callable[[str], str]:
    rng = random.Random(LIST_SEED)
    numbers = [BARRED_BASE + i for i in range(500)]
    numbers += [447000000000 + rng.randrange(999_999_999) for _ in range(LIST_FILLER)]
    holder = ListHolder(ListSnapshot.from_numbers(numbers, 1))
    return Screener(DialPlan(), holder).screen


def _invite(n: int, number: str) -> bytes:
    body = b"v=0\r\no=pbx 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    body += b"m=audio 6000 RTP/AVP 0\r\n"
    return (
        f"INVITE sip:{number}@127.0.0.1:5060 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-{n}-1-0\r\n"
        f'From: "Wing B" <sip:cell{n}@127.0.0.1>;tag=pbx1x{n}\r\n'
        f"To: <sip:{number}@127.0.0.1>\r\n"
        f"Call-ID: {n}-1@127.0.0.1\r\n"
        "CSeq: 1 INVITE\r\n"
        "Contact: <sip:pbx@127.0.0.1:5070;transport=UDP>\r\n"
        "Max-Forwards: 70\r\n"
        "Content-Type: application/sdp\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def _answer(req: Message, status: int, reason: str, n: int) -> bytes:
    """What sipp's UAS sends back ([last_Via:], [last_Record-Route:] ... copied)."""
    lines = [f"SIP/2.0 {status} {reason}"]
    for k, name, v in req.headers:
        if k in ("via", "from", "call-id", "cseq") or (k == "record-route" and status > 100):
            lines.append(f"{name}: {v}")
        elif k == "to":
            lines.append(f"{name}: {v};tag=trunk1x{n}" if ";tag=" not in v else f"{name}: {v}")
    if status > 100 and req.cseq_method == "INVITE":
        lines.append("Contact: <sip:trunk@127.0.0.1:5080;transport=UDP>")
    lines.append("Content-Length: 0")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _in_dialog(method: str, n: int, number: str, cseq: int, branch: str) -> bytes:
    return (
        f"{method} sip:trunk@127.0.0.1:5080;transport=UDP SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5070;branch={branch}\r\n"
        "Route: <sip:127.0.0.1:5060;lr>\r\n"
        f'From: "Wing B" <sip:cell{n}@127.0.0.1>;tag=pbx1x{n}\r\n'
        f"To: <sip:{number}@127.0.0.1>;tag=trunk1x{n}\r\n"
        f"Call-ID: {n}-1@127.0.0.1\r\n"
        f"CSeq: {cseq} {method}\r\n"
        "Max-Forwards: 70\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


class _Driver:
    """One core, a fake clock, and the time spent inside the core."""

    def __init__(self, rate: float) -> None:
        config = ProxyConfig(
            upstream=("udp", TRUNK[0], TRUNK[1]),
            local_host=GW[0],
            local_port=GW[1],
            allow_from=(ipaddress.ip_network("127.0.0.0/8"),),
            branch_secret=b"bench-secret",
        )
        self.core = ProxyCore(config, _screen())
        self.now = 1000.0
        self.step = 1.0 / rate
        self.spent = 0.0
        self.sent = 0
        self.events = 0

    def feed(self, data: bytes, source: tuple[str, int]) -> list[bytes]:
        core = self.core
        t0 = time.perf_counter()
        core.receive(data, "udp", source, self.now)
        out = core.outgoing()
        evs = core.events()
        nt = core.next_timer()
        if nt is not None and nt <= self.now:
            core.handle_timer(self.now)
            out += core.outgoing()
            evs += core.events()
        self.spent += time.perf_counter() - t0
        self.sent += len(out)
        self.events += len(evs)
        return [o.data for o in out]

    def tick(self) -> None:
        self.now += self.step


def _call(d: _Driver, n: int, allowed: bool) -> None:
    number = f"+{BARRED_BASE + (500 + n % 500 if allowed else n % 500)}"
    out = d.feed(_invite(n, number), PBX)
    if not allowed:
        assert len(out) == 1 and out[0].startswith(b"SIP/2.0 403"), out
        to_line = next(x for x in out[0].decode().split("\r\n") if x.startswith("To:"))
        ack = (
            f"ACK sip:{number}@127.0.0.1:5060 SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-{n}-1-0\r\n"
            f'From: "Wing B" <sip:cell{n}@127.0.0.1>;tag=pbx1x{n}\r\n'
            f"{to_line}\r\nCall-ID: {n}-1@127.0.0.1\r\nCSeq: 1 ACK\r\n"
            "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        ).encode()
        assert d.feed(ack, PBX) == []
        return
    assert len(out) == 2 and out[0].startswith(b"SIP/2.0 100"), out
    fwd = parse_message(out[1])
    got = d.feed(_answer(fwd, 180, "Ringing", n), TRUNK)
    assert len(got) == 1 and got[0].startswith(b"SIP/2.0 180"), got
    got = d.feed(_answer(fwd, 200, "OK", n), TRUNK)
    assert len(got) == 1 and got[0].startswith(b"SIP/2.0 200"), got
    got = d.feed(_in_dialog("ACK", n, number, 1, f"z9hG4bK-{n}-5-2"), PBX)
    assert len(got) == 1 and got[0].startswith(b"ACK "), got
    got = d.feed(_in_dialog("BYE", n, number, 2, f"z9hG4bK-{n}-7-3"), PBX)
    assert len(got) == 1 and got[0].startswith(b"BYE "), got
    got = d.feed(_answer(parse_message(got[0]), 200, "OK", n), TRUNK)
    assert len(got) == 1 and got[0].startswith(b"SIP/2.0 200"), got


def run(calls: int, rate: float) -> dict[str, float]:
    """µs of core CPU per allowed and per blocked call, and the same-run baselines."""
    d = _Driver(rate)
    allowed_s = blocked_s = 0.0
    for n in range(calls):
        allowed = n % 2 == 0
        before = d.spent
        _call(d, n, allowed)
        if allowed:
            allowed_s += d.spent - before
        else:
            blocked_s += d.spent - before
        d.tick()
    half = calls / 2
    invites = [_invite(n, f"+{BARRED_BASE + 500 + n % 500}") for n in range(2000)]
    t0 = time.perf_counter()
    for data in invites:
        parse_message(data)
    parse_us = (time.perf_counter() - t0) / len(invites) * 1e6
    screen = _screen()
    dials = [f"+{BARRED_BASE + n % 1000}" for n in range(2000)]
    t0 = time.perf_counter()
    for s in dials:
        screen(s)
    screen_us = (time.perf_counter() - t0) / len(dials) * 1e6
    return {
        "allowed_us": allowed_s / half * 1e6,
        "blocked_us": blocked_s / half * 1e6,
        "parse_invite_us": parse_us,
        "screen_us": screen_us,
        "live_transactions": float(d.core.active_transactions),
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--calls", type=int, default=20_000, help="calls per repeat (default 20000)")
    p.add_argument("--rate", type=float, default=2000.0, help="fake-clock calls/s (default 2000)")
    p.add_argument("--repeats", type=int, default=3, help="repeats, median reported (default 3)")
    args = p.parse_args(argv)
    settle_heap()  # as `upcs gateway run` does after start-up
    results = [run(args.calls, args.rate) for _ in range(args.repeats)]
    for key in results[0]:
        vals = [r[key] for r in results]
        print(f"{key:18s} median {statistics.median(vals):8.1f}  all {[round(v, 1) for v in vals]}")
    a = statistics.median(r["allowed_us"] for r in results)
    b = statistics.median(r["blocked_us"] for r in results)
    p_ = statistics.median(r["parse_invite_us"] for r in results)
    print(f"ratio to INVITE parse: allowed {a / p_:.1f}x, blocked {b / p_:.1f}x")


if __name__ == "__main__":
    main()
