"""Endpoint and network strings as `--listen`, `--upstream` and `--allow-from` take them."""

from __future__ import annotations

import ipaddress

import pytest

from gateway.transport.endpoint import Endpoint, EndpointError, parse_endpoint, parse_network


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("udp:127.0.0.1:5060", Endpoint("udp", "127.0.0.1", 5060)),
        ("TCP:127.0.0.1:0", Endpoint("tcp", "127.0.0.1", 0)),
        ("udp:[::1]:5060", Endpoint("udp", "::1", 5060)),
        ("tcp:[2001:db8::5]:5061", Endpoint("tcp", "2001:db8::5", 5061)),
        ("udp:trunk.example.net:5060", Endpoint("udp", "trunk.example.net", 5060)),
    ],
)
def test_parse_endpoint(text: str, want: Endpoint) -> None:
    assert parse_endpoint(text) == want


def test_endpoint_round_trips_through_str() -> None:
    for text in ("udp:127.0.0.1:5060", "tcp:[::1]:5062"):
        assert str(parse_endpoint(text)) == text


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("sctp:127.0.0.1:5060", "want udp:HOST:PORT"),
        ("127.0.0.1:5060", "want udp:HOST:PORT"),
        ("udp:127.0.0.1", "want udp:HOST:PORT"),
        ("udp:::1:5060", "brackets"),
        ("udp:[::1]5060", "[ADDR]:PORT"),
        ("udp:[nothex]:5060", "not an IPv6 address"),
        ("udp:127.0.0.1:http", "not a number"),
        ("udp:127.0.0.1:70000", "out of range"),
        ("udp:127.0.0.1:٥٠٦٠", "not a number"),
    ],
)
def test_bad_endpoints_say_why(text: str, says: str) -> None:
    with pytest.raises(EndpointError, match=says.replace("[", r"\[")):
        parse_endpoint(text)


def test_upstream_port_zero_refused_when_asked() -> None:
    with pytest.raises(EndpointError, match="out of range"):
        parse_endpoint("udp:127.0.0.1:0", allow_port_zero=False)


def test_parse_network() -> None:
    assert parse_network("10.1.2.0/24") == ipaddress.ip_network("10.1.2.0/24")
    assert parse_network("10.1.2.3") == ipaddress.ip_network("10.1.2.3/32")
    assert parse_network("::1") == ipaddress.ip_network("::1/128")
    assert parse_network("10.1.2.3/24") == ipaddress.ip_network("10.1.2.0/24")
    with pytest.raises(EndpointError, match="not an IP network"):
        parse_network("pbx.local")
