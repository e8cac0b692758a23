"""End to end with real peers: sipp as the prison PBX (UAC) and as the carrier trunk (UAS), the
real `upcs gateway run` between them, on loopback, over UDP and over TCP.

Each flow is checked twice: sipp's own verdict (exit status 0 = every call followed its scenario)
and the gateway's metrics (what was screened, what reached the trunk).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.gateway.harness import (
    SCENARIOS,
    free_port,
    http_get,
    metric_value,
    need_binary,
    write_demo_snapshot,
)

pytestmark = pytest.mark.sipp

# Timer B / F = 64*T1: with T1 = 50 ms a dead trunk is declared after 3.2 s instead of 32 s.
TEST_T1_S = 0.05
SIPP_TIMEOUT_S = 30


@dataclass
class Running:
    transport: str
    sip_port: int
    trunk_port: int
    metrics_port: int
    workdir: Path
    proc: subprocess.Popen[str]

    def metrics(self) -> str:
        status, text = http_get(f"http://127.0.0.1:{self.metrics_port}/metrics")
        assert status == 200
        return text

    def value(self, name: str, **labels: str) -> float:
        return metric_value(self.metrics(), name, **labels)


def _sipp_transport(transport: str) -> list[str]:
    return ["-t", "t1"] if transport == "tcp" else ["-t", "u1"]


@pytest.fixture(scope="module", params=["udp", "tcp"])
def gateway(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Running]:
    need_binary("sipp", "sip-tester")
    transport = str(request.param)
    workdir = tmp_path_factory.mktemp(f"sipp-{transport}")
    snap = workdir / "list.snap"
    write_demo_snapshot(snap)
    (workdir / "upcs.toml").write_text(
        f"[gateway]\nt1_s = {TEST_T1_S}\ndrain_timeout_s = 1\n", encoding="utf-8"
    )
    kind = socket.SOCK_STREAM if transport == "tcp" else socket.SOCK_DGRAM
    sip_port, trunk_port = free_port(kind), free_port(kind)
    metrics_port = free_port(socket.SOCK_STREAM)
    proc = subprocess.Popen(
        [sys.executable, "-c", "from upcs.cli import main; main()", "gateway", "run",
         "--config", str(workdir / "upcs.toml"), "--snapshot", str(snap),
         "--listen", f"{transport}:127.0.0.1:{sip_port}",
         "--upstream", f"{transport}:127.0.0.1:{trunk_port}",
         "--metrics", f"127.0.0.1:{metrics_port}", "--log-level", "warning"],
        cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    deadline = time.monotonic() + 15
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"gateway exited: {proc.communicate()}")
        try:
            if http_get(f"http://127.0.0.1:{metrics_port}/readyz", timeout=0.5)[0] == 200:
                break
        except OSError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("gateway never became ready")
        time.sleep(0.1)
    yield Running(transport, sip_port, trunk_port, metrics_port, workdir, proc)
    proc.terminate()
    try:
        proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()


def _uas(gw: Running, scenario: str, calls: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        ["sipp", "-sf", str(SCENARIOS / scenario), "-i", "127.0.0.1", "-p", str(gw.trunk_port),
         *_sipp_transport(gw.transport), "-m", str(calls), "-nostdin",
         "-timeout", f"{SIPP_TIMEOUT_S}s", "-timeout_error", "-trace_err",
         "-error_file", str(gw.workdir / f"uas-{scenario}.err")],
        cwd=gw.workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    time.sleep(0.3)  # let it bind before the first call
    assert proc.poll() is None, proc.communicate()
    return proc


def _uac(gw: Running, scenario: str, dialled: str, calls: int = 1, rate: int = 20) -> None:
    err = gw.workdir / f"uac-{scenario}.err"
    proc = subprocess.run(
        ["sipp", f"127.0.0.1:{gw.sip_port}", "-sf", str(SCENARIOS / scenario), "-s", dialled,
         "-i", "127.0.0.1", "-p", str(free_port()), *_sipp_transport(gw.transport),
         "-m", str(calls), "-r", str(rate), "-nostdin", "-timeout", f"{SIPP_TIMEOUT_S}s",
         "-timeout_error", "-trace_err", "-error_file", str(err)],
        cwd=gw.workdir, capture_output=True, text=True, timeout=SIPP_TIMEOUT_S + 10, check=False,
    )  # fmt: skip
    detail = err.read_text(errors="replace")[-3000:] if err.exists() else proc.stdout[-3000:]
    assert proc.returncode == 0, f"sipp UAC {scenario} {dialled!r} failed:\n{detail}"


def _finish(uas: subprocess.Popen[str]) -> None:
    try:
        out, _ = uas.communicate(timeout=SIPP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        uas.kill()
        out, _ = uas.communicate()
        raise AssertionError(f"sipp UAS did not finish:\n{out[-3000:]}") from None
    assert uas.returncode == 0, f"sipp UAS failed:\n{out[-3000:]}"


def _forwarded_invites(gw: Running) -> float:
    return gw.value("upcs_sip_messages_sent_total", method="INVITE")


def test_allowed_calls_connect_and_hang_up(gateway: Running) -> None:
    before = gateway.value("upcs_calls_screened_total", verdict="allowed")
    uas = _uas(gateway, "trunk_answer.xml", 10)
    _uac(gateway, "pbx_call.xml", "07700900999", calls=10)
    _finish(uas)
    assert gateway.value("upcs_calls_screened_total", verdict="allowed") - before == 10


@pytest.mark.parametrize(
    "dialled",
    ["07700900123", "+447700900123", "9%2000447700900123", "141020%207946%200456", "79460456",
     "01632960789123", "%2B441134960001", "07700%209OO123"],
)  # fmt: skip
def test_barred_and_invalid_dials_refused_and_never_forwarded(
    gateway: Running, dialled: str
) -> None:
    forwarded = _forwarded_invites(gateway)
    refused = gateway.value("upcs_sip_refused_total", why="screen")
    _uac(gateway, "pbx_refused.xml", dialled, calls=3)
    assert _forwarded_invites(gateway) == forwarded
    assert gateway.value("upcs_sip_refused_total", why="screen") - refused == 3


def test_emergency_999_always_connects(gateway: Running) -> None:
    uas = _uas(gateway, "trunk_answer.xml", 1)
    _uac(gateway, "pbx_call.xml", "999")
    _finish(uas)


def test_cancel_while_ringing(gateway: Running) -> None:
    uas = _uas(gateway, "trunk_ring_cancel.xml", 3)
    _uac(gateway, "pbx_cancel.xml", "02079460999", calls=3)
    _finish(uas)


def test_unanswered_call_gets_the_trunks_480(gateway: Running) -> None:
    uas = _uas(gateway, "trunk_no_answer.xml", 3)
    _uac(gateway, "pbx_unanswered.xml", "01134960999", calls=3)
    _finish(uas)


def test_dead_trunk_gives_408_after_timer_b(gateway: Running) -> None:
    before = gateway.value("upcs_sip_transaction_timeouts_total")
    uas = _uas(gateway, "trunk_silent.xml", 1)
    started = time.monotonic()
    _uac(gateway, "pbx_unanswered.xml", "01632960999")
    took = time.monotonic() - started
    _finish(uas)
    assert 64 * TEST_T1_S * 0.9 <= took < 64 * TEST_T1_S + 3
    assert gateway.value("upcs_sip_transaction_timeouts_total") - before >= 1


@pytest.mark.parametrize(("dialled", "verdict"), [("07700900998", "allowed"),
                                                  ("07700900123", "blocked")])  # fmt: skip
def test_retransmitted_invite_screened_and_forwarded_once(
    gateway: Running, dialled: str, verdict: str
) -> None:
    if gateway.transport == "tcp" and verdict == "blocked":
        # Over TCP nothing is retransmitted (RFC 3261 §17.1.1.2), and sipp 3.6.1 aborts with an
        # assertion in process_incoming when the 403 drawn by the copy arrives over TCP.
        pytest.skip("sipp 3.6.1 asserts on a retransmitted final response over TCP")
    screened = gateway.value("upcs_calls_screened_total", verdict=verdict)
    forwarded = _forwarded_invites(gateway)
    # Two calls, each INVITE sent twice with one branch. The trunk takes exactly two calls: a
    # copy forwarded as a new transaction would be an unexpected message and fail its call.
    uas = _uas(gateway, "trunk_answer.xml", 2) if verdict == "allowed" else None
    _uac(gateway, "pbx_retransmit.xml", dialled, calls=2)
    if uas is not None:
        _finish(uas)
    assert gateway.value("upcs_calls_screened_total", verdict=verdict) - screened == 2
    if verdict == "blocked":
        assert _forwarded_invites(gateway) == forwarded


def test_two_workers_share_the_port_and_complete_every_call(tmp_path: Path) -> None:
    """`--workers 2`: SO_REUSEPORT spreads callers over two processes; answers and in-dialog
    requests come back to the worker holding the call through its private Via port."""
    need_binary("sipp", "sip-tester")
    snap = tmp_path / "list.snap"
    write_demo_snapshot(snap)
    (tmp_path / "upcs.toml").write_text("[gateway]\ndrain_timeout_s = 1\n", encoding="utf-8")
    sip_port, trunk_port, metrics_port = free_port(), free_port(), free_port(socket.SOCK_STREAM)
    while metrics_port + 1 in (sip_port, trunk_port):
        metrics_port = free_port(socket.SOCK_STREAM)
    proc = subprocess.Popen(
        [sys.executable, "-c", "from upcs.cli import main; main()", "gateway", "run",
         "--snapshot", str(snap), "--listen", f"udp:127.0.0.1:{sip_port}",
         "--upstream", f"udp:127.0.0.1:{trunk_port}", "--metrics", f"127.0.0.1:{metrics_port}",
         "--workers", "2", "--log-level", "warning", "--config", str(tmp_path / "upcs.toml")],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    gw = Running("udp", sip_port, trunk_port, metrics_port, tmp_path, proc)
    try:
        deadline = time.monotonic() + 20
        for port in (metrics_port, metrics_port + 1):  # worker i serves metrics on port + i
            while True:
                assert proc.poll() is None, proc.communicate()
                try:
                    if http_get(f"http://127.0.0.1:{port}/readyz", timeout=0.5)[0] == 200:
                        break
                except OSError:
                    pass
                assert time.monotonic() < deadline, "workers never became ready"
                time.sleep(0.1)
        uas = _uas(gw, "trunk_answer.xml", 100)
        err = tmp_path / "uac.err"
        uac = subprocess.run(
            ["sipp", f"127.0.0.1:{sip_port}", "-sf", str(SCENARIOS / "pbx_call.xml"),
             "-s", "07700900999", "-i", "127.0.0.1", "-p", str(free_port()),
             "-t", "un", "-max_socket", "200",  # one socket per call, so the hash spreads them
             "-m", "100", "-r", "50", "-nostdin", "-timeout", f"{SIPP_TIMEOUT_S}s",
             "-timeout_error", "-trace_err", "-error_file", str(err)],
            cwd=tmp_path, capture_output=True, text=True, timeout=SIPP_TIMEOUT_S + 10,
            check=False,
        )  # fmt: skip
        assert uac.returncode == 0, err.read_text() if err.exists() else uac.stdout[-2000:]
        _finish(uas)
        per_worker = [
            metric_value(
                http_get(f"http://127.0.0.1:{port}/metrics")[1],
                "upcs_calls_screened_total", verdict="allowed",
            )
            for port in (metrics_port, metrics_port + 1)
        ]  # fmt: skip
        assert sum(per_worker) == 100
        assert all(n > 0 for n in per_worker), per_worker
    finally:
        proc.terminate()
        try:
            proc.communicate(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0
