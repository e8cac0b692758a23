"""The national list and the dial screening that uses it.

Pure and synchronous: this package knows nothing of SIP, Redis or SQL (DESIGN.md, "Components").
"""

from blocklist.dialplan import DialPlan, DialPlanError
from blocklist.holder import ListHolder
from blocklist.intake import IntakeError, IntakeResult, canonicalise
from blocklist.neverblock import NeverBlock
from blocklist.screen import CheckResult, Screener, Verdict
from blocklist.snapshot import ListSnapshot, SnapshotError, e164_to_int, int_to_e164
from blocklist.snapshotfile import (
    SnapshotFileError,
    read_refs,
    read_snapshot,
    read_snapshot_bytes,
    snapshot_to_bytes,
    write_snapshot,
)

__all__ = [
    "CheckResult",
    "DialPlan",
    "DialPlanError",
    "IntakeError",
    "IntakeResult",
    "ListHolder",
    "ListSnapshot",
    "NeverBlock",
    "Screener",
    "SnapshotError",
    "SnapshotFileError",
    "Verdict",
    "canonicalise",
    "e164_to_int",
    "int_to_e164",
    "read_refs",
    "read_snapshot",
    "read_snapshot_bytes",
    "snapshot_to_bytes",
    "write_snapshot",
]
