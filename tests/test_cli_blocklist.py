"""`upcs blocklist build|check|stats` round trips (DESIGN.md "Contracts"), through typer's
CliRunner and through the installed `upcs` console script. Ofcom drama numbers only."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from blocklist import read_snapshot
from blocklist.snapshotfile import read_refs
from upcs.cli_blocklist import app

runner = CliRunner()

GOOD_CSV = (
    "number,ref,note\n"
    "07700 900123,case-1,first\n"
    '"+44 (0)20 7946 0123",case-2,"second, with a comma"\n'
    "\n"
    "01632 960001,,\n"
    "0113 496 0001,case-4,\n"
    "07700900123,case-1,duplicate with the same ref\n"
)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def built(tmp_path: Path) -> Path:
    csv_path = write(tmp_path / "bars.csv", GOOD_CSV)
    out = tmp_path / "list.snap"
    result = runner.invoke(app, ["build", "--out", str(out), str(csv_path)])
    assert result.exit_code == 0, result.output
    return out


def test_build_round_trip_keeps_entries_and_refs(tmp_path: Path, built: Path) -> None:
    snap = read_snapshot(built)
    assert sorted(f"+{n}" for n in snap) == [
        "+441134960001",
        "+441632960001",
        "+442079460123",
        "+447700900123",
    ]
    assert snap.version == 1
    assert read_refs(built) == {
        "+447700900123": "case-1",
        "+442079460123": "case-2",
        "+441134960001": "case-4",
    }
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_build_warns_about_unallocated_numbers_by_line_not_by_number(tmp_path: Path) -> None:
    csv_path = write(tmp_path / "bars.csv", GOOD_CSV)
    result = runner.invoke(app, ["build", "--out", str(tmp_path / "o.snap"), str(csv_path)])
    assert result.exit_code == 0
    # 07700 900xxx and 01632 960xxx are drama ranges: possible, not allocated.
    assert f"{csv_path}:2: warning: not known to phonenumbers" in result.stderr
    assert f"{csv_path}:5: warning: not known to phonenumbers" in result.stderr
    for digits in ("7700900123", "7700 900123", "1632960001", "01632 960001"):
        assert digits not in result.stderr
    assert "4 entries, list version 1" in result.stdout


def test_build_list_version_and_several_files(tmp_path: Path) -> None:
    a = write(tmp_path / "a.csv", "number\n07700900001\n")
    b = write(tmp_path / "b.csv", "Number , ref\n07700900002, x\n")  # header case and spaces
    out = tmp_path / "o.snap"
    result = runner.invoke(
        app, ["build", "--out", str(out), "--list-version", "42", str(a), str(b)]
    )
    assert result.exit_code == 0, result.output
    snap = read_snapshot(out)
    assert (len(snap), snap.version) == (2, 42)
    assert read_refs(out) == {"+447700900002": "x"}


BAD_ROWS = [
    ("999", "an emergency or helpline number"),
    ("0800 1111", "an emergency or helpline number"),
    ("116 123", "helpline"),
    ("112", "emergency"),
    ("07700 900 l23", "characters other than digits"),
    ("not a number", "characters other than digits"),
    ("07700 900123 456789", "not a possible number"),
    ("0770", "not a possible number"),
    ("+999 1234567", "not a"),
    ("07700900123 ext. 4", "characters other than digits"),
]


@pytest.mark.parametrize(("number", "reason"), BAD_ROWS)
def test_one_bad_row_fails_the_whole_build(tmp_path: Path, number: str, reason: str) -> None:
    csv_path = write(tmp_path / "bars.csv", f"number\n07700900001\n{number}\n07700900002\n")
    out = tmp_path / "o.snap"
    result = runner.invoke(app, ["build", "--out", str(out), str(csv_path)])
    assert result.exit_code == 1
    assert f"{csv_path}:3: " in result.stderr
    assert reason in result.stderr
    assert "no snapshot written" in result.stderr
    if number.strip():
        assert number not in result.stderr  # the bad number is never echoed
    assert not out.exists()
    assert list(tmp_path.iterdir()) == [csv_path]


def test_a_row_with_a_ref_but_no_number_is_refused(tmp_path: Path) -> None:
    csv_path = write(tmp_path / "bars.csv", "number,ref\n07700900001,a\n ,case-9\n")
    result = runner.invoke(app, ["build", "--out", str(tmp_path / "o.snap"), str(csv_path)])
    assert result.exit_code == 1
    assert f"{csv_path}:3: empty number" in result.stderr


def test_a_failed_build_leaves_the_previous_snapshot_untouched(tmp_path: Path, built: Path) -> None:
    before = built.read_bytes()
    bad = write(tmp_path / "bad.csv", "number\n999\n")
    result = runner.invoke(app, ["build", "--out", str(built), str(bad)])
    assert result.exit_code == 1
    assert built.read_bytes() == before


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", ":1: empty file"),
        ("phone\n07700900001\n", ":1: no 'number' column"),
        ("number,ref\n07700900001,a,b\n", ":2: 3 fields, the header has 2"),
    ],
)
def test_malformed_csv_is_refused(tmp_path: Path, content: str, message: str) -> None:
    csv_path = write(tmp_path / "bars.csv", content)
    result = runner.invoke(app, ["build", "--out", str(tmp_path / "o.snap"), str(csv_path)])
    assert result.exit_code == 1
    assert f"{csv_path}{message}" in result.stderr


def test_missing_or_unreadable_csv_is_a_runtime_error(tmp_path: Path) -> None:
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes(b"number,ref\n07700900001,caf\xe9\n")
    for path, message in [
        (tmp_path / "nope.csv", "no such file"),
        (tmp_path, "is a directory"),
        (latin1, "not UTF-8"),
    ]:
        result = runner.invoke(app, ["build", "--out", str(tmp_path / "o.snap"), str(path)])
        assert result.exit_code == 1, path
        assert f"{path}: {message}" in result.stderr


def test_unwritable_output_is_a_runtime_error(tmp_path: Path) -> None:
    csv_path = write(tmp_path / "bars.csv", "number\n07700900001\n")
    out = tmp_path / "missing-dir" / "o.snap"
    result = runner.invoke(app, ["build", "--out", str(out), str(csv_path)])
    assert result.exit_code == 1
    assert f"{out}: cannot write" in result.stderr


def test_check_human_and_json(built: Path) -> None:
    dials = ["07700900123", "9 141 07700 900 123", "07700900124", "０７７００９００１２３", "999"]
    result = runner.invoke(app, ["check", "--snapshot", str(built), *dials])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert [line.split("\t")[0] for line in lines] == [
        "blocked",
        "blocked",
        "allowed",
        "invalid",
        "allowed",
    ]
    assert "+447700900123" in lines[0]
    result = runner.invoke(app, ["check", "--snapshot", str(built), "--json", *dials])
    assert result.exit_code == 0
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert rows[0] == {"dialled": dials[0], "verdict": "blocked", "matched": "+447700900123"}
    assert rows[2] == {"dialled": dials[2], "verdict": "allowed", "matched": None}
    assert rows[3] == {"dialled": dials[3], "verdict": "invalid", "matched": None}
    assert [r["dialled"] for r in rows] == dials


def test_check_reads_stdin_in_order(built: Path) -> None:
    stdin = "79460123\r\n+44 20 7946 0124\n\nabc\n"
    result = runner.invoke(
        app, ["check", "--snapshot", str(built), "--json", "07700900123", "-"], input=stdin
    )
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["dialled"], r["verdict"]) for r in rows] == [
        ("07700900123", "blocked"),
        ("79460123", "blocked"),  # local dialling in London, the default site
        ("+44 20 7946 0124", "allowed"),
        ("", "invalid"),
        ("abc", "invalid"),
    ]


def test_check_uses_the_config_dial_plan(tmp_path: Path, built: Path) -> None:
    config = write(
        tmp_path / "upcs.toml",
        '[dialplan]\ncountry = "GB"\narea_code = "113"\noutside_line = "8"\n',
    )
    result = runner.invoke(
        app, ["check", "--snapshot", str(built), "--config", str(config), "8 4960001", "79460123"]
    )
    assert result.exit_code == 0, result.output
    verdicts = [line.split("\t")[0] for line in result.stdout.splitlines()]
    assert verdicts == ["blocked", "allowed"]  # Leeds now; 7946 0123 is no longer local


def test_stats(built: Path) -> None:
    result = runner.invoke(app, ["stats", "--snapshot", str(built), "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    snap = read_snapshot(built)
    assert info["entries"] == 4
    assert info["list_version"] == 1
    assert info["checksum"] == snap.checksum
    assert info["bytes"] == built.stat().st_size
    human = runner.invoke(app, ["stats", "--snapshot", str(built)])
    assert human.exit_code == 0
    assert "entries: 4" in human.stdout
    assert f"checksum: {snap.checksum}" in human.stdout


def test_damaged_or_missing_snapshot_is_a_runtime_error(tmp_path: Path, built: Path) -> None:
    damaged = tmp_path / "damaged.snap"
    damaged.write_bytes(built.read_bytes()[:-3])
    for path, message in [
        (tmp_path / "nope.snap", "no such file"),
        (damaged, "truncated"),
        (tmp_path, "is a directory"),
    ]:
        for argv in (["check", "--snapshot", str(path), "123"], ["stats", "--snapshot", str(path)]):
            result = runner.invoke(app, argv)
            assert result.exit_code == 1, argv
            assert f"{path}: {message}" in result.stderr
            assert "Traceback" not in result.output


def test_usage_errors_exit_2(tmp_path: Path, built: Path) -> None:
    bad_config = write(tmp_path / "bad.toml", '[dialplan]\ncountry = "XX"\n')
    for argv in (
        ["check", "123"],  # no --snapshot
        ["check", "--snapshot", str(built)],  # no dial strings
        ["build", "--out", str(tmp_path / "o.snap")],  # no CSV
        ["build", "--out", str(tmp_path / "o.snap"), "--list-version", "-1", "x.csv"],
        ["check", "--snapshot", str(built), "--config", str(tmp_path / "nope.toml"), "1"],
        ["check", "--snapshot", str(built), "--config", str(bad_config), "1"],
        ["frobnicate"],
    ):
        result = runner.invoke(app, argv)
        assert result.exit_code == 2, (argv, result.output)


def _upcs() -> list[str]:
    exe = shutil.which("upcs") or str(Path(sys.executable).parent / "upcs")
    if not os.path.exists(exe):
        pytest.fail("the `upcs` console script is not installed (pip install -e .)")
    return [exe]


def test_installed_console_script_round_trip(tmp_path: Path) -> None:
    csv_path = write(tmp_path / "bars.csv", GOOD_CSV)
    out = tmp_path / "list.snap"
    env = {**os.environ, "NO_COLOR": "1"}
    built = subprocess.run(
        [*_upcs(), "blocklist", "build", "--out", str(out), str(csv_path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=60,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    checked = subprocess.run(
        [*_upcs(), "blocklist", "check", "--snapshot", str(out), "--json", "-"],
        input="9 07700 900123\n07700 900124\n",
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=60,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr
    rows = [json.loads(line) for line in checked.stdout.splitlines()]
    assert [(r["verdict"], r["matched"]) for r in rows] == [
        ("blocked", "+447700900123"),
        ("allowed", None),
    ]
    stats = subprocess.run(
        [*_upcs(), "blocklist", "stats", "--snapshot", str(tmp_path / "nope.snap")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=60,
        check=False,
    )
    assert stats.returncode == 1
    assert "nope.snap: no such file" in stats.stderr
