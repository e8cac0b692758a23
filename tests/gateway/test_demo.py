"""`upcs demo --calls-only`: the README's main job runs end to end and every verdict is right."""

from __future__ import annotations

import subprocess
import sys

from upcs.cli_demo import DEMO_BARRED, SAMPLE_CALLS


def test_demo_calls_only() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", "from upcs.cli import main; main()", "demo", "--calls-only"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert f"{len(SAMPLE_CALLS)} of {len(SAMPLE_CALLS)} verdicts as expected" in out
    assert "expected" not in out.replace("verdicts as expected", "")
    allowed = sum(1 for s in SAMPLE_CALLS if s.expect == "allowed")
    assert f"the trunk answered {allowed} calls" in out  # nothing refused reached the trunk
    lines = [line for line in out.splitlines() if line.startswith("  ") and "shows" not in line]
    assert len(lines) == len(SAMPLE_CALLS)
    for line, sample in zip(lines, SAMPLE_CALLS, strict=True):
        assert f" {sample.expect} " in line
        assert ("200 OK" in line) == (sample.expect == "allowed")
        assert ("403 Forbidden" in line) == (sample.expect != "allowed")
    assert any(s.user == "999" and s.expect == "allowed" for s in SAMPLE_CALLS)
    assert len(DEMO_BARRED) >= 3
