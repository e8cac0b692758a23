"""Shared helpers for the gateway's socket, CLI and sipp tests (not a test module)."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from blocklist import ListSnapshot, write_snapshot

# Ofcom drama numbers only (common.md): barred ones and free ones.
BARRED = ("+447700900123", "+442079460456", "+441632960789", "+441134960001")
FREE = "+447700900999"
SCENARIOS = Path(__file__).parent / "scenarios"


def need_binary(name: str, package: str) -> str:
    """The binary's path; skip when absent, but fail in CI (common.md)."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not installed (Debian package {package}); CI must install it")
        pytest.skip(f"{name} is not installed (Debian package {package})")
    return path


def need_redis() -> None:
    need_binary("redis-server", "redis-server")
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1.0):
            pass
    except OSError:
        if os.environ.get("CI"):
            pytest.fail("Redis is not running on 127.0.0.1:6379")
        pytest.skip("Redis is not running on 127.0.0.1:6379")


def ipv6_available() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


def free_port(kind: int = socket.SOCK_DGRAM, host: str = "127.0.0.1") -> int:
    """A port free for both UDP and TCP right now (the kernel's choice, checked both ways)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(50):
        with socket.socket(family, kind) as s:
            s.bind((host, 0))
            port = int(s.getsockname()[1])
        other = socket.SOCK_STREAM if kind == socket.SOCK_DGRAM else socket.SOCK_DGRAM
        try:
            with socket.socket(family, other) as s2:
                s2.bind((host, port))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port")


def write_demo_snapshot(path: Path, version: int = 7) -> ListSnapshot:
    snap = ListSnapshot.from_e164(BARRED, version=version)
    write_snapshot(path, snap)
    return snap


def http_get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return int(resp.status), resp.read().decode()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode()


def metric_value(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels` (0 when none)."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        metric, _, rest = head.partition("{")
        if metric != name:
            continue
        got = dict(part.split("=", 1) for part in rest.rstrip("}").split(",") if "=" in part)
        if all(got.get(k) == f'"{v}"' for k, v in labels.items()):
            total += float(value)
    return total


class UdpPeer:
    """A raw UDP socket on the test's event loop: send bytes, await datagrams."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[bytes, tuple[str, int]]] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None
        self.addr: tuple[str, int] = ("", 0)

    async def start(self, host: str = "127.0.0.1") -> UdpPeer:
        queue = self.queue

        class _P(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                queue.put_nowait((data, (addr[0], addr[1])))

        loop = asyncio.get_running_loop()
        self.transport, _ = await loop.create_datagram_endpoint(_P, local_addr=(host, 0))
        name = self.transport.get_extra_info("sockname")
        self.addr = (name[0], name[1])
        return self

    def send(self, data: bytes, dest: tuple[str, int]) -> None:
        assert self.transport is not None
        self.transport.sendto(data, dest)

    async def recv(self, wait_s: float = 3.0) -> tuple[bytes, tuple[str, int]]:
        return await asyncio.wait_for(self.queue.get(), wait_s)

    async def recv_status(self, status: int, wait_s: float = 3.0) -> bytes:
        """The next response with this status (earlier provisional ones are skipped)."""
        async with asyncio.timeout(wait_s):
            while True:
                data, _ = await self.queue.get()
                if data.startswith(f"SIP/2.0 {status} ".encode()):
                    return data

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def sip_request(
    method: str,
    user: str,
    gw: tuple[str, int],
    me: tuple[str, int],
    *,
    transport: str = "UDP",
    branch: str = "z9hG4bK-test-1",
    call_id: str = "test-call-1@127.0.0.1",
    cseq: int = 1,
    extra: str = "",
) -> bytes:
    def hp(addr: tuple[str, int]) -> str:
        return f"[{addr[0]}]:{addr[1]}" if ":" in addr[0] else f"{addr[0]}:{addr[1]}"

    target = f"sip:{user}@{hp(gw)}" if user else f"sip:{hp(gw)}"
    lines = [
        f"{method} {target} SIP/2.0",
        f"Via: SIP/2.0/{transport} {hp(me)};branch={branch};rport",
        "Max-Forwards: 70",
        f"From: <sip:cell7@{hp(me)}>;tag=pbx1",
        f"To: <{target}>",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {method}",
        f"Contact: <sip:cell7@{hp(me)}>",
    ]
    if extra:
        lines.append(extra)
    lines.append("Content-Length: 0")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def sip_response_to(request: bytes, status: int, reason: str, to_tag: str = "trunk1") -> bytes:
    """A UAS's answer: Via list, From, To (+tag), Call-ID, CSeq and Record-Route copied."""
    head = request.split(b"\r\n\r\n", 1)[0].decode()
    out = [f"SIP/2.0 {status} {reason}"]
    for line in head.split("\r\n")[1:]:
        name = line.split(":", 1)[0].strip().lower()
        if name in ("via", "v", "from", "f", "call-id", "i", "cseq", "record-route"):
            out.append(line)
        elif name in ("to", "t"):
            out.append(line if ";tag=" in line or status == 100 else f"{line};tag={to_tag}")
    out.append("Content-Length: 0")
    return ("\r\n".join(out) + "\r\n\r\n").encode()


def header(message: bytes, name: str) -> str | None:
    for line in message.split(b"\r\n\r\n", 1)[0].decode().split("\r\n")[1:]:
        key, _, value = line.partition(":")
        if key.strip().lower() == name.lower():
            return value.strip()
    return None
