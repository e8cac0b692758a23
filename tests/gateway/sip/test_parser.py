"""Parser and renderer (RFC 3261 §7, §18.3, §20, §25)."""

from __future__ import annotations

import pytest

from gateway.sip import SipError, parse_message
from gateway.sip.headers import parse_name_addr, parse_via, split_list
from gateway.sip.limits import MAX_HEADERS, MAX_VIA_DEPTH
from tests.gateway.sip.harness import request

INVITE = request("INVITE", "sip:+447700900123@gw;user=phone", body=b"v=0\r\n")


def test_request_fields() -> None:
    m = parse_message(INVITE)
    assert (m.method, m.uri, m.cseq, m.cseq_method, m.max_forwards) == (
        "INVITE", "sip:+447700900123@gw;user=phone", 1, "INVITE", 70,
    )  # fmt: skip
    assert m.call_id == "call-1@pbx" and m.body == b"v=0\r\n"
    assert m.from_().tag == "pbxtag" and m.to().tag is None
    assert m.top_via().branch == "z9hG4bKpbx1"


def test_render_round_trips_byte_for_byte() -> None:
    assert parse_message(INVITE).render() == INVITE


def test_compact_forms_and_case_insensitive_names() -> None:
    data = (
        b"MESSAGE sip:07700900123@gw SIP/2.0\r\nv: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
        b"f: <sip:a@b>;tag=1\r\nt: <sip:c@d>\r\ni: cid\r\nCSEQ: 2 MESSAGE\r\nmax-FORWARDS: 5\r\n"
        b"c: text/plain\r\nl: 2\r\n\r\nhi"
    )
    m = parse_message(data)
    assert m.get("content-type") == "text/plain" and m.call_id == "cid" and m.body == b"hi"
    assert m.max_forwards == 5 and m.from_().tag == "1"


def test_folding_is_one_space() -> None:
    data = INVITE.replace(b"Contact: <sip:2001", b"Contact:\r\n   <sip:2001")
    assert parse_message(data).get("contact") == "<sip:2001@127.0.0.1:5070>"


def test_comma_lists_respect_quotes_and_brackets() -> None:
    assert split_list('"a, b" <sip:x@y;p=1,2>;q=1, <sip:z@w>') == [
        '"a, b" <sip:x@y;p=1,2>;q=1',
        "<sip:z@w>",
    ]
    data = INVITE.replace(
        b"Contact: <sip:2001@127.0.0.1:5070>",
        b'Contact: "Smith, J" <sip:1@a>, <sip:2@b>\r\nContact: <sip:3@c>',
    )
    assert len(parse_message(data).values("contact")) == 3


def test_name_addr_forms() -> None:
    na = parse_name_addr('"Q \\" x" <sip:u@h;lr>;tag=a;foo', "From")
    assert na.display == '"Q \\" x"' and na.uri == "sip:u@h;lr" and na.tag == "a"
    assert na.param("foo") == ""
    bare = parse_name_addr("sip:u@h;tag=b", "To")
    assert bare.uri == "sip:u@h" and bare.tag == "b" and not bare.bracketed
    with pytest.raises(SipError):
        parse_name_addr("sip:u@h?x=y", "Contact")  # §20.10: '?' needs <>


def test_unquoted_display_name_check_is_linear() -> None:
    # The display-name regex once backtracked exponentially: this took minutes.
    with pytest.raises(SipError):
        parse_name_addr("a" * 64 + "@ <sip:u@h>", "From")
    assert parse_name_addr("Wing  B\t<sip:u@h>", "From").display == "Wing  B"


def test_via_with_lws_ipv6_and_params() -> None:
    v = parse_via("SIP / 2.0 / TCP [2001:db8::1] : 5061 ; branch = z9hG4bKa ; rport")
    assert (v.transport, v.host, v.port, v.branch, v.param("rport")) == (
        "TCP", "[2001:db8::1]", 5061, "z9hG4bKa", "",
    )  # fmt: skip
    for bad in ("SIP/2.0/UDP", "SIP/3.0/UDP h", "SIP/2.0/UDP h;;", "SIP/2.0/UDP h:99999"):
        with pytest.raises(SipError):
            parse_via(bad)


