"""Benchmark hub -> prison sync against a real redis-server (AOF, appendfsync always).

    python -m bench.sync [--followers 50] [--procs 5] [--sizes 1000,10000,1000000] [--out FILE]

(Run it as a module from the repository root: as a script, bench/sync.py would shadow the `sync`
package it measures.)

In one run, on a private redis-server started here (free port, temp dir, stopped by PID):
1. Propagation latency, publish -> applied at every follower (p50/p99/max), with N followers as
   asyncio tasks spread over P worker processes, each follower with its own Redis connection and
   its own list. Measured from just before `Publisher.publish` is called to the follower's
   `ListHolder.swap` of a list containing the change (wall clock, one machine).
2. The naive design in the same run: every gateway re-downloads the full snapshot each second
   (GET), decodes it when its version changed, and swaps it; the hub rewrites the whole snapshot
   on each change. Same followers, same changes: its latency and bytes/s.
3. Apply throughput of one follower working through a backlog (changes/s).
4. Full resync of the largest list: from an empty follower to the hub's list (and the fetch +
   decode + swap step alone).
Numbers for the lists are seeded random UK-like mobiles (never printed).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions
from pyroaring import FrozenBitMap64

from blocklist import ListHolder, ListSnapshot, read_snapshot_bytes, snapshot_to_bytes
from sync import Change, FollowerConfig, Publisher, RedisFollower, SyncConfig
from sync.redisio import fetch_snapshot_and_tail, read_sites
from sync.state import SyncMachine
from sync.wire import Keys

__all__ = ["main"]

ROOT = Path(__file__).resolve().parent.parent
SEED = 20261203
REDIS_START_TIMEOUT_S = 10.0
READY_TIMEOUT_S = 120.0  # 50 followers each loading a 1M list on a shared 2-core box
NAIVE_POLL_S = 1.0  # the naive design: every gateway re-downloads the snapshot each second


def uk_like(count: int, rng: random.Random) -> list[int]:
    """`count` distinct seeded random UK mobiles (+44 7xxx xxxxxx) as E.164 integers."""
    out: set[int] = set()
    while len(out) < count:
        out.update(447000000000 + rng.randrange(0, 1_000_000_000) for _ in range(count - len(out)))
    return sorted(out)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[k]


# -- redis-server ------------------------------------------------------------------------------


class Server:
    def __init__(self, directory: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("bench/sync.py: redis-server is not installed")
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(directory),
             "--appendonly", "yes", "--appendfsync", "always", "--save", "",
             "--logfile", str(directory / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.url = f"redis://127.0.0.1:{self.port}/0"

    async def wait_ready(self) -> None:
        client = aioredis.Redis.from_url(self.url)
        deadline = time.monotonic() + REDIS_START_TIMEOUT_S
        try:
            while True:
                try:
                    await client.ping()
                    return
                except (OSError, redis.exceptions.ConnectionError):
                    pass  # not listening yet, or still loading
                if time.monotonic() > deadline:
                    raise SystemExit("bench/sync.py: redis-server did not start")
                await asyncio.sleep(0.05)
        finally:
            await client.aclose()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


# -- worker processes --------------------------------------------------------------------------


def recorder(rec: list[tuple[int, float]]) -> Callable[[ListSnapshot], None]:
    def on_swap(snap: ListSnapshot) -> None:
        rec.append((snap.version, time.time()))

    return on_swap


async def worker(argv: list[str]) -> dict[str, Any]:
    """Run `count` followers (sync or naive) until SIGTERM; return each one's swap times."""
    url, prefix, mode = argv[:3]
    first, count = int(argv[3]), int(argv[4])
    records: dict[str, list[tuple[int, float]]] = {}
    bytes_read = [0]
    tasks = []
    tmp = Path(tempfile.mkdtemp(prefix="upcs-bench-"))
    config = FollowerConfig(sync=SyncConfig(key_prefix=prefix), persist_interval_s=3600.0)
    for i in range(first, first + count):
        site = f"site-{i:03d}"
        holder = ListHolder(ListSnapshot.empty())
        rec = records[site] = []
        holder.on_swap(recorder(rec))
        if mode == "sync":
            follower = RedisFollower(url, site, holder, tmp / f"{site}.snap", config)
            tasks.append(asyncio.create_task(follower.run()))
        else:
            tasks.append(asyncio.create_task(naive_poller(url, prefix, site, holder, bytes_read)))
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    shutil.rmtree(tmp, ignore_errors=True)
    return {"records": records, "bytes": bytes_read[0]}


