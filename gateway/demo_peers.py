"""Demo peers for `upcs demo`: a loopback trunk that answers, and a phone that places calls.

These are DEMO PEERS, not product code and not test fixtures: just enough of a UAS and a UAC
(RFC 3261 §8, §12, §17 on a lossless loopback) to show the gateway's verdicts end to end without
any other software. The real peer for tests and benchmarks is sipp.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import urllib.parse
from dataclasses import dataclass

from gateway.sip import Message, parse_message

__all__ = ["CallResult", "DemoPhone", "DemoTrunk", "escape_user"]

Header = tuple[str, str, str]  # (lower-case key, name as written, value), as gateway.sip keeps them
# RFC 3261 §25.1: user = 1*( unreserved / escaped / user-unreserved ); everything else escaped.
_USER_SAFE = "-_.!~*'()&=+$,;?/"
DEMO_T1_S = 0.5  # RFC 3261 §17.1.1.1: retransmit an unanswered INVITE after T1, doubling
DEMO_CALL_TIMEOUT_S = 5.0  # a loopback call that has no final answer by then has failed


def escape_user(dialled: str) -> str:
    return urllib.parse.quote(dialled, safe=_USER_SAFE)


def _branch() -> str:
    return "z9hG4bK-demo-" + secrets.token_hex(6)


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, owner: DemoTrunk | DemoPhone) -> None:
        self._owner = owner

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            msg = parse_message(data)
        except Exception:  # a demo peer ignores what it cannot read
            return
        self._owner.handle(msg, (addr[0], addr[1]))


def _response_to(req: Message, status: int, reason: str, to_tag: str, extra: list[Header]) -> bytes:
    keep = {"via", "from", "call-id", "cseq"}
    if 100 < status < 300:
        keep.add("record-route")  # §12.1.1: the UAS copies Record-Route into dialog responses
    headers: list[Header] = []
    for key, name, value in req.headers:
        if key == "to":
            tagged = to_tag and status > 100 and ";tag=" not in value.replace(" ", "")
            headers.append((key, name, f"{value};tag={to_tag}" if tagged else value))
        elif key in keep:
            headers.append((key, name, value))
    return Message.response(status, reason, headers + extra).render()


class DemoTrunk:
    """DEMO PEER: a carrier trunk on loopback that rings and answers every call at once."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self._host = host
        self._transport: asyncio.DatagramTransport | None = None
        self._answered: dict[tuple[str, str], bytes] = {}  # (call-id, branch) -> final response
        self.port = 0
        self.calls_answered = 0

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Udp(self), local_addr=(self._host, 0)
        )
        self._transport = transport
        self.port = int(transport.get_extra_info("sockname")[1])

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def handle(self, msg: Message, source: tuple[str, int]) -> None:
        if not msg.is_request or self._transport is None or msg.method == "ACK":
            return
        contact = [("contact", "Contact", f"<sip:demo-trunk@{self._host}:{self.port}>")]
        key = (msg.call_id, msg.top_via().branch or "")
        if msg.method == "INVITE":
            if key in self._answered:  # a retransmission: answer it from "the transaction"
                self._transport.sendto(self._answered[key], source)
                return
            tag = secrets.token_hex(4)
            self._transport.sendto(_response_to(msg, 180, "Ringing", tag, contact), source)
            final = _response_to(msg, 200, "OK", tag, contact)
            self._answered[key] = final
            self.calls_answered += 1
            self._transport.sendto(final, source)
        elif msg.method in ("BYE", "CANCEL", "OPTIONS"):
            self._transport.sendto(_response_to(msg, 200, "OK", "", []), source)
        else:
            self._transport.sendto(_response_to(msg, 501, "Not Implemented", "", []), source)


@dataclass(frozen=True)
class CallResult:
    dialled: str
    call_id: str
    status: int  # final status; 0 = no final answer in time
    reason: str


