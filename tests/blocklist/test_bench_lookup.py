"""The lookup benchmark runs end to end at a small size and reports every measurement the issue
asks for (the real run is `python -m bench.lookup`; results in bench/results/lookup.md)."""

from __future__ import annotations

from pathlib import Path

from bench import lookup


def test_benchmark_smoke_run_reports_every_measurement(tmp_path: Path) -> None:
    out = tmp_path / "lookup.md"
    assert lookup.main(["--entries", "3000", "--dials", "400", "--out", str(out)]) == 0
    text = out.read_text(encoding="utf-8")
    for needle in (
        "Command: `python -m bench.lookup --entries 3000 --dials 400",
        "check p50 (ns)",
        "check p99 (ns)",
        "phonenumbers parse+format",
        "same normaliser + Python set",
        "bytes/number resident, the set's own allocations",
        "the earlier resident layout",
        "bytes/number resident, process RSS delta",
        "bytes/number serialised",
        "snapshot load",
        "build from 3,000 ints",
        "Timer overhead",
        "on all 400 dials",
        "Load average",
    ):
        assert needle in text, needle