async def naive_poller(
    url: str, prefix: str, site: str, holder: ListHolder, bytes_read: list[int]
) -> None:
    client = aioredis.Redis.from_url(url)
    key = f"naive:{prefix}:snapshot"
    await asyncio.sleep(random.uniform(0, NAIVE_POLL_S))  # gateways are not in lockstep
    try:
        while True:
            task = asyncio.current_task()
            if task is not None and task.cancelling():  # redis-py may swallow it (see follower)
                raise asyncio.CancelledError
            started = time.monotonic()
            data = await client.get(key)
            if isinstance(data, bytes):
                bytes_read[0] += len(data)
                snap = read_snapshot_bytes(data, key)  # the naive gateway loads what it got
                if snap.version != holder.current.version:
                    holder.swap(snap)
                await client.hset(f"naive:{prefix}:sites", site, holder.current.version)
            await asyncio.sleep(max(0.0, NAIVE_POLL_S - (time.monotonic() - started)))
    finally:
        await client.aclose()


class Workers:
    """P worker processes holding N followers between them; stopped by PID with SIGTERM."""

    def __init__(self, url: str, prefix: str, mode: str, followers: int, procs: int) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="upcs-bench-out-"))
        self.procs: list[tuple[subprocess.Popen[bytes], Path]] = []
        per = [followers // procs + (1 if i < followers % procs else 0) for i in range(procs)]
        first = 0
        for i, n in enumerate(per):
            out = self.dir / f"w{i}.json"
            cmd = [sys.executable, "-m", "bench.sync", "--worker", url, prefix, mode, str(first),
                   str(n), str(out)]  # fmt: skip
            self.procs.append((subprocess.Popen(cmd, cwd=ROOT), out))
            first += n

    def cpu_s(self) -> float:
        """CPU seconds the workers have used so far (Linux /proc; utime + stime)."""
        total = 0
        for proc, _ in self.procs:
            with contextlib.suppress(OSError):
                fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])
        return total / os.sysconf("SC_CLK_TCK")

    def stop(self) -> tuple[dict[str, list[tuple[int, float]]], int]:
        for proc, _ in self.procs:
            proc.send_signal(signal.SIGTERM)
        records: dict[str, list[tuple[int, float]]] = {}
        total_bytes = 0
        for proc, out in self.procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()  # by PID; its results are lost and the run is void
                proc.wait()
                raise SystemExit(f"bench/sync.py: worker {proc.pid} ignored SIGTERM") from None
            data = json.loads(out.read_text())
            records.update({k: [tuple(x) for x in v] for k, v in data["records"].items()})
            total_bytes += data["bytes"]
        shutil.rmtree(self.dir, ignore_errors=True)
        return records, total_bytes


# -- phases ------------------------------------------------------------------------------------


async def wait_sites(client: aioredis.Redis, prefix: str, mode: str, n: int, version: int) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        if mode == "sync":
            sites = await read_sites(client, Keys(prefix))
            ready = sum(1 for s in sites if s.applied_version >= version)
        else:
            raw = await client.hgetall(f"naive:{prefix}:sites")
            ready = sum(1 for v in raw.values() if int(v) >= version)
        if ready >= n:
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"bench/sync.py: only {ready} of {n} {mode} followers ready")
        await asyncio.sleep(0.1)


def latencies(
    published: dict[int, float], records: dict[str, list[tuple[int, float]]]
) -> list[float]:
    out = []
    for rec in records.values():
        for version, t_pub in published.items():
            applied = [t for v, t in rec if v >= version]
            if applied:
                out.append(min(applied) - t_pub)
            else:
                out.append(float("inf"))  # never applied: counts against the result
    return out


