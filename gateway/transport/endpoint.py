"""`udp:HOST:PORT` / `tcp:[::1]:5060` endpoint strings, as the CLI and config take them.

IPv6 literals are bracketed (RFC 3986 §3.2.2), as in SIP URIs (RFC 3261 §19.1.1); a bare
`udp:::1:5060` is refused because it cannot be split without doubt.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

__all__ = ["TRANSPORTS", "Endpoint", "EndpointError", "parse_endpoint", "parse_network"]

TRANSPORTS = ("udp", "tcp")
MAX_PORT = 65535  # RFC 793 §3.1: ports are 16-bit


class EndpointError(ValueError):
    """An endpoint or network string that cannot be used; the message says why."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    transport: str  # "udp" | "tcp"
    host: str  # literal address or host name, without brackets
    port: int  # 0 = let the kernel choose (tests)

    @property
    def is_ipv6(self) -> bool:
        return ":" in self.host

    def hostport(self) -> str:
        host = f"[{self.host}]" if self.is_ipv6 else self.host
        return f"{host}:{self.port}"

    def __str__(self) -> str:
        return f"{self.transport}:{self.hostport()}"


def parse_endpoint(text: str, *, allow_port_zero: bool = True) -> Endpoint:
    """Parse `transport:host:port`; IPv6 hosts in brackets."""
    transport, sep, rest = text.partition(":")
    transport = transport.lower()
    if not sep or transport not in TRANSPORTS:
        raise EndpointError(f"{text!r}: want udp:HOST:PORT or tcp:HOST:PORT")
    if rest.startswith("["):
        close = rest.find("]")
        if close < 0 or rest[close + 1 : close + 2] != ":":
            raise EndpointError(f"{text!r}: an IPv6 address is written [ADDR]:PORT")
        host, port_text = rest[1:close], rest[close + 2 :]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise EndpointError(f"{text!r}: {host!r} is not an IPv6 address") from None
    else:
        host, sep, port_text = rest.rpartition(":")
        if not sep or not host:
            raise EndpointError(f"{text!r}: want {transport}:HOST:PORT")
        if ":" in host:
            raise EndpointError(f"{text!r}: put an IPv6 address in brackets, e.g. udp:[::1]:5060")
    if not port_text.isascii() or not port_text.isdigit():
        raise EndpointError(f"{text!r}: port {port_text!r} is not a number")
    port = int(port_text)
    if port > MAX_PORT or (port == 0 and not allow_port_zero):
        raise EndpointError(f"{text!r}: port {port} is out of range")
    return Endpoint(transport, host, port)


def parse_network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """A CIDR (`10.0.0.0/8`, `::1/128`) or a single address (taken as /32 or /128)."""
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise EndpointError(f"{text!r} is not an IP network (want e.g. 10.1.2.0/24)") from None
