"""What the hub keeps in Redis and how a change log entry is spelled there (no I/O).

Keys, all in one Redis Cluster hash slot (the `{...}` hash tag) so a Lua script may touch them all:

    {P:sync}:log        stream; entry ID `<version>-0`, so `XREAD ... <applied>-0` returns exactly
                        the versions after `applied`; fields op, n (E.164), ref, ts, and sum (the
                        list checksum after this entry) on the last entry of each publish
    {P:sync}:meta       hash: head, head_ts, head_checksum, snap_version, snap_checksum,
                        snap_entries
    {P:sync}:snapshot   string: the list at snap_version in the snapshot file format
    {P:sync}:sites      hash: site name -> JSON report (applied version, checksum, time)
    {P:sync}:idem:<key> string: the last version of a publish already done under that key

A `reset` entry at version v says "the whole list was replaced": readers load the snapshot, whose
version is then at least v.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from blocklist import SnapshotError, e164_to_int, int_to_e164
from blocklist.snapshot import E164_MAX_DIGITS, E164_MIN_DIGITS

__all__ = [
    "MAX_IDEMPOTENCY_KEY_CHARS",
    "MAX_REF_CHARS",
    "Change",
    "Keys",
    "LogEntry",
    "SiteReport",
    "WireError",
    "changes_args",
    "decode_entry",
    "decode_flat",
    "decode_site",
    "encode_change",
    "encode_site",
    "entry_id",
]

MAX_REF_CHARS = 200  # an opaque case reference, never a victim's detail; bounds the stream entry
MAX_IDEMPOTENCY_KEY_CHARS = 200  # outbox row ids and UUIDs are far shorter

Op = Literal["add", "remove"]
EntryOp = Literal["add", "remove", "reset"]


class WireError(ValueError):
    """A stream entry, meta record or site report in Redis is not what upcs writes."""


@dataclass(frozen=True, slots=True)
class Change:
    """One change to the national list, as the hub approves it."""

    op: Op
    e164: str
    ref: str = ""

    def __post_init__(self) -> None:
        if self.op not in ("add", "remove"):
            raise ValueError(f"change op must be 'add' or 'remove', not {self.op!r}")
        try:
            e164_to_int(self.e164)
        except SnapshotError as exc:
            raise ValueError(f"change {self.op}: {exc}") from None
        if len(self.ref) > MAX_REF_CHARS:
            raise ValueError(f"change ref longer than {MAX_REF_CHARS} characters")

    @property
    def number(self) -> int:
        return e164_to_int(self.e164)


class LogEntry(NamedTuple):
    """One decoded stream entry: `number` is the E.164 digits as an int (0 for a reset).

    A NamedTuple, not a frozen dataclass: a follower decodes ~100k of these a second, and a
    tuple is built several times faster (frozen dataclasses set each field via object.__setattr__).
    """

    version: int
    op: EntryOp
    number: int
    ref: str = ""
    ts: float = 0.0
    checksum: str | None = None


@dataclass(frozen=True)
class Keys:
    """Redis key names for one key prefix."""

    prefix: str

    @property
    def tag(self) -> str:
        return f"{{{self.prefix}:sync}}"

    @property
    def log(self) -> str:
        return f"{self.tag}:log"

    @property
    def meta(self) -> str:
        return f"{self.tag}:meta"

    @property
    def snapshot(self) -> str:
        return f"{self.tag}:snapshot"

    @property
    def sites(self) -> str:
        return f"{self.tag}:sites"

    def idempotency(self, key: str) -> str:
        if not key or len(key) > MAX_IDEMPOTENCY_KEY_CHARS:
            raise ValueError(f"idempotency key must be 1 to {MAX_IDEMPOTENCY_KEY_CHARS} chars")
        return f"{self.tag}:idem:{key}"


def entry_id(version: int) -> str:
    return f"{version}-0"


_OPS: dict[bytes, EntryOp] = {b"add": "add", b"remove": "remove", b"reset": "reset"}


def decode_entry(entry_id_raw: bytes | str, fields: Mapping[bytes, bytes]) -> LogEntry:
    """Decode one XREAD/XRANGE entry; WireError names the entry ID and the fault."""
    raw_id = (
        entry_id_raw.decode("ascii", "replace") if isinstance(entry_id_raw, bytes) else entry_id_raw
    )
    ms, _, seq = raw_id.partition("-")
    if seq != "0" or not ms.isdigit():
        raise WireError(f"log entry {raw_id}: ID is not '<version>-0'")
    version = int(ms)
    op = _OPS.get(fields.get(b"op", b""))
    if op is None:
        raise WireError(f"log entry {raw_id}: unknown op")
    number = 0
    if op != "reset":
        try:
            number = e164_to_int(fields.get(b"n", b"").decode("ascii"))
        except (SnapshotError, UnicodeDecodeError):
            raise WireError(f"log entry {raw_id}: number is not canonical E.164") from None
    try:
        ts = float(fields.get(b"ts", b"0"))
        ref = fields.get(b"ref", b"").decode()
        raw_sum = fields.get(b"sum")
        checksum = raw_sum.decode("ascii") if raw_sum else None
    except (ValueError, UnicodeDecodeError):
        raise WireError(f"log entry {raw_id}: bad ts, ref or sum field") from None
    if not math.isfinite(ts):
        raise WireError(f"log entry {raw_id}: ts is not finite")
    return LogEntry(version, op, number, ref, ts, checksum)


_E164_MIN = E164_MIN_DIGITS + 1  # with the '+'
_E164_MAX = E164_MAX_DIGITS + 1
_FLAT_KEYS = (b"op", b"n", b"ref", b"ts")


def decode_flat(entry_id_raw: bytes, flat: list[Any]) -> LogEntry:
    """Decode an entry given as the raw flat field list [k1, v1, k2, v2, ...].

    Fast path for the field order the publish script writes (op, n, ref, ts[, sum]); anything
    else goes through `decode_entry`, which accepts any order. Same checks either way.
    """
    if (
        len(flat) in (8, 10)
        and (flat[0], flat[2], flat[4], flat[6]) == _FLAT_KEYS
        and (len(flat) == 8 or flat[8] == b"sum")
        and entry_id_raw.endswith(b"-0")
    ):
        op = _OPS.get(flat[1])
        n: bytes = flat[3]
        ms = entry_id_raw[:-2]
        if (
            op is not None
            and op != "reset"
            and ms.isdigit()
            and _E164_MIN <= len(n) <= _E164_MAX
            and n[0] == 43  # '+'
            and n[1] != 48  # '0': no country code starts with zero
            and n[1:].isdigit()
        ):
            try:
                ts = float(flat[7])
                ref = flat[5].decode() if flat[5] else ""
                checksum = flat[9].decode("ascii") if len(flat) == 10 else None
            except (ValueError, UnicodeDecodeError):
                raise WireError(f"log entry {entry_id_raw!r}: bad ts, ref or sum field") from None
            if math.isfinite(ts):
                return LogEntry(int(ms), op, int(n[1:]), ref, ts, checksum)
    if len(flat) % 2:
        raise WireError(f"log entry {entry_id_raw!r}: odd number of field names and values")
    return decode_entry(entry_id_raw, dict(zip(flat[::2], flat[1::2], strict=True)))


def encode_change(change: Change) -> tuple[str, str, str]:
    return (change.op, int_to_e164(change.number), change.ref)


@dataclass(frozen=True, slots=True)
class SiteReport:
    """What each follower writes about itself into {P:sync}:sites."""

    site: str
    applied_version: int
    checksum: str
    entries: int
    reported_unix: float
    hub_version: int | None = None
    lag_seconds: float | None = None
    resyncs: int = 0
    reconnects: int = 0
    # The version `checksum` belongs to: the newest list the site has hashed, which trails
    # applied_version while changes stream in (a follower hashes its list at most every
    # verify_interval_s). None in records that predate the field: applied_version.
    checksum_version: int | None = None


def encode_site(report: SiteReport) -> str:
    return json.dumps(
        {
            "applied_version": report.applied_version,
            "checksum": report.checksum,
            "entries": report.entries,
            "reported_unix": report.reported_unix,
            "hub_version": report.hub_version,
            "lag_seconds": report.lag_seconds,
            "resyncs": report.resyncs,
            "reconnects": report.reconnects,
            "checksum_version": report.checksum_version,
        },
        separators=(",", ":"),
    )


def decode_site(site: str, raw: bytes | str) -> SiteReport:
    try:
        data = json.loads(raw)
        return SiteReport(
            site=site,
            applied_version=int(data["applied_version"]),
            checksum=str(data["checksum"]),
            entries=int(data["entries"]),
            reported_unix=float(data["reported_unix"]),
            hub_version=None if data.get("hub_version") is None else int(data["hub_version"]),
            lag_seconds=None if data.get("lag_seconds") is None else float(data["lag_seconds"]),
            resyncs=int(data.get("resyncs", 0)),
            reconnects=int(data.get("reconnects", 0)),
            checksum_version=(
                None if data.get("checksum_version") is None else int(data["checksum_version"])
            ),
        )
    except (ValueError, KeyError, TypeError):
        raise WireError(f"site report for {site!r} is not a upcs site record") from None


def changes_args(changes: Sequence[Change]) -> list[str]:
    """Flatten changes into Lua ARGV triples (op, e164, ref)."""
    out: list[str] = []
    for change in changes:
        out.extend(encode_change(change))
    return out