async def phase_latency(
    url: str, size: int, args: argparse.Namespace, *, mode: str, followers: int, procs: int
) -> dict[str, Any]:
    prefix = f"bench-{mode}-{size}-{followers}"
    client = aioredis.Redis.from_url(url)
    rng = random.Random(SEED + size)
    base = ListSnapshot(FrozenBitMap64(uk_like(size, rng)), 0)
    pub = Publisher(client, SyncConfig(key_prefix=prefix))
    naive_key = f"naive:{prefix}:snapshot"
    if mode == "sync":
        v0 = await pub.publish_snapshot(base)
    else:
        v0 = 1
        current = ListSnapshot(base.bitmap, v0, base.checksum, base.lengths)
        await client.set(naive_key, snapshot_to_bytes(current))
    workers = Workers(url, prefix, mode, followers, procs)
    try:
        await wait_sites(client, prefix, mode, followers, v0)
        await asyncio.sleep(1.5)  # let start-up settle (reports, first polls)
        changes = args.changes if mode == "sync" else args.naive_changes
        interval = 1.0 / args.rate_hz
        published: dict[int, float] = {}
        pool = [f"+4477009{n:05d}" for n in range(100_000)]  # distinct from the base mobiles
        started = time.time()
        load0 = os.getloadavg()[0]
        cpu0 = workers.cpu_s()
        for i in range(changes):
            t0 = time.time()
            number = pool[rng.randrange(len(pool))]
            if mode == "sync":
                version = await pub.publish([Change("add", number)])
            else:
                version = v0 + i + 1
                current = current.with_changes([int(number[1:])], [], version)
                await client.set(naive_key, snapshot_to_bytes(current))
            published[version] = t0
            await asyncio.sleep(max(0.0, interval - (time.time() - t0)))
        await wait_sites(client, prefix, mode, followers, max(published))
        duration = time.time() - started
        cpu = workers.cpu_s() - cpu0
        sites = await read_sites(client, Keys(prefix)) if mode == "sync" else []
        await asyncio.sleep(0.2)
    finally:
        records, total_bytes = workers.stop()
        keys = [k async for k in client.scan_iter(match=f"*{prefix}*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()
    lat = latencies(published, records)
    worst = sorted(
        (statistics.median(latencies(published, {s: r})), s) for s, r in records.items()
    )[-1]
    return {
        "load_1min": f"{load0:.1f}->{os.getloadavg()[0]:.1f}",
        "reconnects": sum(s.reconnects for s in sites),
        "resyncs_after_start": sum(s.resyncs for s in sites) - len(sites),
        "worst_follower_median_ms": worst[0] * 1000,
        "mode": mode, "size": size, "followers": len(records), "changes": len(published),
        "p50_ms": percentile(lat, 0.50) * 1000, "p99_ms": percentile(lat, 0.99) * 1000,
        "max_ms": max(lat) * 1000, "bytes_per_s": total_bytes / duration,
        "follower_cpu_ms_per_change": cpu * 1000 / max(1, len(published)),
        "duration_s": duration,
        "snapshot_bytes": len(snapshot_to_bytes(base)),
    }  # fmt: skip


async def phase_throughput(url: str, size: int, backlog: int) -> dict[str, Any]:
    """One follower, starting at the base list, works through `backlog` queued changes."""
    prefix = f"bench-tput-{size}"
    client = aioredis.Redis.from_url(url)
    rng = random.Random(SEED + 1)
    base = ListSnapshot(FrozenBitMap64(uk_like(size, rng)), 0)
    sync = SyncConfig(key_prefix=prefix, compact_every_versions=10 * backlog)
    pub = Publisher(client, sync)
    v0 = await pub.publish_snapshot(base)
    pool = [f"+4477009{n:05d}" for n in range(100_000)]
    for i in range(0, backlog, 10_000):
        await pub.publish(
            [Change("add" if rng.random() < 0.7 else "remove", pool[rng.randrange(len(pool))])
             for _ in range(min(10_000, backlog - i))]
        )  # fmt: skip
    head = v0 + backlog
    tmp = Path(tempfile.mkdtemp(prefix="upcs-bench-"))
    holder = ListHolder(ListSnapshot(base.bitmap, v0, base.checksum, base.lengths))
    swaps: list[int] = []
    reached = reach(holder, head, swaps)
    follower = RedisFollower(url, "tput", holder, tmp / "t.snap", _with_prefix(prefix))
    started = time.perf_counter()
    task = asyncio.create_task(follower.run())
    await reached.wait()
    elapsed = time.perf_counter() - started
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    ok = pub.mirror is not None and holder.current.checksum == pub.mirror.checksum
    keys = [k async for k in client.scan_iter(match=f"*{prefix}*")]
    await client.delete(*keys)
    await client.aclose()
    shutil.rmtree(tmp, ignore_errors=True)
    return {"size": size, "changes": backlog, "seconds": elapsed,
            "changes_per_s": backlog / elapsed, "swaps": len(swaps), "checksum_ok": ok}  # fmt: skip


def reach(holder: ListHolder, version: int, swaps: list[int]) -> asyncio.Event:
    """An event set by the swap that brings `holder` to `version` (swap versions noted)."""
    event = asyncio.Event()

    def on_swap(snap: ListSnapshot) -> None:
        swaps.append(snap.version)
        if snap.version >= version:
            event.set()

    holder.on_swap(on_swap)
    return event


def _with_prefix(prefix: str) -> FollowerConfig:
    return FollowerConfig(sync=SyncConfig(key_prefix=prefix), persist_interval_s=3600.0)


async def phase_resync(url: str, size: int) -> dict[str, Any]:
    prefix = f"bench-resync-{size}"
    client = aioredis.Redis.from_url(url)
    rng = random.Random(SEED + 2)
    base = ListSnapshot(FrozenBitMap64(uk_like(size, rng)), 0)
    pub = Publisher(client, SyncConfig(key_prefix=prefix))
    head = await pub.publish_snapshot(base)
    keys = Keys(prefix)
    steps = []
    for _ in range(5):  # the resync step alone: fetch + verify + decode + rebuild + swap
        holder = ListHolder(ListSnapshot.empty())
        t0 = time.perf_counter()
        snap, _, tail = await fetch_snapshot_and_tail(client, keys)
        holder.swap(SyncMachine(ListSnapshot.empty()).resync(snap, tail).snapshot or snap)
        steps.append(time.perf_counter() - t0)
    tmp = Path(tempfile.mkdtemp(prefix="upcs-bench-"))
    holder = ListHolder(ListSnapshot.empty())
    reached = reach(holder, head, [])
    follower = RedisFollower(url, "resync", holder, tmp / "r.snap", _with_prefix(prefix))
    t0 = time.perf_counter()
    task = asyncio.create_task(follower.run())
    await reached.wait()
    cold = time.perf_counter() - t0
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    ok = holder.current.checksum == base.checksum and len(holder.current) == len(base)
    await client.delete(*[k async for k in client.scan_iter(match=f"*{prefix}*")])
    await client.aclose()
    shutil.rmtree(tmp, ignore_errors=True)
    return {"size": len(base), "bytes": len(snapshot_to_bytes(base)),
            "step_median_s": statistics.median(steps), "step_max_s": max(steps),
            "cold_follower_s": cold, "checksum_ok": ok}  # fmt: skip


# -- report ------------------------------------------------------------------------------------


def report(args: argparse.Namespace, results: dict[str, Any], wall_s: float) -> str:
    cmd = "python -m bench.sync " + " ".join(sys.argv[1:])
    lines = [
        "# Sync benchmark (bench/sync.py)",
        "",
        f"- Command: `{cmd}`",
        f"- Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; wall time {wall_s:.0f} s",
        f"- Machine: {platform.node()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, shared with other engineers' builds and tests",
        "- Redis: private redis-server (AOF, appendfsync always) on loopback, started by the bench",
        f"- Followers: {args.followers} RedisFollower asyncio tasks in {args.procs} worker "
        "processes (own connection and own list each); the publisher runs in the main process",
        f"- Changes published one per call at {args.rate_hz:g}/s; latency = from just before "
        "Publisher.publish to the follower's swap of a list containing the change",
        "",
        "## Propagation latency, publish -> applied at every follower",
        "",
        "| design | list size | followers | changes | p50 ms | p99 ms | max ms | "
        "bytes/s from Redis | followers' CPU ms per change (all followers) | "
        "worst follower's median ms | reconnects / resyncs | load avg (1 min) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["latency"]:
        design = "log + snapshot (sync)" if r["mode"] == "sync" else "naive: full GET each 1 s"
        bps = f"{r['bytes_per_s']:,.0f}" if r["mode"] == "naive" else "(deltas only)"
        events = f"{r['reconnects']} / {r['resyncs_after_start']}" if r["mode"] == "sync" else "n/a"
        lines.append(
            f"| {design} | {r['size']:,} | {r['followers']} | {r['changes']} | "
            f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['max_ms']:.1f} | {bps} | "
            f"{r['follower_cpu_ms_per_change']:.0f} | {r['worst_follower_median_ms']:.1f} | "
            f"{events} | {r['load_1min']} |"
        )
    t = results["throughput"]
    rs = results["resync"]
    lines += ["", "## Targets (issue 4), judged from the rows above", ""]
    for r in results["latency"]:
        if r["mode"] != "sync":
            continue
        verdict = "met" if r["p99_ms"] < 100 else "NOT met"
        lines.append(
            f"- p99 < 100 ms, {r['followers']} follower(s), {r['size']:,}-entry list: "
            f"{r['p99_ms']:.0f} ms, {verdict}"
        )
    lines += [
        f"- >= 50,000 changes/s applied by one follower: {t['changes_per_s']:,.0f}/s, "
        f"{'met' if t['changes_per_s'] >= 50_000 else 'NOT met'}",
        f"- full resync of {rs['size']:,} entries < 1 s: "
        f"{rs['cold_follower_s'] * 1000:.0f} ms from an empty follower, "
        f"{'met' if rs['cold_follower_s'] < 1 else 'NOT met'}",
    ]
    lines += [
        "",
        "## One follower",
        "",
        "| measure | list size | result | target |",
        "|---|---|---|---|",
        f"| apply throughput, backlog of {t['changes']:,} changes ({t['swaps']} swaps) | "
        f"{t['size']:,} | {t['changes_per_s']:,.0f} changes/s ({t['seconds']:.2f} s), checksum "
        f"{'equal' if t['checksum_ok'] else 'DIFFERS'} | >= 50,000 changes/s |",
        f"| full resync: fetch + verify + decode + swap (median of 5) | {rs['size']:,} "
        f"({rs['bytes']:,} B) | {rs['step_median_s'] * 1000:.0f} ms (max "
        f"{rs['step_max_s'] * 1000:.0f} ms) | < 1 s |",
        f"| full resync: empty follower start to hub list (connect included) | {rs['size']:,} | "
        f"{rs['cold_follower_s'] * 1000:.0f} ms, checksum "
        f"{'equal' if rs['checksum_ok'] else 'DIFFERS'} | < 1 s |",
        "",
    ]
    return "\n".join(lines)


async def run(args: argparse.Namespace) -> str:
    wall0 = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="upcs-bench-redis-"))
    server = Server(tmp)
    results: dict[str, Any] = {"latency": []}
    try:
        await server.wait_ready()
        sizes = [int(s) for s in args.sizes.split(",")]
        for size in sizes:
            runs = [("sync", 1, 1), ("sync", args.followers, args.procs)]
            runs.append(("naive", args.followers, args.procs))
            for mode, followers, procs in runs:
                r = await phase_latency(
                    server.url, size, args, mode=mode, followers=followers, procs=procs
                )
                print(json.dumps(r), flush=True)
                results["latency"].append(r)
        results["throughput"] = await phase_throughput(server.url, max(sizes), args.backlog)
        print(json.dumps(results["throughput"]), flush=True)
        results["resync"] = await phase_resync(server.url, max(sizes))
        print(json.dumps(results["resync"]), flush=True)
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return report(args, results, time.monotonic() - wall0)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        result = asyncio.run(worker(sys.argv[2:7]))
        Path(sys.argv[7]).write_text(json.dumps(result))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--followers", type=int, default=50)
    parser.add_argument("--procs", type=int, default=5, help="worker processes for followers")
    parser.add_argument("--sizes", default="1000,10000,1000000", help="list sizes, comma separated")
    parser.add_argument("--changes", type=int, default=60, help="changes in the sync phase")
    parser.add_argument("--naive-changes", type=int, default=20)
    parser.add_argument("--rate-hz", type=float, default=4.0, help="publishes per second")
    parser.add_argument("--backlog", type=int, default=100_000, help="throughput backlog")
    parser.add_argument("--out", default="", help="write the Markdown table here")
    args = parser.parse_args()
    text = asyncio.run(run(args))
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
