"""Fuzzing the parser and the proxy core (STYLE.md rule 3: any other exception is a bug).

Invariants: arbitrary or mutated bytes either parse or raise `SipError` carrying a status;
`ProxyCore.receive` never raises; nothing reaches the trunk unless its target was screened
allowed (safety invariant 1).
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.sip import Message, Screened, SipError, StreamFramer, dial_targets, parse_message
from gateway.sip import parse_uri as parse_uri_
from tests.gateway.sip.harness import PBX, TRUNK, Harness, real_screen, request, response_to

SCREEN = real_screen()
SEEDS: list[bytes] = [
    request("INVITE", "sip:07700900123@127.0.0.1:5060", body=b"v=0\r\n"),
    request("INVITE", "sip:07700900666@127.0.0.1:5060"),
    request("INVITE", "tel:+44-20-7946-0123;phone-context=+44"),
    request("INVITE", "sip:+447700900123;rn=+447700900666@gw;user=phone"),
    request("MESSAGE", "sip:07700900124@gw", body=b"hi"),
    request("SUBSCRIBE", "sips:%2B447700900125@gw", extra=("Event: presence",)),
    request("REFER", "sip:07700900126@gw", extra=("Refer-To: <sip:07700900666@gw>",)),
    request("CANCEL", "sip:07700900123@127.0.0.1:5060", cseq_method="CANCEL"),
    request("ACK", "sip:07700900123@127.0.0.1:5060", to_tag="x"),
    request("BYE", "sip:callee@192.0.2.50", to_tag="trunktag"),
    request("OPTIONS", "sip:127.0.0.1:5060"),
    b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKx\r\n"
    b"From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n"
    b"Content-Length: 0\r\n\r\n",
]
TOKENS = [b"%", b"%2B", b"%25", b";", b"@", b"<", b">", b'"', b",", b"\r\n", b"\r\n ", b" ", b"\t",
          b":", b"sip:", b"tel:", b"+44", b"\x00", b"\xff", b"\\", b"=", b"?", b"[", b"]", b"0",
          b"Via: SIP/2.0/UDP x;branch=z9hG4bKq\r\n", b"Content-Length: 5\r\n", b";tag=a",
          b"Max-Forwards: 0\r\n", b"l: 99\r\n", b"z9hG4bK"]  # fmt: skip


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(0, 4))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "token", "dupline", "cut"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[at] = draw(st.integers(0, 255))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=4))
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 12))]
        elif op == "token":
            data[at:at] = draw(st.sampled_from(TOKENS))
        elif op == "dupline":
            start = data.rfind(b"\r\n", 0, at) + 2
            end = data.find(b"\r\n", at)
            if end > start:
                data[end + 2 : end + 2] = data[start : end + 2]
        elif op == "cut":
            del data[at:]
    return bytes(data)


def _parses_or_says_why(data: bytes, framed: bool) -> None:
    try:
        msg = parse_message(data, framed=framed)
    except SipError as e:
        assert 400 <= e.status <= 599 and e.reason
        return
    # what parsed can be rendered, and the rendering parses to the same message
    again = parse_message(msg.render(), framed=True)
    assert (again.method, again.uri, again.status, again.call_id) == (
        msg.method, msg.uri, msg.status, msg.call_id,
    )  # fmt: skip


def _check_forwarded(h: Harness) -> None:
    allowed = {
        (e.call_id, e.method)
        for e in h.all_events
        if isinstance(e, Screened) and e.verdict == "allowed"
    }
    for out in h.raw:
        if out.dest != TRUNK or out.data.startswith(b"SIP/2.0"):
            continue
        sent = parse_message(out.data)
        assert sent.method != "REGISTER"  # not forwarded unless configured
        assert any(cid == sent.call_id for cid, _ in allowed), "forwarded without screening"
        if sent.to().tag is None and sent.method not in ("CANCEL", "ACK"):
            targets = dial_targets(parse_uri_(sent.uri))
            assert targets is not None and all(SCREEN(t) == "allowed" for t in targets)
        if sent.method == "REFER":
            assert (sent.call_id, "REFER") in allowed


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600))
def test_arbitrary_bytes_parse_or_raise_sip_error(data: bytes) -> None:
    _parses_or_says_why(data, framed=False)
    _parses_or_says_why(data, framed=True)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_messages_parse_or_raise_sip_error(data: bytes) -> None:
    _parses_or_says_why(data, framed=False)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(max_size=200), max_size=6), mutated())
def test_stream_framer_never_raises_anything_else(chunks: list[bytes], tail: bytes) -> None:
    framer = StreamFramer()
    try:
        for c in [*chunks, tail]:
            for m in framer.feed(c):
                _parses_or_says_why(m, framed=True)
    except SipError as e:
        assert e.status in (400, 513)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    mutated(),
    st.sampled_from([PBX, TRUNK, ("198.51.100.9", 5060)]),
    st.sampled_from(["udp", "tcp"]),
)
def test_core_never_raises_and_never_forwards_unscreened(
    data: bytes, source: tuple[str, int], transport: str
) -> None:
    h = Harness(screen=SCREEN)
    h.core.receive(data, transport, source, h.now)
    h._collect()
    h.advance(40)
    _check_forwarded(h)


@st.composite
def session(draw: st.DrawFn) -> list[tuple[str, bytes | int | float]]:
    steps: list[tuple[str, bytes | int | float]] = []
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(["pbx", "reply", "time"]))
        if kind == "pbx":
            steps.append(("pbx", draw(mutated())))
        elif kind == "reply":
            steps.append(("reply", draw(st.sampled_from([100, 180, 183, 200, 302, 404, 486, 503]))))
        else:
            steps.append(("time", draw(st.floats(0, 200))))
    return steps


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(session())
def test_sessions_of_mutated_messages_keep_the_invariants(
    steps: list[tuple[str, bytes | int | float]],
) -> None:
    h = Harness(screen=SCREEN)
    for kind, value in steps:
        if kind == "pbx":
            assert isinstance(value, bytes)
            h.pbx_send(value)
        elif kind == "reply":
            sent = [m for m in h.to_trunk if m.is_request and m.method != "ACK"]
            if sent:
                last: Message = sent[-1]
                contact = "<sip:07700900666@192.0.2.50>" if value == 302 else None
                h.trunk_send(response_to(last, int(value), contact=contact or "<sip:c@192.0.2.50>"))
        else:
            h.advance(float(value))
        _check_forwarded(h)
    # a 3xx towards a barred number never reaches the PBX
    for m in h.to_pbx:
        if 300 <= m.status < 400:
            assert all("07700900666" not in c for c in m.values("contact"))
