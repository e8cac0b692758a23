"""`upcs blocklist build|check|stats` (DESIGN.md, "Contracts").

Exit codes: 0 success, 1 runtime error (a bad CSV row, an unreadable or damaged snapshot, a file
that cannot be written), 2 usage error (bad options, a bad configuration file). Barred numbers
never appear in error messages or warnings: a bad row is named by `file:line` (safety invariant
4). `check` prints matched numbers on stdout only, to the operator who asked.
"""

from __future__ import annotations

import csv
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, TextIO

import typer

from blocklist import (
    DialPlan,
    IntakeError,
    ListHolder,
    ListSnapshot,
    Screener,
    SnapshotError,
    SnapshotFileError,
    canonicalise,
    e164_to_int,
    read_snapshot,
    write_snapshot,
)
from blocklist.snapshotfile import read_refs
from upcs.config import ConfigError, load_config

__all__ = ["MAX_ERRORS_SHOWN", "app"]

app = typer.Typer(
    help="Build, check and inspect the national list's snapshot files.",
    no_args_is_help=True,
)

# A build with thousands of bad rows (a wrong column, a foreign export) would flood the terminal;
# the first ones say what is wrong, the count says how much.
MAX_ERRORS_SHOWN = 50
NUMBER_COLUMN = "number"
REF_COLUMN = "ref"

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", envvar="UPCS_CONFIG", help="TOML config (default ./upcs.toml)."),
]
SnapshotOpt = Annotated[
    Path, typer.Option("--snapshot", help="Snapshot file to read.", show_default=False)
]
JsonOpt = Annotated[bool, typer.Option("--json", help="JSON Lines: one object per line.")]


