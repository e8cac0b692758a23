"""UDP adapter: one bound socket per listen address, datagrams straight into the driver.

Socket buffers are raised well above the default: the Kamailio anchor harness saw the default
receive buffer overflow at 5,000 calls/s (shared/anchors/kamailio/RESULTS.md), and a drop there
turns into a retransmission storm. As root SO_RCVBUFFORCE passes net.core.rmem_max.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Callable
from typing import Any

from gateway.transport.endpoint import Endpoint

__all__ = ["UDP_BUFFER_BYTES", "UdpListener", "UdpSenders", "bind_udp_socket"]

# 8 MiB each way holds ~6,000 INVITE-sized datagrams: about a second of a 2,000 calls/s burst
# at ~3 datagrams in per call, enough to ride out a GC pause or a scrape without a drop.
UDP_BUFFER_BYTES = 8 * 1024 * 1024
# RFC 3261 §18.1.1: a UDP message may be up to 65,535 bytes; the core enforces its own limit.
_SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)  # Linux socket(7)
_SO_SNDBUFFORCE = getattr(socket, "SO_SNDBUFFORCE", 32)


def _set_buffer(sock: socket.socket, force_opt: int, opt: int, size: int) -> None:
    try:
        sock.setsockopt(socket.SOL_SOCKET, force_opt, size)  # needs CAP_NET_ADMIN
    except OSError:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, opt, size)  # capped at net.core.[rw]mem_max


def bind_udp_socket(
    host: str, port: int, *, reuse_port: bool = False, buffer_bytes: int = UDP_BUFFER_BYTES
) -> socket.socket:
    """A non-blocking UDP socket bound to a literal address (resolve names before calling)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        _set_buffer(sock, _SO_RCVBUFFORCE, socket.SO_RCVBUF, buffer_bytes)
        _set_buffer(sock, _SO_SNDBUFFORCE, socket.SO_SNDBUF, buffer_bytes)
        sock.bind((host, port))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class _Protocol(asyncio.DatagramProtocol):
    __slots__ = ("_on_error", "_receive")

    def __init__(
        self,
        receive: Callable[[bytes, str, tuple[str, int]], None],
        on_error: Callable[[str], None],
    ) -> None:
        self._receive = receive
        self._on_error = on_error

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        # IPv6 addresses come as (host, port, flowinfo, scope_id); the core wants (host, port).
        self._receive(data, "udp", (addr[0], addr[1]))

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and the like, reported on a later read (Linux): not fatal.
        self._on_error("receive")


class UdpListener:
    """One bound UDP socket feeding `receive(data, "udp", source)`."""

    def __init__(
        self,
        endpoint: Endpoint,
        receive: Callable[[bytes, str, tuple[str, int]], None],
        on_error: Callable[[str], None] = lambda kind: None,
        *,
        reuse_port: bool = False,
    ) -> None:
        self.endpoint = endpoint
        self._receive = receive
        self._on_error = on_error
        self._reuse_port = reuse_port
        self._transport: asyncio.DatagramTransport | None = None
        self.bound: tuple[str, int] = (endpoint.host, endpoint.port)
        self.inode = 0  # the socket's inode, to find it in /proc/net/udp (overload.py)

    @property
    def is_ipv6(self) -> bool:
        return self.endpoint.is_ipv6

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        sock = bind_udp_socket(self.endpoint.host, self.endpoint.port, reuse_port=self._reuse_port)
        name = sock.getsockname()
        self.bound = (str(name[0]), int(name[1]))
        self.inode = os.fstat(sock.fileno()).st_ino
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Protocol(self._receive, self._on_error), sock=sock
        )
        self._transport = transport

    def send(self, data: bytes, dest: tuple[str, int]) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            self._on_error("send_closed")
            return
        try:
            transport.sendto(data, dest)
        except OSError:
            self._on_error("send")

    def close(self) -> None:
        transport, self._transport = self._transport, None
        if transport is not None:
            transport.close()


class UdpSenders:
    """Routes an outgoing datagram to a listener of the destination's address family."""

    def __init__(self, listeners: list[UdpListener], on_error: Callable[[str], None]) -> None:
        self._v4 = next((x for x in listeners if not x.is_ipv6), None)
        self._v6 = next((x for x in listeners if x.is_ipv6), None)
        self._on_error = on_error

    def send(self, data: bytes, dest: tuple[str, int]) -> None:
        listener = self._v6 if ":" in dest[0] else self._v4
        if listener is None:
            self._on_error("no_socket_for_family")
            return
        listener.send(data, dest)
