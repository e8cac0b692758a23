"""Test data for bench/sip_load.py: one seeded list of barred numbers, in the three forms the
two proxies load, and the sipp call file.

- `blocklist.sqlite`: table `blocklist(key_name, key_value)` that Kamailio's htable loads
  (keys are the E.164 digits without `+`, as the Kamailio script normalises to).
- `db/blocklist`: the same as a db_text table (optional; the anchor's default store).
- `list.snapshot` / `empty.snapshot`: upcs snapshot files (blocklist.ListSnapshot +
  write_snapshot), the list and an empty one for the memory baseline.
- `calls.csv`: sipp `-inf` file, SEQUENTIAL; `dial;barred;` per row. Half the rows dial a barred
  number; dial forms are spread evenly over national `0…`, `+44…` and `0044…`.

The numbers are random UK-like 12-digit E.164 numbers from a fixed seed (never printed, never
real people: common.md allows seeded numbers for 1M-entry benchmarks). Every row's expected
verdict is checked against upcs's own Screener before the file is used, so a disagreement is a
data bug found here and not a "failed call" found under load.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from blocklist import (
    DialPlan,
    ListHolder,
    ListSnapshot,
    Screener,
    read_snapshot,
    write_snapshot,
)

__all__ = ["DataSet", "prepare"]

DATA_FORMAT = 3  # bump when the generated files change, so a cached data dir is rebuilt
SQLITE_BATCH_ROWS = 100_000  # executemany batch: bounds the Python-side row list


@dataclass(frozen=True)
class DataSet:
    directory: str
    numbers: int
    seed: int
    calls: int
    barred_calls: int
    sqlite: str
    dbtext_dir: str
    snapshot: str
    empty_snapshot: str
    calls_csv: str
    snapshot_bytes: int
    generated_s: float
    screener_checked: int


def _random_number(rng: random.Random) -> int:
    """A UK-like E.164 number as an int: ~70 % mobiles (+447[1-5,7-9] + 8 digits), the rest
    geographic (+441x and +442[0,3,8,9], + 8 digits). All 12 digits."""
    r = rng.random()
    tail = rng.randrange(100_000_000)
    if r < 0.70:
        return (4470 + rng.choice((1, 2, 3, 4, 5, 7, 8, 9))) * 100_000_000 + tail
    if r < 0.90:
        return (4410 + rng.randrange(1, 10)) * 100_000_000 + tail
    return (4420 + rng.choice((0, 3, 8, 9))) * 100_000_000 + tail


def _dial(number: int, form: int) -> str:
    digits = str(number)
    if form == 0:
        return "0" + digits[2:]  # national: trunk 0 instead of 44
    if form == 1:
        return "+" + digits
    return "00" + digits


def _write_sqlite(path: Path, numbers: list[int]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    con = sqlite3.connect(tmp)
    try:
        con.execute("PRAGMA journal_mode=OFF")
        con.execute("PRAGMA synchronous=OFF")
        con.execute("CREATE TABLE version (table_name TEXT, table_version INTEGER)")
        con.execute("INSERT INTO version VALUES ('blocklist', 1)")
        con.execute("CREATE TABLE blocklist (key_name VARCHAR(16) PRIMARY KEY, key_value INTEGER)")
        for start in range(0, len(numbers), SQLITE_BATCH_ROWS):
            batch = numbers[start : start + SQLITE_BATCH_ROWS]
            con.executemany("INSERT INTO blocklist VALUES (?, 1)", ((str(n),) for n in batch))
        con.commit()
    finally:
        con.close()
    os.replace(tmp, path)


def _write_dbtext(directory: Path, numbers: list[int]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / "blocklist", "w", encoding="ascii") as fh:
        fh.write("key_name(str) key_value(int)\n")
        fh.writelines(f"{n}:1\n" for n in numbers)
    with open(directory / "version", "w", encoding="ascii") as fh:
        fh.write("table_name(str) table_version(int)\nblocklist:1\n")


def _check_verdicts(dials: list[tuple[str, int]], snap: ListSnapshot) -> None:
    screener = Screener(DialPlan(), ListHolder(snap))
    expected = {1: "blocked", 0: "allowed"}
    wrong = sum(1 for d, b in dials if screener.screen(d) != expected[b])
    if wrong:
        raise SystemExit(
            f"data: upcs's Screener disagrees with {wrong} of {len(dials)} expected verdicts "
            "in the call file; fix the generator (or the Screener) before benchmarking"
        )


def prepare(directory: Path, numbers: int, calls: int, seed: int, dbtext: bool) -> DataSet:
    """Generate (or reuse, when the manifest matches) the data set in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    manifest = directory / "manifest.json"
    want = {"format": DATA_FORMAT, "numbers": numbers, "calls": calls, "seed": seed}
    if manifest.exists():
        old = json.loads(manifest.read_text())
        if {k: old.get(k) for k in want} == want and (not dbtext or old.get("dbtext")):
            fields = {k: v for k, v in old.items() if k in DataSet.__dataclass_fields__}
            ds = DataSet(**fields)
            # the Screener may have changed since the data was made: check again (~1 s)
            with open(ds.calls_csv, encoding="ascii") as fh:
                next(fh)
                cached = [(d, int(b)) for d, b, _ in (ln.rstrip("\n").split(";") for ln in fh)]
            _check_verdicts(cached, read_snapshot(ds.snapshot))
            return ds
        manifest.unlink()

    t0 = time.monotonic()
    rng = random.Random(seed)
    barred: set[int] = set()
    while len(barred) < numbers:
        barred.add(_random_number(rng))
    ordered = sorted(barred)
    rng.shuffle(ordered)  # file order random, like an export

    sqlite_path = directory / "blocklist.sqlite"
    _write_sqlite(sqlite_path, ordered)
    dbtext_dir = directory / "db"
    if dbtext:
        _write_dbtext(dbtext_dir, ordered)

    snap = ListSnapshot.from_numbers(ordered, version=1)
    snap_path = directory / "list.snapshot"
    write_snapshot(snap_path, snap)
    empty_path = directory / "empty.snapshot"
    write_snapshot(empty_path, ListSnapshot.empty())

    rows: list[tuple[int, int]] = []
    n_barred = calls // 2 if numbers else 0
    rows.extend((rng.choice(ordered), 1) for _ in range(n_barred))
    while len(rows) < calls:
        candidate = _random_number(rng)
        if candidate not in barred:
            rows.append((candidate, 0))
    rng.shuffle(rows)
    dials = [(_dial(n, i % 3), b) for i, (n, b) in enumerate(rows)]

    _check_verdicts(dials, snap)
    calls_path = directory / "calls.csv"
    with open(calls_path, "w", encoding="ascii") as fh:
        fh.write("SEQUENTIAL\n")
        fh.writelines(f"{d};{b};\n" for d, b in dials)

    ds = DataSet(
        directory=str(directory),
        numbers=numbers,
        seed=seed,
        calls=calls,
        barred_calls=n_barred,
        sqlite=str(sqlite_path),
        dbtext_dir=str(dbtext_dir),
        snapshot=str(snap_path),
        empty_snapshot=str(empty_path),
        calls_csv=str(calls_path),
        snapshot_bytes=snap_path.stat().st_size,
        generated_s=round(time.monotonic() - t0, 1),
        screener_checked=len(dials),
    )
    manifest.write_text(json.dumps({**want, "dbtext": dbtext, **asdict(ds)}, indent=1))
    return ds