class _Fail(Exception):
    """A runtime (1) or usage (2) error with the message the operator sees."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def _guard(command: str, exc: _Fail) -> typer.Exit:
    typer.echo(f"upcs blocklist {command}: {exc}", err=True)
    return typer.Exit(exc.code)


def _plan(config: Path | None) -> DialPlan:
    try:
        return load_config(config).dialplan
    except ConfigError as exc:
        raise _Fail(str(exc), 2) from None


def _load(path: Path) -> ListSnapshot:
    try:
        return read_snapshot(path)
    except SnapshotFileError as exc:
        raise _Fail(str(exc)) from None


# -- build ----------------------------------------------------------------------------------


@dataclass
class _Build:
    plan: DialPlan
    entries: dict[str, str] = field(default_factory=dict)  # E.164 -> where first seen
    refs: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    error_count: int = 0
    warnings: list[str] = field(default_factory=list)

    def error(self, message: str) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_ERRORS_SHOWN:
            self.errors.append(message)

    def read_csv(self, path: Path) -> None:
        try:
            with path.open(encoding="utf-8-sig", newline="") as fh:
                self._read_rows(path, fh)
        except FileNotFoundError:
            self.error(f"{path}: no such file")
        except IsADirectoryError:
            self.error(f"{path}: is a directory, not a CSV file")
        except UnicodeDecodeError:
            self.error(f"{path}: not UTF-8 text")
        except csv.Error as exc:
            self.error(f"{path}: not a readable CSV file ({exc})")
        except OSError as exc:
            self.error(f"{path}: cannot read: {exc.strerror or exc}")

    def _read_rows(self, path: Path, fh: TextIO) -> None:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            self.error(f"{path}:1: empty file, want a header row with a '{NUMBER_COLUMN}' column")
            return
        names = [h.strip().lower() for h in header]
        if NUMBER_COLUMN not in names:
            self.error(f"{path}:1: no '{NUMBER_COLUMN}' column in the header row")
            return
        number_at = names.index(NUMBER_COLUMN)
        ref_at = names.index(REF_COLUMN) if REF_COLUMN in names else None
        for row in reader:
            where = f"{path}:{reader.line_num}"
            if not any(cell.strip() for cell in row):
                continue  # a blank line holds no entry
            if len(row) != len(header):
                self.error(f"{where}: {len(row)} fields, the header has {len(header)}")
                continue
            try:
                result = canonicalise(row[number_at], self.plan)
            except IntakeError as exc:
                self.error(f"{where}: {exc.reason}")
                continue
            for warning in result.warnings:
                self.warnings.append(f"{where}: warning: {warning}")
            ref = row[ref_at].strip() if ref_at is not None else ""
            first = self.entries.get(result.e164)
            if first is not None:
                if ref and self.refs.get(result.e164, ref) != ref:
                    self.warnings.append(
                        f"{where}: warning: same number as {first} with another reference;"
                        " keeping the first"
                    )
                elif ref:
                    self.refs.setdefault(result.e164, ref)
                continue
            self.entries[result.e164] = where
            if ref:
                self.refs[result.e164] = ref


@app.command()
def build(
    out: Annotated[Path, typer.Option("--out", help="Snapshot file to write.", show_default=False)],
    csv_files: Annotated[
        list[Path],
        typer.Argument(
            metavar="CSV",
            help="CSV files with a header row, a 'number' column and an optional 'ref' column.",
            show_default=False,
        ),
    ],
    config: ConfigOpt = None,
    list_version: Annotated[
        int, typer.Option("--list-version", min=0, help="List version of the snapshot.")
    ] = 1,
) -> None:
    """Build a snapshot from CSV files. Any bad row fails the whole build and writes nothing."""
    try:
        job = _Build(_plan(config))
        for path in csv_files:
            job.read_csv(path)
        for warning in job.warnings:
            typer.echo(warning, err=True)
        if job.error_count:
            for message in job.errors:
                typer.echo(message, err=True)
            hidden = job.error_count - len(job.errors)
            more = f" ({hidden} more not shown)" if hidden > 0 else ""
            raise _Fail(f"{job.error_count} error(s) in the input{more}; no snapshot written")
        try:
            snapshot = ListSnapshot.from_numbers(
                (e164_to_int(n) for n in job.entries), list_version
            )
            write_snapshot(out, snapshot, job.refs)
        except (SnapshotError, SnapshotFileError) as exc:
            raise _Fail(str(exc)) from None
    except _Fail as exc:
        raise _guard("build", exc) from None
    typer.echo(
        f"{out}: {len(snapshot)} entries, list version {snapshot.version},"
        f" checksum {snapshot.checksum}"
    )


# -- check ----------------------------------------------------------------------------------


def _inputs(dialled: list[str]) -> Iterator[str]:
    for arg in dialled:
        if arg == "-":
            for line in sys.stdin:
                yield line.rstrip("\r\n")
        else:
            yield arg


@app.command()
def check(
    snapshot: SnapshotOpt,
    dialled: Annotated[
        list[str],
        typer.Argument(
            metavar="DIALLED",
            help="Dial strings as the PBX sends them; '-' reads one per line from stdin.",
            show_default=False,
        ),
    ],
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Screen dial strings against a snapshot: blocked, allowed or invalid (refused)."""
    try:
        plan = _plan(config)
        screener = Screener(plan, ListHolder(_load(snapshot)))
    except _Fail as exc:
        raise _guard("check", exc) from None
    out = sys.stdout
    for text in _inputs(dialled):
        result = screener.check(text)
        matched = result.matched_e164
        if as_json:
            line = json.dumps(
                {"dialled": text, "verdict": result.verdict.value, "matched": matched},
                ensure_ascii=False,
            )
        else:
            line = f"{result.verdict.value}\t{text}" + (f"\tmatched {matched}" if matched else "")
        out.write(line + "\n")
        out.flush()  # one answer per input as it comes, for pipes


# -- stats ----------------------------------------------------------------------------------


@app.command()
def stats(snapshot: SnapshotOpt, as_json: JsonOpt = False) -> None:
    """Entries, list version, checksum and size of a snapshot file."""
    try:
        snap = _load(snapshot)
        try:
            refs = len(read_refs(snapshot))
            size = os.path.getsize(snapshot)
        except SnapshotFileError as exc:
            raise _Fail(str(exc)) from None
        except OSError as exc:
            raise _Fail(f"{snapshot}: cannot read: {exc.strerror or exc}") from None
    except _Fail as exc:
        raise _guard("stats", exc) from None
    info = {
        "snapshot": str(snapshot),
        "entries": len(snap),
        "list_version": snap.version,
        "checksum": snap.checksum,
        "bytes": size,
        "references": refs,
        "resident_bytes": snap.resident_bytes(),
    }
    if as_json:
        typer.echo(json.dumps(info))
    else:
        for key, value in info.items():
            typer.echo(f"{key}: {value}")
