"""Overload control: new INVITEs shed with 503 + Retry-After, never a call already in the core,
and a shed call stays shed; the meter's ratio follows the receive backlog."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

from blocklist import DialPlan
from gateway.app import Gateway
from gateway.settings import GatewaySettings
from gateway.transport.endpoint import Endpoint
from gateway.transport.overload import (
    SHED_STEP_DOWN,
    SHED_STEP_UP,
    LoadMeter,
    RecentInvites,
    shed_response,
    udp_backlog_bytes,
)
from tests.gateway.harness import UdpPeer, header, sip_request, write_demo_snapshot


def test_meter_ratio_rises_while_the_backlog_grows_and_falls_slowly() -> None:
    meter = LoadMeter(high_bytes=1600, low_bytes=100)
    assert not meter.overloaded and not meter.should_shed()
    assert meter.update(5000) is True  # overload starts
    assert meter.shed_ratio == SHED_STEP_UP
    assert meter.update(5000) is False and meter.shed_ratio == SHED_STEP_UP  # high but steady
    assert meter.update(4000) is False and meter.shed_ratio == SHED_STEP_UP  # high, shrinking
    backlog = 4000
    for _ in range(20):
        backlog += 1000  # growing by more than high/16 each window
        meter.update(backlog)
    assert meter.shed_ratio == 1.0
    meter.update(50)
    assert meter.shed_ratio == 1.0 - SHED_STEP_DOWN
    meter.shed_ratio = 0.25
    decisions = [meter.should_shed() for _ in range(100)]
    assert sum(decisions) == 25  # exactly the ratio, evenly spread
    assert not any(decisions[i] and decisions[i + 1] for i in range(99))
    changed = [meter.update(0) for _ in range(10)]
    assert meter.shed_ratio == 0.0 and changed.count(True) == 1  # one "overload_ended"


def test_recent_invites_expire_after_timer_b() -> None:
    recent = RecentInvites()
    recent.add(b"INVITE a", 0.0)
    recent.add(b"INVITE b", 10.0)
    assert b"INVITE a" in recent and b"INVITE c" not in recent
    recent.add(b"INVITE c", 33.0)  # 64*T1 = 32 s after the first
    assert b"INVITE a" not in recent and b"INVITE b" in recent and len(recent) == 2


def test_shed_response_is_a_503_for_new_invites_only() -> None:
    gw, me = ("127.0.0.1", 5060), ("127.0.0.1", 5070)
    invite = sip_request("INVITE", "07700900999", gw, me, call_id="s1")
    out = shed_response(invite, 9)
    assert out is not None
    response, call_id = out
    assert call_id == "s1" and response.startswith(b"SIP/2.0 503 Service Unavailable\r\n")
    assert header(response, "Retry-After") == "9"
    assert header(response, "Via") == header(invite, "Via")
    assert ";tag=" in (header(response, "To") or "")
    reinvite = sip_request("INVITE", "07700900999", gw, me, extra="X-Note: in dialog").replace(
        b"To: <sip:07700900999@127.0.0.1:5060>", b"To: <sip:07700900999@127.0.0.1:5060>;tag=ab"
    )
    assert shed_response(reinvite, 9) is None  # in-dialog: never shed
    assert shed_response(b"INVITE garbage", 9) is None  # unreadable: the core answers it


def test_udp_backlog_is_read_from_proc() -> None:
    import os

    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        rx.bind(("127.0.0.1", 0))
        inode = os.fstat(rx.fileno()).st_ino
        assert udp_backlog_bytes({inode}) == 0
        for _ in range(20):
            tx.sendto(b"x" * 600, rx.getsockname())
        backlog = udp_backlog_bytes({inode})
        assert backlog is not None and backlog >= 20 * 600
    finally:
        rx.close()
        tx.close()


async def test_gateway_sheds_new_invites_but_not_calls_in_progress(tmp_path: Path) -> None:
    snap = write_demo_snapshot(tmp_path / "list.snap")
    trunk = await UdpPeer().start()
    pbx = await UdpPeer().start()
    settings = GatewaySettings(
        listen=(Endpoint("udp", "127.0.0.1", 0),),
        upstream=Endpoint("udp", *trunk.addr),
        snapshot_path=tmp_path / "list.snap",
        retry_after_s=11,
        drain_timeout_s=0.3,
        shed_backlog_bytes=0,  # no backlog watch: the test steers the meter itself
    )
    gw = Gateway(settings, DialPlan(), snap)
    await gw.start()
    addr = gw.udp_addresses[0]
    try:
        early = sip_request("INVITE", "07700900991", addr, pbx.addr, call_id="early",
                            branch="z9hG4bK-early")  # fmt: skip
        pbx.send(early, addr)
        await pbx.recv_status(100)
        await trunk.recv()  # forwarded before the overload

        for i in range(1, 12):
            gw.load_meter.update(i * 10**9)  # a backlog growing window after window
        assert gw.load_meter.shed_ratio == 1.0
        new = sip_request("INVITE", "07700900992", addr, pbx.addr, call_id="new",
                          branch="z9hG4bK-new")  # fmt: skip
        pbx.send(new, addr)
        shed = await pbx.recv_status(503)
        assert header(shed, "Call-ID") == "new" and header(shed, "Retry-After") == "11"
        ack = sip_request("ACK", "07700900992", addr, pbx.addr, call_id="new",
                          branch="z9hG4bK-new").replace(
            b"To: <sip:07700900992@" + f"{addr[0]}:{addr[1]}>".encode(),
            b"To: " + (header(shed, "To") or "").encode(),
        )  # fmt: skip
        assert b";tag=shed" in ack
        pbx.send(ack, addr)  # hop by hop: absorbed by the gateway, never forwarded

        # The call already in the core is not shed: its retransmission is absorbed there.
        pbx.send(early, addr)
        again = await pbx.recv()
        assert header(again[0], "Call-ID") == "early" and not again[0].startswith(b"SIP/2.0 503")

        # Overload over; the shed call's retransmission is still refused, never forwarded.
        for _ in range(30):
            gw.load_meter.update(0)
        assert not gw.load_meter.overloaded
        pbx.send(new, addr)
        assert header(await pbx.recv_status(503), "Call-ID") == "new"
        await asyncio.sleep(0.2)
        while not trunk.queue.empty():
            assert header(trunk.queue.get_nowait()[0], "Call-ID") == "early"
        assert gw.metrics.overload_shed._value.get() == 2
        assert gw.metrics.refused.value(why="overload") == 2
    finally:
        await gw.shutdown()
        pbx.close()
        trunk.close()
