"""Processes for bench/sip_load.py: the two proxies under test, readiness, memory and CPU.

Every process is started here, remembered by PID, and stopped by that PID (never by name).
Readiness is the same for both proxies: the time from exec until the proxy answers an OPTIONS
addressed to itself with 200, so "load time" means the same thing for Kamailio (htable filled
in mod_init, before the workers fork) and for upcs (snapshot read before serving).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "GC_LOGGER",
    "CpuSampler",
    "KamailioProxy",
    "Proxy",
    "ProxyStartError",
    "UpcsProxy",
    "free_port",
    "options_probe",
    "proc_tree",
    "pss_rss_kib",
    "stop_pid",
]

HERE = Path(__file__).resolve().parent
KAMAILIO_CFG = HERE / "kamailio" / "kamailio.cfg"
READY_TIMEOUT_S = 180.0  # Kamailio loads 1M rows in ~5 s (anchor); generous for a busy box
PROBE_INTERVAL_S = 0.02  # 20 ms between OPTIONS probes: load-time resolution
STOP_GRACE_S = 10.0  # SIGTERM grace before SIGKILL; Kamailio ignores TERM while loading
UPCS_STOP_GRACE_S = 3.0
KAM_SHM_MB = 1024  # SQLite-loaded 1M htable used 180 MB shm in the anchor; db_text peaks 868
KAM_PKG_MB = 256  # db_sqlite has no fetch: the whole 1M-row result sits in pkg memory while loading
SOCKET_BUFFER_BYTES = 4 * 1024 * 1024  # net.core.rmem_max on this box; see the anchor's notes


# A sitecustomize.py for the upcs process in the profile step: Python imports it at start-up
# when its directory is on PYTHONPATH, so the gateway's own code is untouched. It logs every
# generation 1 and 2 collection (the stop-the-world pauses of CPython's cyclic GC) with its
# duration and, for generation 2, how many objects the collector tracks afterwards.
GC_LOGGER = """\
import gc, os, time
_start = [0.0]
_path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gc-%d.log" % os.getpid())
def _upcs_bench_gc(phase, info):
    if phase == "start":
        _start[0] = time.perf_counter()
        return
    if info["generation"] < 1:
        return
    ms = (time.perf_counter() - _start[0]) * 1000.0
    tracked = len(gc.get_objects()) if info["generation"] == 2 else -1
    with open(_path, "a") as fh:
        fh.write("%.3f %d %.2f %d %d\\n" % (time.time(), info["generation"], ms,
                                             info["collected"], tracked))
