"""/metrics, /healthz and /readyz over real HTTP, on a gateway with the real core behind it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from blocklist import DialPlan, ListSnapshot
from gateway.app import Gateway
from gateway.logs import NumberTagger, format_event
from gateway.settings import GatewaySettings
from gateway.transport.endpoint import Endpoint
from tests.gateway.harness import (
    BARRED,
    UdpPeer,
    http_get,
    metric_value,
    sip_request,
    write_demo_snapshot,
)


async def _get(url: str) -> tuple[int, str]:
    return await asyncio.to_thread(http_get, url)


def _settings(tmp_path: Path, **kw: Any) -> GatewaySettings:
    kw.setdefault("drain_timeout_s", 0.5)
    return GatewaySettings(
        listen=(Endpoint("udp", "127.0.0.1", 0),),
        upstream=Endpoint("udp", "127.0.0.1", 9),
        snapshot_path=tmp_path / "list.snap",
        metrics=("127.0.0.1", 0),
        **kw,
    )


async def test_metrics_health_and_readiness(tmp_path: Path) -> None:
    snap = write_demo_snapshot(tmp_path / "list.snap", version=42)
    gw = Gateway(_settings(tmp_path), DialPlan(), snap)
    await gw.start()
    base = f"http://127.0.0.1:{gw.metrics_port}"
    pbx = await UdpPeer().start()
    try:
        status, text = await _get(base + "/metrics")
        assert status == 200
        assert metric_value(text, "upcs_blocklist_entries") == len(BARRED)
        assert metric_value(text, "upcs_blocklist_version") == 42
        assert metric_value(text, "upcs_calls_screened_total", verdict="blocked") == 0
        assert (await _get(base + "/healthz"))[0] == 200
        assert await _get(base + "/readyz") == (200, "ready\n")
        assert (await _get(base + "/nothing"))[0] == 404

        gw_addr = gw.udp_addresses[0]
        for i, user in enumerate(["07700900123", "+447700900123", "07700900999", "0770O"]):
            pbx.send(
                sip_request("INVITE", user, gw_addr, pbx.addr, call_id=f"m{i}",
                            branch=f"z9hG4bK-m{i}"),
                gw_addr,
            )  # fmt: skip
        for _ in range(3):
            await pbx.recv_status(403)
        _, text = await _get(base + "/metrics")
        assert metric_value(text, "upcs_calls_screened_total", verdict="blocked",
                            method="INVITE") == 2  # fmt: skip
        assert metric_value(text, "upcs_calls_screened_total", verdict="allowed") == 1
        assert metric_value(text, "upcs_calls_screened_total", verdict="invalid") == 1
        assert metric_value(text, "upcs_sip_messages_received_total", method="INVITE") == 4
        assert metric_value(text, "upcs_sip_messages_sent_total", status="403") == 3
        assert metric_value(text, "upcs_sip_refused_total", why="screen") == 3
        assert metric_value(text, "upcs_screen_latency_seconds_count") >= 3  # core may pre-judge
        # The exposition parses with Prometheus' own parser; the histogram is cumulative.
        families = {f.name: f for f in text_string_to_metric_families(text)}
        buckets = [
            s.value for s in families["upcs_screen_latency_seconds"].samples
            if s.name.endswith("_bucket")
        ]  # fmt: skip
        assert buckets == sorted(buckets) and buckets[-1] >= 3
        # Safety invariant 4: no dialled number in any label or value.
        for form in ("7700900123", "900123", "7700900999"):
            assert form not in text

    finally:
        await gw.shutdown()
        pbx.close()


async def test_readyz_fails_while_draining(tmp_path: Path) -> None:
    snap = write_demo_snapshot(tmp_path / "list.snap")
    gw = Gateway(_settings(tmp_path, drain_timeout_s=5.0), DialPlan(), snap)
    await gw.start()
    base = f"http://127.0.0.1:{gw.metrics_port}"
    trunk = await UdpPeer().start()
    pbx = await UdpPeer().start()
    try:
        # Hold a transaction open (the trunk never answers) so the drain has something to wait for.
        gw_addr = gw.udp_addresses[0]  # upstream is port 9 (discard): the INVITE stays in flight
        pbx.send(sip_request("INVITE", "07700900999", gw_addr, pbx.addr, call_id="held"), gw_addr)
        await pbx.recv_status(100)
        drain = asyncio.create_task(gw.shutdown())
        await asyncio.sleep(0.2)
        assert await _get(base + "/readyz") == (503, "draining\n")
        _, text = await _get(base + "/metrics")
        assert metric_value(text, "upcs_draining") == 1
        assert metric_value(text, "upcs_sip_active_transactions") >= 1
        gw.request_stop(hurry=True)
        await drain
    finally:
        pbx.close()
        trunk.close()


async def test_readyz_reports_a_stale_list(tmp_path: Path) -> None:
    snap = write_demo_snapshot(tmp_path / "list.snap")
    gw = Gateway(_settings(tmp_path, max_list_age_s=0.2), DialPlan(), snap)
    await gw.start()
    base = f"http://127.0.0.1:{gw.metrics_port}"
    try:
        assert (await _get(base + "/readyz"))[0] == 200
        await asyncio.sleep(0.4)
        status, why = await _get(base + "/readyz")
        assert status == 503 and why.startswith("list stale")
        gw.holder.swap(snap.with_changes((), (), snap.version + 1))  # a fresh list: ready again
        assert (await _get(base + "/readyz"))[0] == 200
    finally:
        await gw.shutdown()


async def test_readyz_refuses_an_empty_list_unless_allowed(tmp_path: Path) -> None:
    for allow_empty, want in ((False, 503), (True, 200)):
        gw = Gateway(_settings(tmp_path, allow_empty=allow_empty), DialPlan(), ListSnapshot.empty())
        await gw.start()
        try:
            status, _ = await _get(f"http://127.0.0.1:{gw.metrics_port}/readyz")
            assert status == want
        finally:
            await gw.shutdown()


def test_log_format_and_number_tags() -> None:
    assert format_event("call_screened", call_id="a@b", verdict="blocked", n=None) == (
        "call_screened call_id=a@b verdict=blocked"
    )
    assert format_event("x", why='has "quotes" and spaces') == 'x why="has \\"quotes\\" and spaces"'
    tagger = NumberTagger(b"k" * 16)
    tag = tagger.tag("07700900123")
    assert len(tag) == 8 and "900123" not in tag
    assert tagger.tag("07700900123") == tag  # stable under one key
    assert NumberTagger(b"j" * 16).tag("07700900123") != tag  # keyed