@pytest.mark.parametrize(
    ("mutate", "status"),
    [
        (lambda d: d.replace(b"SIP/2.0\r\n", b"SIP/3.0\r\n", 1), 505),
        (lambda d: d.replace(b"INVITE sip", b"INVITE  sip", 1), 400),
        (lambda d: d.replace(b"CSeq: 1 INVITE", b"CSeq: 1 BYE"), 400),
        (lambda d: d.replace(b"CSeq: 1 INVITE", b"CSeq: 2147483648 INVITE"), 400),
        (lambda d: d.replace(b"Max-Forwards: 70", b"Max-Forwards: 256"), 400),
        (lambda d: d.replace(b"Max-Forwards: 70", b"Max-Forwards: -1"), 400),
        (lambda d: d.replace(b"Content-Length: 5", b"Content-Length: 6"), 400),
        (lambda d: d.replace(b"Content-Length: 5", b"Content-Length: 5\r\nl: 5"), 400),
        (lambda d: d.replace(b"Call-ID: call-1@pbx\r\n", b""), 400),
        (lambda d: d.replace(b"Call-ID: call-1@pbx", b"Call-ID: a b"), 400),
        (lambda d: d.replace(b"Call-ID: call-1@pbx", b"Call-ID: x\r\ni: y"), 400),
        (lambda d: d.replace(b"\r\nTo:", b"\nTo:"), 400),
        (lambda d: d.replace(b"\r\n\r\n", b"\r\n"), 400),
        (lambda d: d.replace(b"Contact:", b"Cont act:"), 400),
        (lambda d: d + b"x" * 70_000, 513),
    ],
)
def test_malformed_requests_carry_their_status(mutate: object, status: int) -> None:
    with pytest.raises(SipError) as info:
        parse_message(mutate(INVITE))  # type: ignore[operator]
    assert info.value.status == status


def test_udp_extra_bytes_after_content_length_are_discarded() -> None:
    assert parse_message(INVITE + b"garbage").body == b"v=0\r\n"


def test_framed_body_must_match_exactly() -> None:
    with pytest.raises(SipError):
        parse_message(INVITE + b"x", framed=True)


def test_missing_content_length_on_udp_takes_the_datagram() -> None:
    data = INVITE.replace(b"Content-Length: 5\r\n", b"")
    assert parse_message(data).body == b"v=0\r\n"


def test_header_and_via_limits() -> None:
    many = INVITE.replace(b"\r\n\r\n", b"\r\n" + b"X-A: 1\r\n" * MAX_HEADERS + b"\r\n", 1)
    with pytest.raises(SipError):
        parse_message(many)
    deep = INVITE.replace(
        b"Via:", b"Via: SIP/2.0/UDP h;branch=z9hG4bKv\r\n" * (MAX_VIA_DEPTH + 1) + b"Via:", 1
    )
    with pytest.raises(SipError):
        parse_message(deep).via_values()


def test_errors_keep_the_headers_read_so_far() -> None:
    with pytest.raises(SipError) as info:
        parse_message(INVITE.replace(b"SIP/2.0\r\n", b"SIP/2.0 \r\n", 1))
    partial = info.value.partial
    assert partial is not None and partial.get("call-id") == "call-1@pbx"


def test_response_parsing() -> None:
    m = parse_message(
        b"SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\n"
        b"To: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    )
    assert (m.status, m.reason, m.is_request) == (180, "Ringing", False)
    with pytest.raises(SipError):
        parse_message(b"SIP/2.0 1800 Ringing\r\n\r\n")


def test_pop_first_value_of_a_multi_value_line() -> None:
    m = parse_message(INVITE.replace(b"Via: ", b"Via: SIP/2.0/UDP top;branch=z9hG4bKt, ", 1))
    assert m.pop_first_value("via") == "SIP/2.0/UDP top;branch=z9hG4bKt"
    assert m.top_via().branch == "z9hG4bKpbx1"
