"""SIP load benchmark: the upcs gateway beside Kamailio 5.6, in one run, on loopback.

    python -m bench.sip_load --quick     # smoke run, under 3 minutes
    python -m bench.sip_load             # full run, about 20-25 minutes, writes
                                         # bench/results/sip_load.md

sipp UAC (the PBX) -> proxy -> sipp UAS (the trunk), half the calls to barred numbers, the
same call file, scenarios and list for both proxies, Record-Route off and on for both:
- the highest call rate sustained for 30 s with zero failed calls (short probes find the knee,
  then 30 s steps bisect it; the maximum must pass twice; the search is time-boxed);
- INVITE-to-final-response latency at 200 calls/s from a loopback capture (dumpcap);
- resident memory (sum PSS over each proxy's processes; Kamailio's shm too) and list load time;
- for upcs, a py-spy profile under load: where its time goes.
The Kamailio side is bench/kamailio/kamailio.cfg (htable loaded from SQLite), modelled on the
anchor in ../shared/anchors/kamailio/. Everything runs on 127.0.0.1 with free ports; every
process is started and stopped here by PID. Work files go to --workdir.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
import traceback
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/sip_load.py` as well as `python -m bench.sip_load`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.sip_load_data import DataSet, prepare
from bench.sip_load_procs import GC_LOGGER, KamailioProxy, Proxy, ProxyStartError, UpcsProxy
from bench.sip_load_report import render, summarise_pyspy
from bench.sip_load_step import StepSpec, run_step, wait_quiet

__all__ = ["main"]

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "bench" / "results" / "sip_load.md"
SEED = 20261203
MB = 1_000_000  # MB = 10^6 bytes, as in the anchor


class Mode:
    """Durations and limits of one run mode (full or quick)."""

    def __init__(self, quick: bool) -> None:
        self.name = "quick" if quick else "full"
        self.numbers = 100_000 if quick else 1_000_000
        self.calls = 50_000 if quick else 200_000
        self.probes = (1000,) if quick else (500, 1000, 2000, 4000, 6000, 8000, 10000)
        self.probe_s = 3.0 if quick else 5.0
        self.main_s = 4.0 if quick else 30.0  # the "sustained for 30 s"
        self.max_main_steps = 1 if quick else 8
        self.confirm = not quick  # the maximum must pass twice (the anchor's rule)
        self.latency_s = 4.0 if quick else 30.0
        self.budget_s = 170.0 if quick else 22.5 * 60.0
        self.quiet_wait_s = 1.0 if quick else 5.0
        self.profile_step_s = 6.0 if quick else 20.0
        self.profile_s = 3.0 if quick else 12.0
        self.step_overhead_s = 6.0 if quick else 12.0  # sipp start/stop, quiet wait, restarts
        self.min_search_s = 20.0 if quick else 90.0  # floor of one configuration's time box
        self.retry_disturbed = not quick


def _round50(x: float) -> int:
    return max(50, round(x / 50.0) * 50)


def _resolution(rate: int) -> int:
    return max(100, _round50(rate * 0.05))


class Bench:
    def __init__(self, args: argparse.Namespace, mode: Mode, data: DataSet, workdir: Path):
        self.args = args
        self.mode = mode
        self.data = data
        self.workdir = workdir
        self.t0 = time.monotonic()
        self.deadline = self.t0 + mode.budget_s
        self.not_measured: list[str] = []
        self.src_dir = ""
        self.gc_log_dir = ""  # set only for the profile step (GC_LOGGER)

    def left_s(self) -> float:
        return self.deadline - time.monotonic()

    def log(self, msg: str) -> None:
        el = time.monotonic() - self.t0
        print(f"[{datetime.now(UTC):%H:%M:%S} +{el:5.0f}s] {msg}", flush=True)

    # -- proxies -----------------------------------------------------------------------------
    def make(self, kind: str, rr: bool, empty: bool = False) -> Proxy:
        d = self.workdir / "proxies"
        d.mkdir(parents=True, exist_ok=True)
        if kind == "kamailio":
            url = (
                f"text://{self.data.dbtext_dir}"
                if self.args.dbtext
                else f"sqlite://{self.data.sqlite}"
            )
            return KamailioProxy(
                kind,
                rr,
                d,
                data_url=url,
                children=self.args.kam_children,
                empty=empty,
                dbtext=self.args.dbtext,
            )
        return UpcsProxy(
            kind,
            rr,
            d,
            snapshot=self.data.empty_snapshot if empty else self.data.snapshot,
            workers=self.args.upcs_workers,
            upcs_cmd=tuple(self.args.upcs_cmd),
            extra_args=tuple(self.args.upcs_arg),
            src_dir=self.src_dir,
            gc_log_dir=self.gc_log_dir,
        )

    def memory_row(self, p: Proxy, list_name: str, label: str) -> dict[str, Any]:
        m = p.memory()
        row: dict[str, Any] = {"label": label, "list": list_name, "load_s": p.load_s}
        row["processes"] = m["processes"]
        row["pss_mb"] = round(int(str(m["pss_kib"])) * 1024 / MB, 1)
        row["rss_mb"] = round(int(str(m["rss_kib"])) * 1024 / MB, 1)
        if "shm_real_used_bytes" in m:
            row["shm_real_used_mb"] = round(int(str(m["shm_real_used_bytes"])) / MB, 1)
            row["shm_used_mb"] = round(int(str(m["shm_used_bytes"])) / MB, 1)
            row["htable_entries"] = m.get("entries")
        return row

    def baseline(self, kind: str) -> dict[str, Any] | None:
        p = self.make(kind, rr=False, empty=True)
        try:
            p.start(f"{kind}-empty")
            time.sleep(1.0)
            row = self.memory_row(p, "empty", f"{kind} (empty list)")
            self.log(f"{kind} empty list: {row}")
            return row
        except ProxyStartError as e:
            self.not_measured.append(f"{kind} empty-list baseline: {str(e).splitlines()[0]}")
            return None
        finally:
            p.stop()

    # -- steps ---------------------------------------------------------------------------------
    def step(
        self,
        holder: dict[str, Proxy | None],
        kind: str,
        rr: bool,
        spec: StepSpec,
        steps: list[dict[str, Any]],
    ) -> dict[str, Any]:
        """One step on a running proxy (started first if needed); a failed step retires it."""
        for attempt in (1, 2):
            proxy = holder.get("p")
            if proxy is None or not proxy.alive():
                proxy = self.make(kind, rr)
                proxy.start(f"{spec.label}-{attempt}")
                holder["p"] = proxy
                self.log(f"  started {proxy.label} in {proxy.load_s:.2f} s")
            quiet = wait_quiet(self.mode.quiet_wait_s)
            run_spec = (
                spec if attempt == 1 else dataclasses.replace(spec, label=spec.label + "-retry")
            )
            res = run_step(proxy, self.data, run_spec, self.workdir / "steps")
            res["pre_wait"] = quiet
            res["attempt"] = attempt
            steps.append(res)
            self.log(
                f"  {spec.label}: {spec.rate}/s {spec.duration_s:.0f}s pass={res['pass']} "
                f"clean={res['clean']} achieved={res['achieved_cps']} "
                f"failed={res['uac']['failed']} wrong={res['uac']['wrong_verdict']} "  # type: ignore[index]
                f"cpu/call={res.get('proxy_cpu_us_per_call')}µs other={res['other_pct']}% "
                f"{res['aborted']}"
            )
            if not res["pass"]:
                proxy.stop()
                holder["p"] = None
            retry = (
                not res["pass"]
                and res["disturbed"]
                and self.mode.retry_disturbed
                and attempt == 1
                and self.left_s() > spec.duration_s + 60
            )
            if not retry:
                return res
            self.log("  step disturbed by other processes on the box: retrying once")
        return res

    def search(
        self, holder: dict[str, Proxy | None], kind: str, rr: bool, budget_s: float
    ) -> dict[str, Any]:
        m = self.mode
        end = time.monotonic() + budget_s
        steps: list[dict[str, Any]] = []
        label = f"{kind}-rr{'on' if rr else 'off'}"
        n = [0]

        def run(rate: int, dur: float, tag: str) -> bool:
            n[0] += 1
            spec = StepSpec(rate, dur, f"{label}-{n[0]:02d}-{tag}-{rate}")
            return bool(self.step(holder, kind, rr, spec, steps)["pass"])

        def room(dur: float, whole_run: bool = False) -> bool:
            # whole_run: only the run's deadline counts (a confirmation may overrun the
            # configuration's own time box by one step; the run as a whole stays bounded)
            limit = self.deadline if whole_run else min(end, self.deadline)
            return time.monotonic() + dur + m.step_overhead_s < limit

        out: dict[str, Any] = {"steps": steps, "budget_s": round(budget_s)}
        lo_probe, hi = 0, None
        for r in m.probes:
            if not room(m.probe_s):
                if not steps:
                    out["note"] = "time box exhausted before the first step"
                    out["max_confirmed_cps"] = None
                    return out
                break
            if run(r, m.probe_s, "probe"):
                lo_probe = r
            else:
                hi = r
                break
        main_steps = 0
        passes: dict[int, int] = {}
        # no probe passed: start the full-length steps at half the lowest probe and go down
        cand, lo = lo_probe or _round50(m.probes[0] / 2), 0
        while cand >= 50 and room(m.main_s) and main_steps < m.max_main_steps:
            main_steps += 1
            if run(cand, m.main_s, "main"):
                lo = cand
                passes[cand] = 1
                break
            hi = cand
            cand = min(_round50(cand * 0.75), cand - 50)  # strictly down, to 50 at least
        while (
            lo
            and hi is not None
            and hi - lo > _resolution(lo)
            and room(2 * m.main_s + m.step_overhead_s)  # keep room for the confirmation
            and main_steps < m.max_main_steps - 1
        ):
            main_steps += 1
            mid = _round50((lo + hi) / 2)
            if run(mid, m.main_s, "bisect"):
                lo = mid
                passes[mid] = 1
            else:
                hi = mid
        out["single_pass_max_cps"] = lo or None
        out["first_fail_cps"] = hi
        confirmed = None
        cand = lo
        if not m.confirm:
            out["max_confirmed_cps"] = lo or None
            out["note"] = f"{m.name} mode: one {m.main_s:.0f} s pass, no search, not a maximum"
            return out
        for _ in range(3):
            if not cand or not room(m.main_s, whole_run=True):
                break
            while passes.get(cand, 0) < 2 and room(m.main_s, whole_run=True):
                if run(cand, m.main_s, "confirm"):
                    passes[cand] = passes.get(cand, 0) + 1
                else:
                    break
            if passes.get(cand, 0) >= 2:
                confirmed = cand
                break
            cand = cand - _resolution(cand)
        out["max_confirmed_cps"] = confirmed
        if not lo:
            out["note"] = f"no step passed (lowest tried {min(s['target_cps'] for s in steps)}/s)"
        elif confirmed is None:
            out["note"] = f"{lo}/s passed once; no second pass within the time box"
        elif hi is None:
            out["note"] = f"no step failed up to {m.probes[-1]}/s: the maximum is higher"
        elif hi - (confirmed or 0) > _resolution(confirmed or 0) * 2:
            out["note"] = "time box reached before the resolution"
        at_max = [
            s["proxy_cpu_us_per_call"]
            for s in steps
            if s["pass"]
            and s["target_cps"] == confirmed
            and s["duration_s"] == m.main_s
            and "proxy_cpu_us_per_call" in s
        ]
        out["cpu_us_per_call_at_max"] = round(statistics.mean(at_max), 1) if at_max else None
        return out

    # -- one configuration -------------------------------------------------------------------
    def run_config(self, kind: str, rr: bool, budget_s: float) -> dict[str, Any]:
        label = f"{kind}-rr{'on' if rr else 'off'}"
        self.log(f"== {label}: start, memory, latency at {self.args.latency_rate}/s, max rate")
        res: dict[str, Any] = {}
        p = self.make(kind, rr)
        holder: dict[str, Proxy | None] = {"p": None}
        try:
            p.start(f"{label}-first")
        except ProxyStartError as e:
            res["error"] = str(e).splitlines()[0]
            self.not_measured.append(f"{label}: did not start: {res['error']}")
            return res
        try:
            holder["p"] = p
            res["load_s"] = p.load_s
            time.sleep(1.0)
            res["memory_idle"] = self.memory_row(p, f"{self.data.numbers:,}", f"{label} idle")
            self.log(f"  loaded in {p.load_s:.2f} s; idle memory {res['memory_idle']}")
            lat_steps: list[dict[str, Any]] = []
            spec = StepSpec(
                self.args.latency_rate,
                self.mode.latency_s,
                f"{label}-latency",
                capture=True,
                abort_early=False,
            )
            lat = self.step(holder, kind, rr, spec, lat_steps)
            res["latency_step"] = {k: v for k, v in lat.items() if k != "latency"}
            res["latency"] = lat.get("latency")
            if not lat["pass"]:
                self.not_measured.append(
                    f"{label}: the {self.args.latency_rate}/s latency step did not pass "
                    f"({lat['aborted'] or 'see steps'}); its latency figures are shown anyway"
                )
            live = holder.get("p")
            if live is not None and live.alive():
                res["memory_after_latency"] = self.memory_row(
                    live, f"{self.data.numbers:,}", f"{label} after {self.args.latency_rate}/s"
                )
            res["search"] = self.search(holder, kind, rr, budget_s)
            self.log(
                f"  {label}: max {res['search'].get('max_confirmed_cps')}/s "
                f"{res['search'].get('note', '')}"
            )
        except ProxyStartError as e:
            res["search"] = res.get("search") or {"error": str(e).splitlines()[0], "steps": []}
            self.not_measured.append(f"{label}: {str(e).splitlines()[0]}")
        finally:
            live = holder.get("p")
            if live is not None:
                live.stop()
            p.stop()
        return res

    def profile(self, rr: bool, max_cps: int | None) -> dict[str, Any]:
        if shutil.which("py-spy") is None:
            return {"why": "py-spy is not installed (pip install py-spy)"}
        rate = _round50(min(max(0.6 * (max_cps or 500), 200), 3000))
        label = f"upcs-rr{'on' if rr else 'off'}"
        holder: dict[str, Proxy | None] = {"p": None}
        steps: list[dict[str, Any]] = []
        spec = StepSpec(
            rate,
            self.mode.profile_step_s,
            f"{label}-profile-{rate}",
            abort_early=False,
            profile_s=self.mode.profile_s,
        )
        gc_dir = self.workdir / "gcdiag"
        gc_dir.mkdir(parents=True, exist_ok=True)
        (gc_dir / "sitecustomize.py").write_text(GC_LOGGER)
        self.gc_log_dir = str(gc_dir)
        try:
            res = self.step(holder, "upcs", rr, spec, steps)
        except ProxyStartError as e:
            return {"why": f"upcs did not start: {str(e).splitlines()[0]}"}
        finally:
            self.gc_log_dir = ""
            live = holder.get("p")
            if live is not None:
                live.stop()
        gc_stats = _gc_summary(gc_dir)
        raw = res.get("profile_raw")
        if not raw or not Path(str(raw)).exists():
            log = self.workdir / "steps" / spec.label / "pyspy.log"
            why = log.read_text(errors="replace")[-300:] if log.exists() else "no output"
            return {"why": f"py-spy produced no profile: {why.strip()}"}
        log = self.workdir / "steps" / spec.label / "pyspy.log"
        counts = [ln for ln in log.read_text(errors="replace").splitlines() if "Samples:" in ln]
        return {
            "pyspy_counts": counts[-1].split("Samples:", 1)[1].strip() if counts else "",
            "gc": gc_stats,
            "config": label,
            "rate": rate,
            "seconds": self.mode.profile_s,
            "summary": summarise_pyspy(Path(str(raw))),
            "raw": raw,
            "step_summary": f"pass={res['pass']}, proxy CPU "
            f"{res.get('proxy_cpu_us_per_call')} µs/call (with py-spy attached)",
        }


def _gc_summary(gc_dir: Path) -> dict[str, Any]:
    """Generation 1/2 collections logged by GC_LOGGER during the profile step."""
    rows: list[tuple[float, int, float, int, int]] = []
    for log in sorted(gc_dir.glob("gc-*.log")):
        for line in log.read_text().splitlines():
            f = line.split()
            rows.append((float(f[0]), int(f[1]), float(f[2]), int(f[3]), int(f[4])))
    out: dict[str, Any] = {"logs": len(list(gc_dir.glob("gc-*.log")))}
    for generation in (1, 2):
        sel = [r for r in rows if r[1] == generation]
        if sel:
            out[f"gen{generation}"] = {
                "count": len(sel),
                "max_ms": round(max(r[2] for r in sel), 1),
                "total_ms": round(sum(r[2] for r in sel), 1),
                "collected": sum(r[3] for r in sel),
            }
    gen2 = sorted((r for r in rows if r[1] == 2), key=lambda r: r[0])
    if gen2:
        out["tracked_objects_first_last"] = [gen2[0][4], gen2[-1][4]]
        out["span_s"] = round(gen2[-1][0] - gen2[0][0], 1)
    return out


def _machine_notes() -> str:
    def run(cmd: list[str]) -> str:
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
            return (p.stdout + p.stderr).strip()
        except (OSError, subprocess.TimeoutExpired):
            return "?"

    cpu = "?"
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as fh:
        mem_kb = int(fh.readline().split()[1])
    kam = run(["kamailio", "-v"]).splitlines()[0] if shutil.which("kamailio") else "missing"
    kam = kam.replace("version:", "").strip()
    sipp = next((w for w in run(["sipp", "-v"]).split() if w.startswith("v3")), "?")
    load = os.getloadavg()
    return (
        f"{os.cpu_count()} vCPU ({cpu}), {mem_kb / 1024 / 1024:.0f} GiB RAM, Linux "
        f"{platform.release()}, Python {platform.python_version()}, {kam}, SIPp {sipp}, "
        f"load average at start {load[0]:.2f}/{load[1]:.2f}/{load[2]:.2f}."
    )


def _git(*args: str) -> str:
    p = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=False)
    return p.stdout.strip()


def _upcs_source(rev: str, dest: Path) -> str:
    """Which upcs code the run measures; with `rev`, export that revision to `dest`."""
    packages = ["blocklist", "gateway", "upcs", "hub", "sync"]
    if rev:
        sha = _git("rev-parse", "--short", rev)
        if not sha:
            raise SystemExit(f"sip_load: --upcs-rev {rev!r} is not a git revision")
        dest.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", rev, *packages], capture_output=True, check=True
        )
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
        return f"git revision {rev} ({sha}), exported with git archive"
    sha = _git("rev-parse", "--short", "HEAD")
    dirty = _git("status", "--porcelain", "--", *packages)
    state = "with uncommitted changes in the packages" if dirty else "clean"
    return f"work tree at {sha} ({state})"


def _upcs_cmd() -> list[str]:
    script = Path(sys.executable).parent / "upcs"
    if script.exists():
        return [str(script)]
    found = shutil.which("upcs")
    return [found] if found else [sys.executable, "-c", "from upcs.cli import main; main()"]


def _parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="smoke run (< 3 min, 100k list)")
    ap.add_argument(
        "--workdir", default="/tmp/upcs-sipload", help="work files (default %(default)s)"
    )
    ap.add_argument(
        "--out",
        default=None,
        help=f"markdown results (default: {DEFAULT_OUT} for a full run, "
        "WORKDIR/RUN/sip_load.md for --quick)",
    )
    ap.add_argument("--only", choices=("kamailio", "upcs", "both"), default="both")
    ap.add_argument(
        "--rr",
        choices=("off", "on", "both"),
        default="both",
        help="Record-Route setting(s) to measure (default %(default)s)",
    )
    ap.add_argument("--latency-rate", type=int, default=200)
    ap.add_argument("--kam-children", type=int, default=4, help="Kamailio UDP workers (anchor: 4)")
    ap.add_argument(
        "--upcs-workers",
        type=int,
        default=int(os.environ.get("UPCS_WORKERS", "1")),
        help="upcs --workers (default %(default)s)",
    )
    ap.add_argument(
        "--upcs-arg",
        action="append",
        default=[],
        help="extra argument for `upcs gateway run` (repeatable)",
    )
    ap.add_argument("--upcs-cmd", nargs="+", default=_upcs_cmd(), help="how to run upcs")
    ap.add_argument(
        "--upcs-rev",
        default="",
        help="run upcs from this git revision (exported with git archive) instead of the "
        "work tree, e.g. HEAD: other people's uncommitted edits cannot break the run",
    )
    ap.add_argument(
        "--render", default="", help="only re-render the markdown from a results.json of a run"
    )
    ap.add_argument("--dbtext", action="store_true", help="Kamailio loads from db_text, not SQLite")
    ap.add_argument("--budget-min", type=float, default=None, help="override the time box")
    ap.add_argument(
        "--step-s", type=float, default=None, help="override the main step length (testing only)"
    )
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if args.render:
        saved = json.loads(Path(args.render).read_text())
        out = Path(args.out) if args.out else DEFAULT_OUT
        out.write_text(render(saved))
        print(f"sip_load: wrote {out} from {args.render}")
        return 0
    mode = Mode(args.quick)
    if args.budget_min:
        mode.budget_s = args.budget_min * 60.0
    if args.step_s:
        mode.main_s = args.step_s
    started = datetime.now(UTC)
    run_dir = Path(args.workdir) / f"run-{started:%Y%m%dT%H%M%S}-{mode.name}"
    run_dir.mkdir(parents=True, exist_ok=True)
    for tool in ("kamailio", "kamcmd", "sipp", "dumpcap"):
        if shutil.which(tool) is None:
            print(
                f"sip_load: {tool} not found (apt: kamailio kamailio-sqlite-modules "
                "sip-tester tshark)",
                file=sys.stderr,
            )
            return 1
    data = prepare(
        Path(args.workdir) / f"data-{mode.numbers}-{mode.calls}-{SEED}",
        mode.numbers,
        mode.calls,
        SEED,
        args.dbtext,
    )
    bench = Bench(args, mode, data, run_dir)
    upcs_source = _upcs_source(args.upcs_rev, run_dir / "src")
    if args.upcs_rev:
        bench.src_dir = str(run_dir / "src")
    bench.log(f"run dir {run_dir}; data {data.directory} ({data.numbers:,} numbers)")
    kinds = ["kamailio", "upcs"] if args.only == "both" else [args.only]
    rrs = {"off": [False], "on": [True], "both": [False, True]}[args.rr]
    results: dict[str, Any] = {"data": asdict(data), "configs": {}, "memory": []}
    for kind in kinds:
        row = bench.baseline(kind)
        if row:
            results["memory"].append(row)
    if "upcs" in kinds:
        from blocklist import read_snapshot

        times = []
        for _ in range(3):
            t = time.perf_counter()
            read_snapshot(data.snapshot)
            times.append(round(time.perf_counter() - t, 3))
        results["upcs_read_snapshot_s"] = times
    configs = [(k, rr) for rr in rrs for k in kinds]
    profile_reserve = mode.profile_step_s + 25 if "upcs" in kinds else 0
    for i, (kind, rr) in enumerate(configs):
        fixed = mode.latency_s + 15  # start, memory, the latency step and its overhead
        budget = (bench.left_s() - profile_reserve) / (len(configs) - i) - fixed
        try:
            c = bench.run_config(kind, rr, max(budget, mode.min_search_s))
        except Exception as e:  # a harness bug must not lose the other configurations
            (run_dir / f"error-{kind}-{rr}.txt").write_text(traceback.format_exc())
            c = {"error": f"harness error: {e!r}"}
            bench.not_measured.append(f"{kind} RR {'on' if rr else 'off'}: harness error {e!r}")
            bench.log(f"  harness error, see {run_dir}: {e!r}")
        results["configs"][f"{kind}-rr{'on' if rr else 'off'}"] = c
        for key in ("memory_idle", "memory_after_latency"):
            if key in c:
                results["memory"].append(c[key])
        # saved as it goes: a crash later loses nothing measured so far
        (run_dir / "partial.json").write_text(json.dumps(results, indent=1, default=str))
    for rr in rrs:
        k = results["configs"].get(f"kamailio-rr{'on' if rr else 'off'}", {})
        u = results["configs"].get(f"upcs-rr{'on' if rr else 'off'}", {})
        km = (k.get("search") or {}).get("max_confirmed_cps")
        um = (u.get("search") or {}).get("max_confirmed_cps")
        if km and um is not None and u:
            u["ratio_to_kamailio"] = round(um / km, 2)
    if "upcs" in kinds:
        rr = True if True in rrs else rrs[0]
        srch = results["configs"].get(f"upcs-rr{'on' if rr else 'off'}", {}).get("search") or {}
        um = srch.get("max_confirmed_cps") or srch.get("single_pass_max_cps")
        if results["configs"].get(f"upcs-rr{'on' if rr else 'off'}", {}).get("error"):
            results["profile"] = {"why": "upcs did not start"}
        else:
            bench.log("== profile of upcs under load (py-spy)")
            results["profile"] = bench.profile(rr, um)
    wall = (time.monotonic() - bench.t0) / 60.0
    cmd = "python -m bench.sip_load " + " ".join(sys.argv[1:] if argv is None else argv)
    results["meta"] = {
        "command": cmd.strip(),
        "started_utc": f"{started:%Y-%m-%d %H:%M}",
        "mode": mode.name,
        "wall_min": wall,
        "main_s": mode.main_s,
        "upcs_workers": args.upcs_workers,
        "upcs_source": upcs_source,
        "upcs_args": list(args.upcs_arg),
        "kam_children": args.kam_children,
        "machine": _machine_notes(),
        "run_dir": str(run_dir),
        "sharing_note": (
            "Other processes on the box are measured per step (the 'other' CPU column); a "
            "failed step with other > 10 % of a core is marked disturbed and retried once."
        ),
    }
    for label, c in results["configs"].items():
        srch = c.get("search") or {}
        if "error" not in c and srch.get("max_confirmed_cps") is None:
            bench.not_measured.append(
                f"{label}: no maximum confirmed ({srch.get('note') or srch.get('error') or '?'})"
            )
        if "error" not in c and not c.get("latency"):
            bench.not_measured.append(f"{label}: no latency capture")
    if mode.name == "quick":
        bench.not_measured.insert(
            0,
            "quick mode: a smoke test of the harness (100k list, 4 s steps, no max-rate search); "
            "none of its figures is a result",
        )
    for kind in ("kamailio", "upcs"):
        if kind not in kinds:
            bench.not_measured.append(f"{kind}: not run (--only {args.only})")
    for rr_name, rr_on in (("off", False), ("on", True)):
        if rr_on not in rrs:
            bench.not_measured.append(f"Record-Route {rr_name}: not run (--rr {args.rr})")
    results["not_measured"] = bench.not_measured
    (run_dir / "results.json").write_text(json.dumps(results, indent=1, default=str))
    out = (
        Path(args.out)
        if args.out
        else (DEFAULT_OUT if mode.name == "full" else run_dir / "sip_load.md")
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(results))
    bench.log(f"done in {wall:.1f} min; results {out} and {run_dir / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
