"""TCP framing by Content-Length (RFC 3261 §18.3)."""

from __future__ import annotations

import pytest

from gateway.sip import SipError, StreamFramer, parse_message
from tests.gateway.sip.harness import request

A = request("MESSAGE", "sip:07700900123@gw", body=b"hello")
B = request("OPTIONS", "sip:gw", branch="z9hG4bK2")


def test_two_messages_in_one_chunk_and_keepalives_between() -> None:
    f = StreamFramer()
    assert f.feed(b"\r\n\r\n" + A + b"\r\n" + B) == [A, B]
    assert f.buffered == 0


@pytest.mark.parametrize("size", [1, 2, 7, 64])
def test_any_split_gives_the_same_messages(size: int) -> None:
    f = StreamFramer()
    stream = A + B + A
    out: list[bytes] = []
    for i in range(0, len(stream), size):
        out.extend(f.feed(stream[i : i + size]))
    assert out == [A, B, A]
    assert parse_message(out[0], framed=True).body == b"hello"


def test_compact_content_length() -> None:
    data = A.replace(b"Content-Length: 5", b"l: 5")
    assert StreamFramer().feed(data) == [data]


def test_missing_or_bad_content_length() -> None:
    with pytest.raises(SipError) as info:
        StreamFramer().feed(A.replace(b"Content-Length: 5\r\n", b""))
    assert info.value.status == 400
    with pytest.raises(SipError):
        StreamFramer().feed(A.replace(b"Content-Length: 5", b"Content-Length: -5"))
    with pytest.raises(SipError):
        StreamFramer().feed(A.replace(b"Content-Length: 5", b"Content-Length: 5\r\nl: 5"))


def test_oversize_is_513() -> None:
    with pytest.raises(SipError) as info:
        StreamFramer().feed(A.replace(b"Content-Length: 5", b"Content-Length: 999999"))
    assert info.value.status == 513
    f = StreamFramer()
    with pytest.raises(SipError) as info:
        for _ in range(70):
            f.feed(b"X-Junk: " + b"y" * 1000 + b"\r\n")
    assert info.value.status == 513


def test_good_message_before_a_bad_one_is_delivered_and_the_error_follows() -> None:
    f = StreamFramer()
    assert f.feed(A + b"GARBAGE\r\n\r\n") == [A]
    with pytest.raises(SipError):
        f.feed(b"")
