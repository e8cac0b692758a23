"""One load step for bench/sip_load.py: sipp UAC -> proxy -> sipp UAS at a fixed call rate.

PASS means, as in the anchor: every call offered completed successfully at the UAC, zero failed
calls at both ends, zero unexpected messages, zero wrong verdicts (the UAC fails a call whose
verdict contradicts the call file), and the offered rate achieved (>= 97 % of the target, from
the INVITE send times in sipp's per-response log). "clean" additionally means no retransmission
anywhere. A step is aborted as soon as it has failed for certain (a failed call) or cannot
reach the rate, so an overloaded step does not cost the whole bench budget.
"""

from __future__ import annotations

import contextlib
import csv
import glob
import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from bench.sip_load_data import DataSet
from bench.sip_load_pcap import Capture, analyse
from bench.sip_load_procs import SOCKET_BUFFER_BYTES, CpuSampler, Proxy, free_port

__all__ = ["StepSpec", "run_step", "wait_quiet"]

SCENARIOS = Path(__file__).resolve().parent / "kamailio"
UAC_CALL_LIMIT = 15_000  # sipp -l: ~5x the calls in progress at 10k/s; under ulimit -n 20000
ACHIEVED_MIN = 0.97  # the anchor's criterion: the offered rate must really be offered
LAG_ABORT = 0.85  # abort when sipp has created < 85 % of the calls it should have by now
LAG_GRACE_S = 8.0  # ... but only after this long (sipp ramps, stats lag by a second)
TAIL_S = 45.0
# A call still unfinished this long after the last INVITE went out has been through several
# retransmissions (T1 = 500 ms doubling, RFC 3261 §17.1.1.2): count the step as failed now
# rather than wait for sipp's ~32 s Timer B. Normal calls take ~0.6 s (500 ms pause in the UAS).
UNFINISHED_ABORT_S = 15.0  # time allowed after the last call is offered before the step is killed
QUIET_BUSY_PCT = 15.0  # wait_quiet: the box counts as quiet under 15 % of one core
MONITOR_S = 0.5
# A healthy step has ~0.3 x rate calls in progress (half the calls last ~0.6 s: the UAS
# answers, pauses 500 ms, hangs up; refused calls last ~1 ms). More than 4 s worth of calls
# in progress for 1.5 s means INVITEs or BYEs are being retransmitted (T1 = 500 ms doubling:
# 0.5 + 1 + 2 s) across the board: the step is collapsing; stop it instead of waiting ~32 s
# for sipp's own transaction timeouts.
PILE_UP_FACTOR = 4
PILE_UP_TICKS = 3


@dataclass(frozen=True)
class StepSpec:
    rate: int
    duration_s: float
    label: str
    capture: bool = False
    abort_early: bool = True
    profile_s: float = 0.0  # > 0: py-spy record the proxy for this long, mid-step
    keep_capture: bool = False  # keep cap.pcap (for a cross-check with tshark)


def wait_quiet(max_wait_s: float, quiet_s: float = 2.0) -> str:
    """Wait (bounded) until the machine is nearly idle; returns what happened."""
    ncpu = os.cpu_count() or 1

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as fh:
            v = [int(x) for x in fh.readline().split()[1:]]
        return sum(v[:8]) - v[3] - v[4], sum(v[:8])

    t0 = time.monotonic()
    busy0, tot0 = sample()
    calm = 0.0
    last = 0.0
    while time.monotonic() - t0 < max_wait_s:
        time.sleep(0.5)
        busy1, tot1 = sample()
        last = 100.0 * ncpu * (busy1 - busy0) / max(tot1 - tot0, 1)
        busy0, tot0 = busy1, tot1
        calm = calm + 0.5 if last <= QUIET_BUSY_PCT else 0.0
        if calm >= quiet_s:
            return f"quiet after {time.monotonic() - t0:.1f} s"
    return f"not quiet after {max_wait_s:.0f} s (last {last:.0f} % of one core busy)"


def _stat_row(path: Path) -> dict[str, str]:
    try:
        with open(path, newline="") as fh:
            rows = [r for r in csv.reader(fh, delimiter=";") if r]
    except OSError:
        return {}
    return dict(zip(rows[0], rows[-1], strict=False)) if len(rows) >= 2 else {}


def _num(row: dict[str, str], key: str) -> int:
    try:
        return int(float(row.get(key) or 0))
    except ValueError:
        return 0


