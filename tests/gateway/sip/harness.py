"""A fake PBX <-> ProxyCore <-> fake trunk link with a hand-driven clock (STYLE.md rule 11).

Messages the core sends are parsed and queued per destination; tests play both peers by
building requests and answering what arrives, and move time with `advance`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field

from blocklist import DialPlan, ListHolder, ListSnapshot, Screener
from gateway.sip import Event, Message, Outgoing, ProxyConfig, ProxyCore, SipError, parse_message

__all__ = [
    "BARRED",
    "GW",
    "PBX",
    "TRUNK",
    "Harness",
    "make_config",
    "real_screen",
    "request",
    "response_to",
]

PBX = ("127.0.0.1", 5070)
GW = ("127.0.0.1", 5060)
TRUNK = ("192.0.2.50", 5060)
# Ofcom drama numbers only (common.md): one barred mobile and one barred London number.
BARRED = ("+447700900666", "+442079460666")


def real_screen() -> Callable[[str], str]:
    """The real screener over a two-entry list, as the app injects it."""
    holder = ListHolder(ListSnapshot.from_e164(list(BARRED), 1))
    return Screener(DialPlan(), holder).screen


def make_config(**overrides: object) -> ProxyConfig:
    base: dict[str, object] = {
        "upstream": ("udp", TRUNK[0], TRUNK[1]),
        "local_host": GW[0],
        "local_port": GW[1],
        "allow_from": (ipaddress.ip_network("127.0.0.0/8"),),
        "branch_secret": b"test-secret",
    }
    base.update(overrides)
    return ProxyConfig(**base)  # type: ignore[arg-type]


def request(
    method: str,
    ruri: str,
    *,
    call_id: str = "call-1@pbx",
    branch: str = "z9hG4bKpbx1",
    cseq: int = 1,
    from_tag: str = "pbxtag",
    to_tag: str | None = None,
    via_host: str = "127.0.0.1:5070",
    transport: str = "UDP",
    extra: tuple[str, ...] = (),
    body: bytes = b"",
    max_forwards: int | None = 70,
    cseq_method: str | None = None,
) -> bytes:
    to = "<sip:someone@gw>" + (f";tag={to_tag}" if to_tag else "")
    lines = [
        f"{method} {ruri} SIP/2.0",
        f"Via: SIP/2.0/{transport} {via_host};branch={branch};rport",
        f'From: "Wing 3" <sip:2001@pbx.example>;tag={from_tag}',
        f"To: {to}",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {cseq_method or method}",
        "Contact: <sip:2001@127.0.0.1:5070>",
    ]
    if max_forwards is not None:
        lines.append(f"Max-Forwards: {max_forwards}")
    lines.extend(extra)
    if body:
        lines.append("Content-Type: application/sdp")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def response_to(
    req: Message,
    status: int,
    *,
    reason: str = "Whatever",
    to_tag: str | None = "trunktag",
    extra: tuple[str, ...] = (),
    contact: str | None = "<sip:callee@192.0.2.50:5060>",
) -> bytes:
    """What a UAS answers to `req` (§8.2.6.2): Vias, From, To(+tag), Call-ID, CSeq copied."""
    lines = [f"SIP/2.0 {status} {reason}"]
    for k, n, v in req.headers:
        if k in ("via", "from", "call-id", "cseq"):
            lines.append(f"{n}: {v}")
        elif k == "to":
            lines.append(f"{n}: {v}" + (f";tag={to_tag}" if to_tag and ";tag=" not in v else ""))
        elif k == "record-route" and 100 < status < 300:
            lines.append(f"{n}: {v}")
    if contact and 100 < status < 400:
        lines.append(f"Contact: {contact}")
    lines.extend(extra)
    lines.append("Content-Length: 0")
    # Header values hold the parser's surrogate escapes for non-UTF-8 bytes: copy them back.
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape")


@dataclass
class Harness:
    """Drives one ProxyCore; `to_pbx`/`to_trunk` collect parsed messages sent to each peer."""

    config: ProxyConfig = field(default_factory=make_config)
    screen: Callable[[str], str] = field(default_factory=real_screen)
    now: float = 1000.0
    to_pbx: list[Message] = field(default_factory=list)
    to_trunk: list[Message] = field(default_factory=list)
    elsewhere: list[Outgoing] = field(default_factory=list)
    raw: list[Outgoing] = field(default_factory=list)
    unparsable: list[Outgoing] = field(default_factory=list)
    all_events: list[Event] = field(default_factory=list)
    screened: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        inner = self.screen

        def counting(dialled: str) -> str:
            self.screened.append(dialled)
            return inner(dialled)

        self.core = ProxyCore(self.config, counting)

    def pbx_send(self, data: bytes, transport: str = "udp", source: tuple[str, int] = PBX) -> None:
        self.core.receive(data, transport, source, self.now)
        self._collect()

    def trunk_send(self, data: bytes, source: tuple[str, int] = TRUNK) -> None:
        self.core.receive(data, self.config.upstream[0], source, self.now)
        self._collect()

    def advance(self, seconds: float) -> None:
        """Move the clock, firing every timer that falls due on the way, in order."""
        target = self.now + seconds
        while True:
            nt = self.core.next_timer()
            if nt is None or nt > target:
                break
            self.now = max(self.now, nt)
            self.core.handle_timer(self.now)
            self._collect()
        self.now = target

    def _collect(self) -> None:
        for out in self.core.outgoing():
            self.raw.append(out)
            try:
                msg = parse_message(out.data, framed=out.transport != "udp")
            except SipError:
                self.unparsable.append(out)  # e.g. a 400 that copies the bad CSeq it answers
                continue
            if out.dest == TRUNK:
                self.to_trunk.append(msg)
            elif out.dest == PBX:
                self.to_pbx.append(msg)
            else:
                self.elsewhere.append(out)
        self.all_events.extend(self.core.events())

    def take_pbx(self) -> list[Message]:
        out, self.to_pbx = self.to_pbx, []
        return out

    def take_trunk(self) -> list[Message]:
        out, self.to_trunk = self.to_trunk, []
        return out


def statuses(msgs: list[Message]) -> list[int]:
    return [m.status for m in msgs]


def methods(msgs: list[Message]) -> list[str | None]:
    return [m.method for m in msgs]
