"""The asyncio adapters with real sockets on loopback: UDP and TCP, IPv4 and IPv6, with the
real proxy core behind them and raw peers in front, so every byte on the wire is checked."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from blocklist import DialPlan
from gateway.app import Gateway
from gateway.settings import GatewaySettings
from gateway.transport.endpoint import Endpoint
from tests.gateway.harness import (
    BARRED,
    UdpPeer,
    header,
    ipv6_available,
    sip_request,
    sip_response_to,
    write_demo_snapshot,
)

needs_ipv6 = pytest.mark.skipif(not ipv6_available(), reason="no IPv6 loopback on this machine")

GatewayFactory = Callable[..., Any]


@pytest.fixture
async def make_gateway(tmp_path: Path) -> AsyncIterator[GatewayFactory]:
    started: list[Gateway] = []
    snap_path = tmp_path / "list.snap"
    snapshot = write_demo_snapshot(snap_path)

    async def factory(listen: list[str], upstream: Endpoint, **kw: Any) -> Gateway:
        eps = []
        for text in listen:
            transport, _, rest = text.partition(":")
            host, _, port = rest.rpartition(":")
            eps.append(Endpoint(transport, host.strip("[]"), int(port)))
        kw.setdefault("drain_timeout_s", 0.5)
        settings = GatewaySettings(
            listen=tuple(eps), upstream=upstream, snapshot_path=snap_path, **kw
        )
        gw = Gateway(settings, DialPlan(), snapshot)
        await gw.start()
        started.append(gw)
        return gw

    yield factory
    for gw in started:
        await gw.shutdown()


def _national(e164: str) -> str:
    return "0" + e164[3:]  # +447700900123 -> 07700900123


@pytest.mark.parametrize(
    "host", ["127.0.0.1", pytest.param("::1", marks=needs_ipv6)], ids=["ipv4", "ipv6"]
)
async def test_udp_refuses_barred_and_forwards_allowed(
    make_gateway: GatewayFactory, host: str
) -> None:
    trunk = await UdpPeer().start(host)
    pbx = await UdpPeer().start(host)
    gw = await make_gateway([f"udp:{host}:0"], Endpoint("udp", trunk.addr[0], trunk.addr[1]))
    gw_addr = gw.udp_addresses[0]
    try:
        # OPTIONS to the gateway itself: a PBX keep-alive, answered 200 (DESIGN.md Contracts).
        pbx.send(sip_request("OPTIONS", "", gw_addr, pbx.addr, call_id="ka-1"), gw_addr)
        assert (await pbx.recv_status(200)).startswith(b"SIP/2.0 200")

        barred = _national(BARRED[0])
        pbx.send(sip_request("INVITE", barred, gw_addr, pbx.addr, call_id="c-barred"), gw_addr)
        refusal = await pbx.recv_status(403)
        assert header(refusal, "Call-ID") == "c-barred"

        pbx.send(
            sip_request("INVITE", "07700900999", gw_addr, pbx.addr, branch="z9hG4bK-ok",
                        call_id="c-ok"),
            gw_addr,
        )  # fmt: skip
        forwarded, source = await trunk.recv()
        assert forwarded.startswith(b"INVITE sip:07700900999@")
        assert source == gw_addr  # sent from the listening socket
        trunk.send(sip_response_to(forwarded, 200, "OK"), source)
        ok = await pbx.recv_status(200)
        assert header(ok, "Call-ID") == "c-ok"
        assert trunk.queue.empty()  # the barred call never reached the trunk
    finally:
        pbx.close()
        trunk.close()


async def _tcp_exchange(
    reader: asyncio.StreamReader, want_status: int, wait_s: float = 3.0
) -> bytes:
    async with asyncio.timeout(wait_s):
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(header(head, "Content-Length") or "0")
            body = await reader.readexactly(length) if length else b""
            if head.startswith(f"SIP/2.0 {want_status} ".encode()):
                return head + body


@pytest.mark.parametrize(
    "host", ["127.0.0.1", pytest.param("::1", marks=needs_ipv6)], ids=["ipv4", "ipv6"]
)
async def test_tcp_pbx_framing_and_forwarding_to_udp_trunk(
    make_gateway: GatewayFactory, host: str
) -> None:
    trunk = await UdpPeer().start(host)
    gw = await make_gateway([f"tcp:{host}:0"], Endpoint("udp", trunk.addr[0], trunk.addr[1]))
    gw_addr = gw.tcp_addresses[0]
    reader, writer = await asyncio.open_connection(*gw_addr)
    me = writer.get_extra_info("sockname")[:2]
    try:
        # One message split across two segments, then two messages in one segment (§18.3).
        options = sip_request("OPTIONS", "", gw_addr, me, transport="TCP", call_id="k1")
        writer.write(options[:25])
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(options[25:])
        await writer.drain()
        assert header(await _tcp_exchange(reader, 200), "Call-ID") == "k1"

        barred = sip_request(
            "INVITE", _national(BARRED[1]), gw_addr, me, transport="TCP", call_id="t-barred",
            branch="z9hG4bK-tb",
        )  # fmt: skip
        allowed = sip_request(
            "INVITE", "02079460999", gw_addr, me, transport="TCP", call_id="t-ok",
            branch="z9hG4bK-tok",
        )  # fmt: skip
        writer.write(barred + allowed)
        await writer.drain()
        assert header(await _tcp_exchange(reader, 403), "Call-ID") == "t-barred"
        forwarded, source = await trunk.recv()
        assert header(forwarded, "Call-ID") == "t-ok"
        trunk.send(sip_response_to(forwarded, 200, "OK"), source)
        ok = await _tcp_exchange(reader, 200)  # back on the PBX's own connection (§18.2.2)
        assert header(ok, "Call-ID") == "t-ok"
        assert gw.metrics.tcp_connections._value.get() == 1
    finally:
        writer.close()
        trunk.close()


async def test_tcp_bad_framing_closes_the_connection(make_gateway: GatewayFactory) -> None:
    gw = await make_gateway(["tcp:127.0.0.1:0"], Endpoint("udp", "127.0.0.1", 9))
    reader, writer = await asyncio.open_connection(*gw.tcp_addresses[0])
    writer.write(b"INVITE sip:x@y SIP/2.0\r\nContent-Length: lots\r\n\r\n")
    await writer.drain()
    async with asyncio.timeout(3):
        rest = await reader.read()  # EOF once the gateway drops the stream
    writer.close()
    assert b"200" not in rest


async def test_tcp_upstream_opens_a_connection(make_gateway: GatewayFactory) -> None:
    got: asyncio.Queue[bytes] = asyncio.Queue()

    async def trunk(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        await got.put(head)
        writer.write(sip_response_to(head, 200, "OK"))
        await writer.drain()
        await asyncio.sleep(1)
        writer.close()

    server = await asyncio.start_server(trunk, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    pbx = await UdpPeer().start()
    gw = await make_gateway(
        ["udp:127.0.0.1:0", "tcp:127.0.0.1:0"], Endpoint("tcp", "127.0.0.1", port),
    )  # fmt: skip
    gw_addr = gw.udp_addresses[0]
    try:
        pbx.send(sip_request("INVITE", "01134960999", gw_addr, pbx.addr, call_id="up-tcp"), gw_addr)
        head = await asyncio.wait_for(got.get(), 3)
        assert head.startswith(b"INVITE sip:01134960999@")
        assert "SIP/2.0/TCP" in (header(head, "Via") or "")
        assert header(await pbx.recv_status(200), "Call-ID") == "up-tcp"
    finally:
        pbx.close()
        server.close()


async def test_logs_tag_calls_but_never_show_the_barred_number(
    make_gateway: GatewayFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="upcs")
    pbx = await UdpPeer().start()
    gw = await make_gateway(["udp:127.0.0.1:0"], Endpoint("udp", "127.0.0.1", 9))
    gw_addr = gw.udp_addresses[0]
    try:
        dialled = "07700%20900%20123"
        pbx.send(sip_request("INVITE", dialled, gw_addr, pbx.addr, call_id="log-1"), gw_addr)
        await pbx.recv_status(403)
    finally:
        pbx.close()
    text = caplog.text
    assert "call_screened call_id=log-1" in text and "verdict=blocked" in text
    assert "dialled_tag=" in text
    for form in ("900123", "7700900123", "900 123"):
        assert form not in text
