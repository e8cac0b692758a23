"""A minimal HTTP/1.1 server on the gateway's event loop for `/metrics`, `/healthz`, `/readyz`.

Scrapes are rare and tiny, so a few lines of asyncio beat a thread running another server: the
handlers read loop-owned state without locks. Every request is bounded in size and time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from gateway.logs import log_event

__all__ = ["MAX_REQUEST_HEAD_BYTES", "REQUEST_TIMEOUT_S", "MetricsHttpServer"]

MAX_REQUEST_HEAD_BYTES = 8192  # a scrape's request head is ~200 bytes; 8 KiB as nginx's default
REQUEST_TIMEOUT_S = 5.0  # Prometheus' default scrape timeout is 10 s; answer well within it
PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_log = logging.getLogger("upcs.gateway.http")


class MetricsHttpServer:
    """`GET /metrics` (Prometheus text), `/healthz` (alive), `/readyz` (ready to take calls)."""

    def __init__(
        self,
        host: str,
        port: int,
        render_metrics: Callable[[], bytes],
        readiness: Callable[[], tuple[bool, str]],
    ) -> None:
        self._host = host
        self._port = port
        self._render = render_metrics
        self._readiness = readiness
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        """The bound port (useful when started on port 0)."""
        if self._server is None or not self._server.sockets:
            return self._port
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._handle, self._host, self._port, limit=MAX_REQUEST_HEAD_BYTES
        )

    async def aclose(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            with contextlib.suppress(Exception):
                await asyncio.shield(server.wait_closed())

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                head = await reader.readuntil(b"\r\n\r\n")
                status, ctype, body = self._route(head)
                writer.write(
                    f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode("ascii")
                    + body
                )
                await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # a slow, truncated or oversized request: just close it
        except ConnectionError as exc:
            log_event(_log, logging.DEBUG, "http_connection_error", error=type(exc).__name__)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def _route(self, head: bytes) -> tuple[str, str, bytes]:
        line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = line.split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            return "400 Bad Request", "text/plain", b"bad request\n"
        method, target = parts[0], parts[1].split("?", 1)[0]
        if method not in ("GET", "HEAD"):
            return "405 Method Not Allowed", "text/plain", b"method not allowed\n"
        if target == "/metrics":
            body = self._render()
            return "200 OK", PROMETHEUS_CONTENT_TYPE, b"" if method == "HEAD" else body
        if target == "/healthz":
            return "200 OK", "text/plain", b"ok\n"
        if target == "/readyz":
            ready, why = self._readiness()
            text = (why + "\n").encode("utf-8")
            return ("200 OK" if ready else "503 Service Unavailable"), "text/plain", text
        return "404 Not Found", "text/plain", b"not found\n"