gc.callbacks.append(_upcs_bench_gc)
"""


class ProxyStartError(RuntimeError):
    pass


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    """A currently free loopback port (bind port 0, read it back)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def options_probe(port: int, timeout_s: float = 0.2) -> bool:
    """One OPTIONS to sip:127.0.0.1:port (the proxy itself); True on a 200."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.settimeout(timeout_s)
        lport = s.getsockname()[1]
        branch = f"z9hG4bKprobe{time.monotonic_ns()}"
        msg = (
            f"OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{lport};branch={branch};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:bench@127.0.0.1:{lport}>;tag=probe\r\n"
            f"To: <sip:127.0.0.1:{port}>\r\n"
            f"Call-ID: {branch}@bench\r\n"
            "CSeq: 1 OPTIONS\r\n"
            "Content-Length: 0\r\n\r\n"
        )
        s.sendto(msg.encode(), ("127.0.0.1", port))
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                data = s.recv(65535)
            except (TimeoutError, ConnectionRefusedError):
                return False
            if data.startswith(b"SIP/2.0 200"):
                return True
            if data.startswith(b"SIP/2.0 1"):
                continue
            return False
    return False


def _ppid_map() -> dict[int, int]:
    out: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        out[int(name)] = int(fields[1])
    return out


def proc_tree(root: int) -> list[int]:
    """`root` and all its descendants that are alive now."""
    parents = _ppid_map()
    if root not in parents:
        return []
    found = [root]
    frontier = [root]
    while frontier:
        kids = [pid for pid, ppid in parents.items() if ppid in frontier]
        found.extend(kids)
        frontier = kids
    return found


def pss_rss_kib(pids: list[int]) -> tuple[int, int]:
    """Sum of Pss and Rss (KiB) over `pids` from /proc/PID/smaps_rollup. PSS charges each shared
    page (Kamailio's shm, copy-on-write pages after fork) once, so sums over processes are fair."""
    pss = rss = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as fh:
                for line in fh:
                    if line.startswith("Pss:"):
                        pss += int(line.split()[1])
                    elif line.startswith("Rss:"):
                        rss += int(line.split()[1])
        except OSError:
            continue
    return pss, rss


def stop_pid(
    proc: subprocess.Popen[bytes], extra: list[int], grace_s: float = STOP_GRACE_S
) -> None:
    """SIGTERM the process we started, wait, then SIGKILL it and the children we recorded."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            for pid in [proc.pid, *extra]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            proc.wait(timeout=grace_s)
    for pid in extra:  # workers that outlived their parent
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 0)
            os.kill(pid, signal.SIGKILL)


@dataclass
class Proxy:
    """One running proxy instance: SIP port, the trunk port it forwards to, how it was set up."""

    kind: str  # "kamailio" | "upcs"
    record_route: bool
    workdir: Path
    listen_port: int = 0
    uas_port: int = 0
    load_s: float = 0.0
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    children_seen: list[int] = field(default_factory=list)
    # SIGTERM grace before SIGKILL. upcs drains on SIGTERM and counts completed non-INVITE
    # transactions (our OPTIONS probes, in Timer J for 32 s) as in flight; the bench does not
    # measure shutdown, so it does not wait for that.
    stop_grace_s: float = STOP_GRACE_S

    @property
    def label(self) -> str:
        return f"{self.kind}-rr{'on' if self.record_route else 'off'}"

    def command(self) -> list[str]:
        raise NotImplementedError

    src_dir: str = ""  # run the project from this exported tree instead of the work tree

    gc_log_dir: str = ""  # log the proxy's garbage collections here (upcs only, diagnostics)

    def env(self) -> dict[str, str] | None:
        paths = [d for d in (self.gc_log_dir, self.src_dir) if d]
        if not paths:
            return None
        # PYTHONPATH wins over the editable install's finder (appended to sys.meta_path)
        return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}

    def start(self, log_name: str) -> float:
        """Start, wait until it answers OPTIONS; returns and records the load time (s)."""
        self.listen_port = free_port()
        self.uas_port = free_port()
        self.log_path = self.workdir / f"{log_name}.log"
        cmd = self.command()
        (self.workdir / f"{log_name}.cmd").write_text(" ".join(cmd) + "\n")
        log = open(self.log_path, "wb")  # noqa: SIM115 - lives as long as the process
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=self.env()
        )
        log.close()
        deadline = t0 + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                lines = self.log_path.read_text(errors="replace").strip().splitlines()
                last = lines[-1].strip() if lines else "no output"
                raise ProxyStartError(
                    f"{self.label} exited with {self.proc.returncode} during start-up "
                    f"({last[:200]}); log {self.log_path}"
                )
            if options_probe(self.listen_port, timeout_s=PROBE_INTERVAL_S):
                self.load_s = round(time.monotonic() - t0, 3)
                self.children_seen = proc_tree(self.proc.pid)[1:]
                return self.load_s
        self.stop()
        raise ProxyStartError(f"{self.label} not answering OPTIONS after {READY_TIMEOUT_S} s")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def pids(self) -> list[int]:
        if self.proc is None:
            return []
        return proc_tree(self.proc.pid)

    def memory(self) -> dict[str, object]:
        pids = self.pids()
        pss, rss = pss_rss_kib(pids)
        return {"processes": len(pids), "pss_kib": pss, "rss_kib": rss}

    def stop(self) -> None:
        if self.proc is None:
            return
        kids = sorted(set(self.children_seen) | set(self.pids()[1:]))
        stop_pid(self.proc, kids, self.stop_grace_s)
        self.proc = None


@dataclass
class KamailioProxy(Proxy):
    data_url: str = ""
    children: int = 4
    empty: bool = False
    dbtext: bool = False

    def __post_init__(self) -> None:
        self.ctl = self.workdir / "kamailio_ctl"

    def command(self) -> list[str]:
        self.ctl.unlink(missing_ok=True)
        defines = [
            f"CHILDREN={self.children}",
            f'CTLSOCK="unix:{self.ctl}"',
            f'UAS_DST="sip:127.0.0.1:{self.uas_port}"',
            f'DBURL="{self.data_url}"',
            f"MAXBUFFER={SOCKET_BUFFER_BYTES}",
        ]
        if self.record_route:
            defines.append("WITH_RR")
        if self.empty:
            defines.append("EMPTY_LIST")
        if self.dbtext:
            defines.append("WITH_DBTEXT")
        cmd = ["kamailio", "-DD", "-E", "-f", str(KAMAILIO_CFG), "-x", "tlsf"]
        cmd += ["-m", str(KAM_SHM_MB), "-M", str(KAM_PKG_MB), "-Y", str(self.workdir)]
        cmd += ["-l", f"udp:127.0.0.1:{self.listen_port}"]
        for d in defines:
            cmd += ["-A", d]
        return cmd

    def kamcmd(self, *args: str) -> str:
        out = subprocess.run(
            ["kamcmd", "-s", f"unix:{self.ctl}", *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        return out.stdout

    def memory(self) -> dict[str, object]:
        mem = super().memory()
        shm = dict(re.findall(r"(\w+):\s*(\d+)", self.kamcmd("core.shmmem")))
        mem["shm_used_bytes"] = int(shm.get("used", 0))
        mem["shm_real_used_bytes"] = int(shm.get("real_used", 0))
        mem["shm_max_used_bytes"] = int(shm.get("max_used", 0))
        items = re.search(r"all:\s*(\d+)", self.kamcmd("htable.stats"))
        mem["entries"] = int(items.group(1)) if items else None
        return mem

    def active_transactions(self) -> int | None:
        m = re.search(r"current:\s*(\d+)", self.kamcmd("tm.stats"))
        return int(m.group(1)) if m else None


@dataclass
class UpcsProxy(Proxy):
    snapshot: str = ""
    workers: int = 1
    upcs_cmd: tuple[str, ...] = ()
    metrics_port: int = 0
    extra_args: tuple[str, ...] = ()
    stop_grace_s: float = UPCS_STOP_GRACE_S

    def command(self) -> list[str]:
        self.metrics_port = free_port(socket.SOCK_STREAM)
        config = self.workdir / "upcs.toml"
        # The same dial plan the data generator checked every verdict with (DialPlan()).
        config.write_text('[dialplan]\ncountry = "GB"\narea_code = "20"\noutside_line = "9"\n')
        base = list(self.upcs_cmd) or [sys.executable, "-m", "upcs"]
        cmd = [*base, "gateway", "run", "--config", str(config), "--snapshot", self.snapshot]
        cmd += ["--listen", f"udp:127.0.0.1:{self.listen_port}"]
        cmd += ["--upstream", f"udp:127.0.0.1:{self.uas_port}"]
        cmd += ["--record-route" if self.record_route else "--no-record-route"]
        if self.workers != 1:
            cmd += ["--workers", str(self.workers)]
        cmd += ["--metrics", f"127.0.0.1:{self.metrics_port}", *self.extra_args]
        return cmd


class CpuSampler:
    """CPU of named process groups, sampled once a second from /proc (utime+stime), and of the
    whole machine from /proc/stat, so whatever else ran on the box shows up as "other"."""

    TICK = os.sysconf("SC_CLK_TCK")

    def __init__(self, groups: dict[str, Callable[[], list[int]]], interval_s: float = 1.0):
        self.groups = groups
        self.interval_s = interval_s
        self.ticks: dict[str, int] = dict.fromkeys(groups, 0)
        self.per_second: dict[str, list[float]] = {g: [] for g in [*groups, "other", "idle"]}
        self._last: dict[str, dict[int, int]] = {g: {} for g in groups}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.elapsed_s = 0.0

    @staticmethod
    def _pid_ticks(pid: int) -> int | None:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return int(fields[11]) + int(fields[12])

    @staticmethod
    def _machine() -> tuple[int, int]:
        with open("/proc/stat") as fh:
            v = [int(x) for x in fh.readline().split()[1:]]
        busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7]
        return busy, busy + v[3] + v[4]

    def _sample(self) -> dict[str, int]:
        delta: dict[str, int] = {}
        for g, get in self.groups.items():
            d = 0
            for pid in get():
                t = self._pid_ticks(pid)
                if t is None:
                    continue
                d += t - self._last[g].get(pid, t if self._primed else 0)
                self._last[g][pid] = t
            delta[g] = d
        return delta

    _primed = False

    def _run(self) -> None:
        self._sample()
        self._primed = True
        busy0, total0 = self._machine()
        t0 = time.monotonic()
        while not self._stop.wait(self.interval_s):
            d = self._sample()
            busy1, total1 = self._machine()
            ours = sum(d.values())
            for g, v in d.items():
                self.ticks[g] += v
                self.per_second[g].append(100.0 * v / self.TICK / self.interval_s)
            span = max(total1 - total0, 1)
            ncpu = os.cpu_count() or 1
            other = max(busy1 - busy0 - ours, 0)
            self.per_second["other"].append(100.0 * ncpu * other / span)
            self.per_second["idle"].append(
                100.0 * ncpu * (total1 - total0 - (busy1 - busy0)) / span
            )
            busy0, total0 = busy1, total1
        self.elapsed_s = time.monotonic() - t0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> dict[str, object]:
        self._stop.set()
        self._thread.join()
        out: dict[str, object] = {}
        for g, vals in self.per_second.items():
            if vals:
                out[g] = {
                    "avg_pct": round(sum(vals) / len(vals), 1),
                    "max_pct": round(max(vals), 1),
                }
        out["cpu_s"] = {g: round(t / self.TICK, 2) for g, t in self.ticks.items()}
        return out
