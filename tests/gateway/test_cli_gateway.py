"""`upcs gateway run`: usage errors (exit 2 naming the flag), runtime failures (exit 1 with a clear
message), and a graceful SIGTERM drain on a real subprocess (503 + Retry-After for new INVITEs)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.gateway.harness import (
    UdpPeer,
    free_port,
    header,
    http_get,
    sip_request,
    sip_response_to,
    write_demo_snapshot,
)
from upcs.cli import app

runner = CliRunner()
UPCS = [sys.executable, "-c", "from upcs.cli import main; main()"]


def _run(args: list[str]) -> tuple[int, str]:
    result = runner.invoke(app, ["gateway", "run", *args])
    return result.exit_code, result.output + (result.stderr if result.stderr_bytes else "")


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["--snapshot", "x.snap", "--upstream", "udp:127.0.0.1:5080"], "--listen"),
        (["--snapshot", "x.snap", "--listen", "udp:127.0.0.1:0"], "--upstream"),
        (["--snapshot", "x", "--listen", "udp:::1:5060", "--upstream", "udp:[::1]:5080"],
         "--listen"),
        (["--snapshot", "x", "--listen", "sctp:1.2.3.4:5", "--upstream", "udp:[::1]:5080"],
         "--listen"),
        (["--snapshot", "x", "--listen", "udp:127.0.0.1:0", "--upstream", "udp:127.0.0.1:5080",
          "--allow-from", "anyone"], "--allow-from"),
        (["--snapshot", "x", "--listen", "udp:127.0.0.1:0", "--upstream", "udp:127.0.0.1:5080",
          "--workers", "0"], "--workers"),
        (["--snapshot", "x", "--listen", "udp:127.0.0.1:0", "--upstream", "udp:127.0.0.1:5080",
          "--workers", "many"], "--workers"),
        (["--snapshot", "x", "--listen", "udp:127.0.0.1:0", "--upstream", "udp:127.0.0.1:5080",
          "--redis", "redis://127.0.0.1:6379/0"], "--site"),
        (["--snapshot", "x", "--listen", "udp:127.0.0.1:0", "--upstream", "udp:127.0.0.1:5080",
          "--metrics", "nine"], "--metrics"),
        (["--snapshot", "x", "--listen", "udp:127.0.0.1:0", "--upstream", "udp:127.0.0.1:5080",
          "--refusal-status", "200"], "--refusal-status"),
        (["--listen", "udp:127.0.0.1:0", "--upstream", "udp:127.0.0.1:5080"], "--snapshot"),
        (["--snapshot", "x", "--listen", "udp:127.0.0.1:0", "--upstream", "udp:127.0.0.1:5080",
          "--no-such-flag"], "--no-such-flag"),
        (["--snapshot", "x", "--listen", "udp:127.0.0.1:0", "--upstream", "udp:127.0.0.1:5080",
          "--config", "/nonexistent/upcs.toml"], "--config"),
    ],
)  # fmt: skip
def test_usage_errors_exit_2_naming_the_flag(args: list[str], names: str) -> None:
    code, output = _run(args)
    assert code == 2, output
    assert names in output


def test_bad_config_key_is_a_usage_error(tmp_path: Path) -> None:
    cfg = tmp_path / "upcs.toml"
    cfg.write_text("[gateway]\nrecord_rout = false\n")
    code, output = _run(["--config", str(cfg), "--snapshot", "x", "--listen", "udp:127.0.0.1:0",
                         "--upstream", "udp:127.0.0.1:5080"])  # fmt: skip
    assert code == 2 and "record_rout" in output


def test_missing_and_damaged_snapshots_exit_1(tmp_path: Path) -> None:
    base = ["--listen", "udp:127.0.0.1:0", "--upstream", "udp:127.0.0.1:5080"]
    code, output = _run(["--snapshot", str(tmp_path / "none.snap"), *base])
    assert code == 1 and "none.snap" in output and "--allow-empty" in output
    bad = tmp_path / "bad.snap"
    write_demo_snapshot(bad)
    data = bytearray(bad.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad.write_bytes(bytes(data))
    code, output = _run(["--snapshot", str(bad), *base])
    assert code == 1 and "bad.snap" in output


def test_port_in_use_exits_1(tmp_path: Path) -> None:
    snap = tmp_path / "list.snap"
    write_demo_snapshot(snap)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.1", 0))
        port = busy.getsockname()[1]
        code, output = _run(["--snapshot", str(snap), "--listen", f"udp:127.0.0.1:{port}",
                             "--upstream", "udp:127.0.0.1:5080"])  # fmt: skip
    assert code == 1 and "cannot bind" in output


def _start(args: list[str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*UPCS, "gateway", "run", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def _wait_ready(port: int, proc: subprocess.Popen[str], wait_s: float = 15.0) -> None:
    deadline = time.monotonic() + wait_s
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


async def test_sigterm_drains_with_503_and_retry_after(tmp_path: Path) -> None:
    snap = tmp_path / "list.snap"
    write_demo_snapshot(snap)
    (tmp_path / "upcs.toml").write_text("[gateway]\ndrain_timeout_s = 4\nretry_after_s = 7\n")
    trunk = await UdpPeer().start()
    pbx = await UdpPeer().start()
    sip_port, metrics_port = free_port(), free_port(socket.SOCK_STREAM)
    proc = _start(
        ["--snapshot", str(snap), "--listen", f"udp:127.0.0.1:{sip_port}",
         "--upstream", f"udp:127.0.0.1:{trunk.addr[1]}", "--metrics", f"127.0.0.1:{metrics_port}"],
        tmp_path,
    )  # fmt: skip
    try:
        await asyncio.to_thread(_wait_ready, metrics_port, proc)
        gw = ("127.0.0.1", sip_port)
        # A call in flight: the trunk has the INVITE and has not answered yet.
        pbx.send(sip_request("INVITE", "07700900999", gw, pbx.addr, call_id="inflight",
                             branch="z9hG4bK-in"), gw)  # fmt: skip
        forwarded, trunk_src = await trunk.recv()
        proc.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.5)
        assert proc.poll() is None  # still draining: the call above is in flight
        status, why = await asyncio.to_thread(http_get, f"http://127.0.0.1:{metrics_port}/readyz")
        assert (status, why.strip()) == (503, "draining")
        pbx.send(sip_request("INVITE", "07700900998", gw, pbx.addr, call_id="late",
                             branch="z9hG4bK-late"), gw)  # fmt: skip
        refused = await pbx.recv_status(503)
        assert header(refused, "Call-ID") == "late"
        assert header(refused, "Retry-After") == "7"
        while not trunk.queue.empty():  # only retransmissions of the in-flight INVITE
            assert header(trunk.queue.get_nowait()[0], "Call-ID") == "inflight"
        # The in-flight call still completes during the drain.
        trunk.send(sip_response_to(forwarded, 200, "OK"), trunk_src)
        assert header(await pbx.recv_status(200), "Call-ID") == "inflight"
        _, err = await asyncio.to_thread(proc.communicate, timeout=30)
        assert proc.returncode == 0, err
        assert "gateway_draining" in err and "gateway_stopped" in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        pbx.close()
        trunk.close()


async def test_allow_empty_starts_without_a_snapshot_and_stops_on_sigint(tmp_path: Path) -> None:
    metrics_port = free_port(socket.SOCK_STREAM)
    proc = _start(
        ["--allow-empty", "--listen", "udp:127.0.0.1:0", "--upstream", "udp:127.0.0.1:5080",
         "--metrics", f"127.0.0.1:{metrics_port}"],
        tmp_path,
    )  # fmt: skip
    try:
        await asyncio.to_thread(_wait_ready, metrics_port, proc)
        proc.send_signal(signal.SIGINT)
        _, err = await asyncio.to_thread(proc.communicate, timeout=30)
        assert proc.returncode == 0, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