def _screen_unexpected(path: Path) -> int:
    """Sum of the Unexpected-Msg column of the last scenario screen sipp dumped."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return 0
    start = max((i for i, line in enumerate(lines) if "Scenario Screen" in line), default=0)
    total = 0
    for line in lines[start:]:
        if "Statistics Screen" in line:
            break
        if "<----------" in line:
            nums = re.findall(r"\b\d+\b", line.split("<----------", 1)[1])
            if len(nums) >= 4:
                total += int(nums[3])
    return total


def _achieved_rate(step_dir: Path) -> tuple[float | None, int]:
    """Calls per second actually offered: INVITE send time = response date - response time."""
    sends: list[float] = []
    for p in glob.glob(str(step_dir / "*_rtt.csv")):
        with open(p) as fh:
            next(fh, None)
            for line in fh:
                parts = line.split(";")
                with contextlib.suppress(ValueError, IndexError):
                    sends.append(float(parts[0]) - float(parts[1]))
    if len(sends) < 2:
        return None, len(sends)
    span = (max(sends) - min(sends)) / 1000.0
    return (round((len(sends) - 1) / span, 1) if span > 0 else None), len(sends)


def _udp_drops(ports: list[int]) -> dict[int, int]:
    """Per-port receive drops of the UDP sockets open now (all sockets on a port summed)."""
    out = dict.fromkeys(ports, 0)
    try:
        with open("/proc/net/udp") as fh:
            next(fh)
            for line in fh:
                f = line.split()
                port = int(f[1].split(":")[1], 16)
                if port in out:
                    out[port] += int(f[-1])
    except OSError:
        pass
    return out


def _snmp_udp() -> dict[str, int]:
    with open("/proc/net/snmp") as fh:
        rows = [line.split() for line in fh if line.startswith("Udp:")]
    return {k: int(v) for k, v in zip(rows[0][1:], rows[1][1:], strict=False)}


def _stop(proc: subprocess.Popen[bytes], sig: int, wait_s: float) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            proc.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_step(proxy: Proxy, data: DataSet, spec: StepSpec, root: Path) -> dict[str, object]:
    """Run one step; whatever happens, no sipp, dumpcap or py-spy we started outlives it."""
    spawned: list[subprocess.Popen[bytes]] = []
    try:
        return _run_step(proxy, data, spec, root, spawned)
    finally:
        for proc in spawned:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait()


def _run_step(
    proxy: Proxy,
    data: DataSet,
    spec: StepSpec,
    root: Path,
    spawned: list[subprocess.Popen[bytes]],
) -> dict[str, object]:
    step_dir = root / spec.label
    step_dir.mkdir(parents=True, exist_ok=True)
    calls = int(spec.rate * spec.duration_s)
    uac_port = free_port()
    rr = proxy.record_route
    buf = ["-buff_size", str(SOCKET_BUFFER_BYTES)]
    common = ["-i", "127.0.0.1", "-nostdin", *buf, "-trace_stat", "-fd", "1", "-trace_screen"]
    common += ["-trace_err"]
    # Record-Route on: in-dialog requests follow the Record-Route the proxy wrote (the _rr
    # scenarios read the port from it); off: they go end to end, to the peer's port.
    uas_sf = "uas_answer_rr.xml" if rr else "uas_answer.xml"
    uas_cmd = ["sipp", "-sf", str(SCENARIOS / uas_sf), "-p", str(proxy.uas_port), *common]
    if not rr:
        uas_cmd += ["-key", "bye_port", str(uac_port)]
    uas_cmd += ["-stf", "uas_stat.csv", "-screen_file", "uas_screen.log"]
    uas_cmd += ["-error_file", "uas_err.log"]
    uac_sf = "uac_screen_rr.xml" if rr else "uac_screen.xml"
    uac_cmd = ["sipp", f"127.0.0.1:{proxy.listen_port}", "-sf", str(SCENARIOS / uac_sf)]
    uac_cmd += ["-inf", data.calls_csv, "-p", str(uac_port), "-r", str(spec.rate)]
    uac_cmd += ["-m", str(calls), "-l", str(UAC_CALL_LIMIT)]
    if not rr:
        uac_cmd += ["-key", "dialog_port", str(proxy.uas_port)]
    uac_cmd += ["-timeout", f"{int(spec.duration_s + TAIL_S)}s", "-timeout_error", *common]
    uac_cmd += ["-stf", "uac_stat.csv", "-screen_file", "uac_screen.log"]
    uac_cmd += ["-error_file", "uac_err.log", "-trace_rtt", "-rtt_freq", "200"]
    (step_dir / "commands.txt").write_text(" ".join(uas_cmd) + "\n" + " ".join(uac_cmd) + "\n")

    snmp0 = _snmp_udp()
    ports = [proxy.listen_port, uac_port, proxy.uas_port]
    proxy_drops0 = _udp_drops([proxy.listen_port])[proxy.listen_port]
    uas_out = open(step_dir / "uas.out", "wb")  # noqa: SIM115
    uas = subprocess.Popen(uas_cmd, cwd=step_dir, stdout=uas_out, stderr=subprocess.STDOUT)
    spawned.append(uas)
    uas_out.close()
    capture = Capture(step_dir / "cap.pcap", ports) if spec.capture else None
    if capture is not None:
        capture.start()
        if capture.proc is not None:
            spawned.append(capture.proc)
    # the trunk must be listening before the first INVITE is forwarded
    for _ in range(100):
        if _port_bound(proxy.uas_port):
            break
        time.sleep(0.02)

    sampler = CpuSampler(
        {
            "proxy": proxy.pids,
            "sipp_uac": lambda: [uac.pid] if uac.poll() is None else [],
            "sipp_uas": lambda: [uas.pid] if uas.poll() is None else [],
            "capture": capture.pid if capture is not None else list,
        }
    )
    uac_out = open(step_dir / "uac.out", "wb")  # noqa: SIM115
    t0 = time.monotonic()
    uac = subprocess.Popen(uac_cmd, cwd=step_dir, stdout=uac_out, stderr=subprocess.STDOUT)
    spawned.append(uac)
    uac_out.close()
    sampler.start()
    profiler: subprocess.Popen[bytes] | None = None
    abort = ""
    max_drops: dict[int, int] = dict.fromkeys(ports, 0)
    offered_all_at: float | None = None
    piled = 0
    while uac.poll() is None:
        time.sleep(MONITOR_S)
        elapsed = time.monotonic() - t0
        for port, d in _udp_drops(ports).items():
            max_drops[port] = max(max_drops[port], d)
        if spec.profile_s > 0 and profiler is None and elapsed > 2.0 and proxy.proc is not None:
            profiler = _start_profiler(proxy.proc.pid, spec.profile_s, step_dir)
            if profiler is not None:
                spawned.append(profiler)
        row = _stat_row(step_dir / "uac_stat.csv")
        uas_row = _stat_row(step_dir / "uas_stat.csv")
        offered = _num(row, "OutgoingCall(C)")
        in_progress = _num(row, "CurrentCall")
        piled = piled + 1 if in_progress > PILE_UP_FACTOR * spec.rate else 0
        if offered >= calls and offered_all_at is None:
            offered_all_at = elapsed
        if spec.abort_early and _num(row, "FailedCall(C)") + _num(uas_row, "FailedCall(C)") > 0:
            abort = f"failed calls after {elapsed:.0f} s"
        elif spec.abort_early and piled >= PILE_UP_TICKS:
            abort = f"calls piling up ({in_progress} in progress, normal is ~{spec.rate // 3})"
        elif (
            spec.abort_early
            and offered_all_at is not None
            and elapsed - offered_all_at > UNFINISHED_ABORT_S
        ):
            done = _num(row, "SuccessfulCall(C)") + _num(row, "FailedCall(C)")
            abort = (
                f"{calls - done} calls unfinished {UNFINISHED_ABORT_S:.0f} s after the last INVITE"
            )
        elif (
            spec.abort_early
            and LAG_GRACE_S < elapsed < spec.duration_s
            and offered < LAG_ABORT * spec.rate * (elapsed - 1.5)
        ):
            abort = f"offered only {offered} calls in {elapsed:.0f} s"
        elif elapsed > spec.duration_s + TAIL_S + 10:
            abort = "sipp UAC still running after its own timeout"
        if abort:
            _stop(uac, signal.SIGKILL, 5)  # failed for certain: its periodic stats suffice
            break
    uac_rc = uac.wait()
    wall = time.monotonic() - t0
    time.sleep(0.0 if abort else 1.0)  # the last BYEs (0.5 s after the 200) complete
    if abort:
        _stop(uas, signal.SIGKILL, 5)
    else:
        _stop(uas, signal.SIGUSR1, 8.0)  # SIGUSR1: sipp stops softly, final stats written
    cpu = sampler.stop()
    if profiler is not None:
        try:
            profiler.wait(timeout=spec.profile_s + 30)
        except subprocess.TimeoutExpired:
            _stop(profiler, signal.SIGINT, 10)
    capture_report = capture.stop() if capture is not None else ""
    snmp1 = _snmp_udp()

    uac_row = _stat_row(step_dir / "uac_stat.csv")
    uas_row = _stat_row(step_dir / "uas_stat.csv")
    achieved, responses = _achieved_rate(step_dir)
    if abort:
        achieved = None  # a few seconds of a collapsing step say nothing about the rate
    res: dict[str, object] = {
        "label": spec.label,
        "proxy": proxy.label,
        "target_cps": spec.rate,
        "duration_s": spec.duration_s,
        "calls": calls,
        "wall_s": round(wall, 1),
        "aborted": abort,
        "uac_rc": uac_rc,
        "achieved_cps": achieved,
        "responses_timed": responses,
        "uac": {
            "successful": _num(uac_row, "SuccessfulCall(C)"),
            "failed": _num(uac_row, "FailedCall(C)"),
            "failed_unexpected": _num(uac_row, "FailedUnexpectedMessage(C)"),
            "unexpected_msgs": _screen_unexpected(step_dir / "uac_screen.log"),
            "retrans": _num(uac_row, "Retransmissions(C)"),
            "out_of_call": _num(uac_row, "OutOfCallMsgs(C)"),
            "dead_call": _num(uac_row, "DeadCallMsgs(C)"),
            "allowed_ok": _num(uac_row, "allowed_ok(C)"),
            "blocked_ok": _num(uac_row, "blocked_ok(C)"),
            "wrong_verdict": _num(uac_row, "wrong_verdict(C)"),
        },
        "uas": {
            "successful": _num(uas_row, "SuccessfulCall(C)"),
            "failed": _num(uas_row, "FailedCall(C)"),
            "unexpected_msgs": _screen_unexpected(step_dir / "uas_screen.log"),
            "retrans": _num(uas_row, "Retransmissions(C)"),
        },
        "cpu": cpu,
        "udp": {
            "rcvbuf_errors": snmp1.get("RcvbufErrors", 0) - snmp0.get("RcvbufErrors", 0),
            "drops_proxy": max_drops[proxy.listen_port] - proxy_drops0,
            "drops_uac": max_drops[uac_port],
            "drops_uas": max_drops[proxy.uas_port],
        },
    }
    uac_s = res["uac"]
    uas_s = res["uas"]
    assert isinstance(uac_s, dict) and isinstance(uas_s, dict)
    passed = (
        not abort
        and uac_s["successful"] == calls
        and uac_s["failed"] == 0
        and uac_s["failed_unexpected"] == 0
        and uac_s["unexpected_msgs"] == 0
        and uac_s["wrong_verdict"] == 0
        and uac_s["allowed_ok"] + uac_s["blocked_ok"] == calls
        and uas_s["failed"] == 0
        and uas_s["unexpected_msgs"] == 0
        and achieved is not None
        and achieved >= ACHIEVED_MIN * spec.rate
    )
    res["pass"] = passed
    res["clean"] = passed and uac_s["retrans"] == 0 and uas_s["retrans"] == 0
    cpu_s = cpu.get("cpu_s")
    done = uac_s["successful"] + uac_s["failed"]
    if isinstance(cpu_s, dict) and done:
        res["proxy_cpu_us_per_call"] = round(1e6 * float(cpu_s.get("proxy", 0.0)) / done, 1)
    other = cpu.get("other")
    res["other_pct"] = other.get("avg_pct", 0.0) if isinstance(other, dict) else 0.0
    res["disturbed"] = bool(isinstance(other, dict) and float(other.get("avg_pct", 0.0)) > 10.0)
    if capture is not None:
        res["capture_report"] = capture_report.splitlines()[-2:]
        res["latency"] = analyse(capture.path, uac_port, proxy.listen_port, proxy.uas_port)
        if not spec.keep_capture:
            capture.path.unlink(missing_ok=True)
    if profiler is not None:
        res["profile_raw"] = str(step_dir / "pyspy.txt")
    return res


def _port_bound(port: int) -> bool:
    with open("/proc/net/udp") as fh:
        next(fh)
        return any(int(line.split()[1].split(":")[1], 16) == port for line in fh)


def _start_profiler(pid: int, seconds: float, step_dir: Path) -> subprocess.Popen[bytes] | None:
    cmd = ["py-spy", "record", "--pid", str(pid), "--subprocesses", "--nonblocking"]
    cmd += ["--duration", str(int(seconds)), "--rate", "100", "--format", "raw"]
    cmd += ["--output", str(step_dir / "pyspy.txt")]
    log = open(step_dir / "pyspy.log", "wb")  # noqa: SIM115
    try:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    except FileNotFoundError:
        return None
    finally:
        log.close()
    return proc
