"""TCP adapter: listeners, a connection table keyed by peer address, outbound connects.

SIP over TCP frames messages by Content-Length (RFC 3261 §18.3); the core's `StreamFramer` does
that, so this module only moves bytes. Responses go back on the connection the request came in on
(§18.2.2), which is the connection whose peer address the core names as destination; a message for
a peer with no open connection (a trunk reached over TCP) opens one (§18.1.1).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable
from typing import Protocol, cast

from gateway.transport.endpoint import Endpoint

__all__ = [
    "TCP_CONNECT_TIMEOUT_S",
    "TCP_IDLE_TIMEOUT_S",
    "TCP_MAX_CONNECTIONS",
    "TCP_MAX_PENDING_BYTES",
    "TCP_MAX_WRITE_BUFFER_BYTES",
    "TcpTransport",
]

# A PBX keeps a handful of connections; 1,024 leaves room for many PBXs and bounds file descriptors.
TCP_MAX_CONNECTIONS = 1024
# RFC 5626 §4.4.1 suggests keep-alives around every 2 minutes; close a connection silent for
# 10 minutes (longer than any transaction: Timer C is 3 minutes, RFC 3261 §16.6).
TCP_IDLE_TIMEOUT_S = 600.0
TCP_IDLE_SWEEP_S = 30.0
# Timer B is 64*T1 = 32 s (RFC 3261 §17.1.1.2); a connect taking a fraction of that already failed.
TCP_CONNECT_TIMEOUT_S = 5.0
# Messages queued while an outbound connect is in progress: ~100 INVITEs.
TCP_MAX_PENDING_BYTES = 256 * 1024
# A peer that does not read 1 MiB of our output is stuck or hostile: drop it.
TCP_MAX_WRITE_BUFFER_BYTES = 1024 * 1024


class FramerLike(Protocol):
    def feed(self, data: bytes) -> list[bytes]: ...


Receive = Callable[[bytes, str, tuple[str, int]], None]
OnError = Callable[[str], None]


class _Connection(asyncio.Protocol):
    def __init__(self, owner: TcpTransport) -> None:
        self._owner = owner
        self._framer = owner.new_framer()
        self.transport: asyncio.Transport | None = None
        self.peer: tuple[str, int] = ("", 0)
        self.last_active = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, hence a cast, not an isinstance.
        self.transport = transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.peer = (str(peer[0]), int(peer[1]))
        self.last_active = asyncio.get_running_loop().time()
        if not self._owner.admit(self):
            transport.abort()
            self.transport = None
            return
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.last_active = asyncio.get_running_loop().time()
        try:
            messages = self._framer.feed(data)
        except self._owner.framing_error:
            # RFC 3261 §18.3: a stream with bad framing cannot be resynchronised: close it.
            self._owner.on_error("framing")
            self.close()
            return
        for message in messages:
            self._owner.receive(message, "tcp", self.peer)

    def connection_lost(self, exc: Exception | None) -> None:
        self._owner.forget(self)
        self.transport = None

    def write(self, data: bytes) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            self._owner.on_error("send_closed")
            return
        transport.write(data)
        self.last_active = asyncio.get_running_loop().time()
        if transport.get_write_buffer_size() > TCP_MAX_WRITE_BUFFER_BYTES:
            self._owner.on_error("peer_not_reading")
            transport.abort()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class TcpTransport:
    """All SIP TCP traffic of one gateway: any number of listeners, one connection table."""

    def __init__(
        self,
        receive: Receive,
        new_framer: Callable[[], FramerLike],
        framing_error: type[Exception],
        on_error: OnError = lambda kind: None,
        on_count: Callable[[int], None] = lambda n: None,
    ) -> None:
        self.receive = receive
        self.new_framer = new_framer
        self.framing_error = framing_error
        self.on_error = on_error
        self._on_count = on_count
        self._servers: list[asyncio.Server] = []
        self._conns: dict[tuple[str, int], _Connection] = {}
        self._pending: dict[tuple[str, int], list[bytes]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self.bound: list[tuple[str, int]] = []

    async def listen(self, endpoint: Endpoint, *, reuse_port: bool = False) -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if endpoint.is_ipv6 else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((endpoint.host, endpoint.port))
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        server = await loop.create_server(lambda: _Connection(self), sock=sock)
        self._servers.append(server)
        name = sock.getsockname()
        bound = (str(name[0]), int(name[1]))
        self.bound.append(bound)
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep_idle(), name="tcp-idle-sweep")
        return bound

    @property
    def connection_count(self) -> int:
        return len(self._conns)

    def admit(self, conn: _Connection) -> bool:
        if len(self._conns) >= TCP_MAX_CONNECTIONS:
            self.on_error("too_many_connections")
            return False
        old = self._conns.get(conn.peer)
        if old is not None and old is not conn:
            old.close()
        self._conns[conn.peer] = conn
        self._on_count(len(self._conns))
        queued = self._pending.pop(conn.peer, None)
        if queued:
            for data in queued:
                conn.write(data)
        return True

    def forget(self, conn: _Connection) -> None:
        if self._conns.get(conn.peer) is conn:
            del self._conns[conn.peer]
            self._on_count(len(self._conns))

    def send(self, data: bytes, dest: tuple[str, int]) -> None:
        conn = self._conns.get(dest)
        if conn is not None:
            conn.write(data)
            return
        queued = self._pending.get(dest)
        if queued is not None:  # a connect is already under way
            if sum(map(len, queued)) + len(data) > TCP_MAX_PENDING_BYTES:
                self.on_error("pending_overflow")
                return
            queued.append(data)
            return
        self._pending[dest] = [data]
        task = asyncio.get_running_loop().create_task(self._connect(dest))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connect(self, dest: tuple[str, int]) -> None:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(TCP_CONNECT_TIMEOUT_S):
                await loop.create_connection(lambda: _Connection(self), dest[0], dest[1])
        except (OSError, TimeoutError):
            # The core's own timers (B, F) turn the silence into 408/503 for the caller.
            self.on_error("connect")
        finally:
            self._pending.pop(dest, None)

    async def _sweep_idle(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(TCP_IDLE_SWEEP_S)
            cutoff = loop.time() - TCP_IDLE_TIMEOUT_S
            for conn in [c for c in self._conns.values() if c.last_active < cutoff]:
                conn.close()

    async def aclose(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        for task in list(self._tasks):
            task.cancel()
        for server in self._servers:
            server.close()
        for conn in list(self._conns.values()):
            conn.close()
        for server in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1.0)
        self._servers.clear()