class DemoPhone:
    """DEMO PEER: a prison PBX on loopback placing one call at a time through the gateway."""

    def __init__(self, gateway: tuple[str, int], host: str = "127.0.0.1") -> None:
        self._gateway = gateway
        self._host = host
        self._transport: asyncio.DatagramTransport | None = None
        self._waiting: dict[str, asyncio.Queue[Message]] = {}
        self.port = 0

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Udp(self), local_addr=(self._host, 0)
        )
        self._transport = transport
        self.port = int(transport.get_extra_info("sockname")[1])

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def handle(self, msg: Message, source: tuple[str, int]) -> None:
        if msg.is_request:
            if msg.method != "ACK" and self._transport is not None:
                self._transport.sendto(_response_to(msg, 200, "OK", "", []), source)
            return
        queue = self._waiting.get(msg.call_id)
        if queue is not None:
            queue.put_nowait(msg)

    def _send(self, data: bytes) -> None:
        assert self._transport is not None
        self._transport.sendto(data, self._gateway)

    def _request(
        self, method: str, uri: str, *, call_id: str, cseq: int, branch: str, to: str,
        from_tag: str, routes: list[str],
    ) -> bytes:  # fmt: skip
        host, port = self._host, self.port
        headers: list[Header] = [
            ("via", "Via", f"SIP/2.0/UDP {host}:{port};branch={branch};rport"),
            *[("route", "Route", r) for r in routes],
            ("from", "From", f'"Demo cell" <sip:demo-cell@{host}>;tag={from_tag}'),
            ("to", "To", to),
            ("call-id", "Call-ID", call_id),
            ("cseq", "CSeq", f"{cseq} {method}"),
            ("contact", "Contact", f"<sip:demo-cell@{host}:{port}>"),
            ("max-forwards", "Max-Forwards", "70"),
        ]
        return Message.request(method, uri, headers).render()

    async def call(self, dialled: str, timeout_s: float = DEMO_CALL_TIMEOUT_S) -> CallResult:
        """Dial `dialled` (escaped for the URI here), as `call_user` does."""
        return await self.call_user(escape_user(dialled), timeout_s)

    async def call_user(self, user: str, timeout_s: float = DEMO_CALL_TIMEOUT_S) -> CallResult:
        """Dial the URI user part `user` as given (already %-escaped), wait for the final
        answer, ACK it, and hang up an answered call."""
        dialled = user
        gw_host, gw_port = self._gateway
        gw = f"[{gw_host}]" if ":" in gw_host else gw_host
        uri = f"sip:{user}@{gw}:{gw_port}"
        call_id = f"demo-{secrets.token_hex(8)}@{self._host}"
        from_tag, branch = secrets.token_hex(4), _branch()
        to = f"<{uri}>"
        queue: asyncio.Queue[Message] = asyncio.Queue()
        self._waiting[call_id] = queue
        invite = self._request(
            "INVITE",
            uri,
            call_id=call_id,
            cseq=1,
            branch=branch,
            to=to,
            from_tag=from_tag,
            routes=[],
        )
        final: Message | None = None
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout_s
            interval = DEMO_T1_S
            self._send(invite)
            provisional = False
            while final is None and loop.time() < deadline:
                try:
                    wait = interval if not provisional else deadline - loop.time()
                    msg = await asyncio.wait_for(queue.get(), max(0.0, wait))
                except TimeoutError:
                    if not provisional:
                        self._send(invite)  # §17.1.1.2 Timer A
                        interval *= 2
                    continue
                if msg.cseq_method != "INVITE":
                    continue
                if msg.status < 200:
                    provisional = True
                else:
                    final = msg
            if final is None:
                return CallResult(dialled, call_id, 0, "no answer")
            to_final = final.get("to") or to
            if final.status >= 300:  # §17.1.1.3: ACK in the INVITE transaction, same branch
                ack = self._request(
                    "ACK", uri, call_id=call_id, cseq=1, branch=branch, to=to_final,
                    from_tag=from_tag, routes=[],
                )  # fmt: skip
                self._send(ack)
            else:
                await self._hang_up(final, call_id, from_tag, to_final, queue)
            return CallResult(dialled, call_id, final.status, final.reason)
        finally:
            del self._waiting[call_id]

    async def _hang_up(
        self, ok: Message, call_id: str, from_tag: str, to: str, queue: asyncio.Queue[Message]
    ) -> None:
        # §12.1.2: the route set is the Record-Route list reversed; the target is the Contact.
        routes = list(reversed(ok.values("record-route")))
        contact = ok.get("contact") or ""
        target = contact.strip().lstrip("<").split(">", 1)[0] or "sip:invalid"
        for method, cseq in (("ACK", 1), ("BYE", 2)):
            self._send(
                self._request(
                    method, target, call_id=call_id, cseq=cseq, branch=_branch(), to=to,
                    from_tag=from_tag, routes=routes,
                )
            )  # fmt: skip
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(DEMO_CALL_TIMEOUT_S):
                while True:
                    msg = await queue.get()
                    if msg.cseq_method == "BYE" and msg.status >= 200:
                        return
