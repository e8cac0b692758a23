"""`upcs gateway run --redis URL --site NAME` end to end through real Redis: the gateway follows
the hub's list (a bar published at the hub is enforced on the next call) and reports every
blocked dial to the attempts stream with the agreed fields (interfaces.md)."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

import sync
from blocklist import ListSnapshot
from tests.gateway.harness import (
    BARRED,
    UdpPeer,
    free_port,
    header,
    http_get,
    metric_value,
    need_redis,
    sip_request,
    write_demo_snapshot,
)

pytestmark = pytest.mark.redis

NEW_BAR = "+447700900555"  # an Ofcom drama number, barred at the hub during the test


def _ready(port: int, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"gateway exited early: {proc.communicate()}")
        try:
            if http_get(f"http://127.0.0.1:{port}/readyz", timeout=0.5)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError("gateway never became ready")


async def _dial(pbx: UdpPeer, gw: tuple[str, int], user: str, call_id: str) -> int:
    """Send an INVITE and return the final status (trunk calls are answered by the test)."""
    pbx.send(sip_request("INVITE", user, gw, pbx.addr, call_id=call_id,
                         branch=f"z9hG4bK-{call_id}"), gw)  # fmt: skip
    async with asyncio.timeout(5):
        while True:
            data, _ = await pbx.recv()
            if header(data, "Call-ID") != call_id or data.startswith(b"SIP/2.0 1"):
                continue
            return int(data.split(b" ", 2)[1])


async def test_follows_the_hub_and_reports_attempts(tmp_path: Path) -> None:
    need_redis()
    prefix = f"upcs-gwtest-{uuid.uuid4().hex[:12]}"
    url = "redis://127.0.0.1:6379/0"
    client = aioredis.Redis.from_url(url)
    publisher = sync.Publisher(client, sync.SyncConfig(key_prefix=prefix))
    snap_path = tmp_path / "list.snap"
    initial = write_demo_snapshot(snap_path, version=1)  # not ahead of the hub
    await publisher.publish_snapshot(ListSnapshot.from_e164(BARRED, 1))
    (tmp_path / "upcs.toml").write_text(
        f'[gateway]\ndrain_timeout_s = 1\n\n[sync]\nkey_prefix = "{prefix}"\n', encoding="utf-8"
    )
    trunk = await UdpPeer().start()
    pbx = await UdpPeer().start()
    sip_port, metrics_port = free_port(), free_port(socket.SOCK_STREAM)
    proc = subprocess.Popen(  # noqa: ASYNC220 - started once; the test then awaits it
        [sys.executable, "-c", "from upcs.cli import main; main()", "gateway", "run",
         "--config", str(tmp_path / "upcs.toml"), "--snapshot", str(snap_path),
         "--listen", f"udp:127.0.0.1:{sip_port}", "--upstream", f"udp:127.0.0.1:{trunk.addr[1]}",
         "--metrics", f"127.0.0.1:{metrics_port}", "--redis", url, "--site", "hmp-gwtest"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip

    async def answer_trunk() -> None:
        from tests.gateway.harness import sip_response_to

        while True:
            data, src = await trunk.recv(wait_s=3600)
            if data.startswith(b"INVITE"):
                trunk.send(sip_response_to(data, 486, "Busy Here"), src)

    answering = asyncio.create_task(answer_trunk())
    gw = ("127.0.0.1", sip_port)
    try:
        await asyncio.to_thread(_ready, metrics_port, proc)
        assert len(initial) == len(BARRED)
        new_national = "0" + NEW_BAR[3:]
        assert await _dial(pbx, gw, new_national, "before-bar") == 486  # reaches the trunk
        await publisher.publish([sync.Change("add", NEW_BAR, "case-1")])
        # The bar is enforced within the follower's propagation time (target: 100 ms p99).
        deadline = time.monotonic() + 5
        status = 0
        n = 0
        while time.monotonic() < deadline:
            n += 1
            status = await _dial(pbx, gw, new_national, f"after-bar-{n}")
            if status == 403:
                break
            await asyncio.sleep(0.05)
        assert status == 403, proc.stderr.read() if proc.stderr and proc.poll() is not None else ""
        assert await _dial(pbx, gw, "+44%207700%20900123", "old-bar") == 403

        entries: list[Any] = []
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and len(entries) < 2:
            entries = await client.xrange(f"{prefix}:attempts") or []
            await asyncio.sleep(0.05)
        fields = [{k.decode(): v.decode() for k, v in e[1].items()} for e in entries]
        assert [f["call_id"] for f in fields] == [f"after-bar-{n}", "old-bar"]
        assert fields[0]["matched"] == NEW_BAR and fields[0]["dialled"] == new_national
        assert fields[1]["matched"] == "+447700900123" and fields[1]["dialled"] == "+44 7700 900123"
        assert all(f["site"] == "hmp-gwtest" and f["caller"] == "cell7" for f in fields)
        assert all(abs(float(f["ts"]) - time.time()) < 60 for f in fields)

        _, text = await asyncio.to_thread(http_get, f"http://127.0.0.1:{metrics_port}/metrics")
        assert metric_value(text, "upcs_attempts_reported_total") == 2
        assert metric_value(text, "upcs_blocklist_entries") == len(BARRED) + 1
        assert metric_value(text, "upcs_sync_applied_version") >= 2
        assert metric_value(text, "upcs_sync_connected") == 1
        assert "7700900555" not in text
    finally:
        answering.cancel()
        proc.terminate()
        _, err = await asyncio.to_thread(proc.communicate, timeout=30)
        pbx.close()
        trunk.close()
        keys = [k async for k in client.scan_iter(match=f"{prefix}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()
    assert proc.returncode == 0, err
    assert "7700900555" not in err and "900555" not in err  # never in the logs
