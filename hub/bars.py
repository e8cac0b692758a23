"""Reference-counted bars and the transactional outbox.

One number may be barred by several cases. Each (number, case) pair is a row in `bars`; the number
is barred while any of its rows is active. Approving a case activates its rows and queues an 'add'
for every number it bars (an 'add' for a number another case already bars is harmless: the list is
a set and the publish is idempotent, and re-asserting it can only protect). Releasing a case
(lift, expire) deactivates its rows and queues a 'remove' ONLY for numbers left with no active row:
a 'remove' while another case still bars the number would undo an approved bar (safety
invariant 5).

Every function here runs inside the caller's transaction, after `hub.db.lock_bars`, so the counts
it reads cannot change before it commits, and the outbox row commits with the case change or not
at all.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import and_, func, select
from sqlalchemy.engine import Connection

from hub.schema import bars, outbox

__all__ = [
    "Change",
    "OutboxRow",
    "active_cases_barring",
    "apply_bars",
    "bar_counts",
    "barred_numbers",
    "case_ref",
    "decode_changes",
    "release_bars",
    "write_outbox",
]

Change = tuple[str, str, str]  # (op "add" | "remove", E.164, ref): the relay's wire to sync


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    case_id: int
    action: str
    changes: tuple[Change, ...]


def case_ref(case_id: int) -> str:
    """The opaque reference published with a change: which case, never who it protects."""
    return f"case:{case_id}"


def apply_bars(
    conn: Connection, case_id: int, numbers: Iterable[str], now: dt.datetime
) -> list[Change]:
    """Activate the case's bars; the 'add' changes to publish (one per distinct number)."""
    wanted = sorted(set(numbers))
    existing = set(conn.execute(select(bars.c.number).where(bars.c.case_id == case_id)).scalars())
    new_rows = [
        {"number": n, "case_id": case_id, "active": True, "barred_at": now, "released_at": None}
        for n in wanted
        if n not in existing
    ]
    if new_rows:
        conn.execute(bars.insert(), new_rows)
    if existing:
        conn.execute(
            bars.update()
            .where(and_(bars.c.case_id == case_id, bars.c.number.in_(existing)))
            .values(active=True, barred_at=now, released_at=None)
        )
    ref = case_ref(case_id)
    return [("add", n, ref) for n in wanted]


def release_bars(conn: Connection, case_id: int, now: dt.datetime) -> tuple[list[Change], int]:
    """Deactivate the case's bars: the 'remove' changes, only for numbers no other active case
    still bars, and how many of the case's numbers stay barred by another case."""
    mine = sorted(
        conn.execute(
            select(bars.c.number).where(and_(bars.c.case_id == case_id, bars.c.active))
        ).scalars()
    )
    if not mine:
        return [], 0
    conn.execute(
        bars.update()
        .where(and_(bars.c.case_id == case_id, bars.c.active))
        .values(active=False, released_at=now)
    )
    still = set(
        conn.execute(
            select(bars.c.number).where(and_(bars.c.number.in_(mine), bars.c.active)).distinct()
        ).scalars()
    )
    ref = case_ref(case_id)
    return [("remove", n, ref) for n in mine if n not in still], len(still)


def barred_numbers(conn: Connection) -> set[str]:
    """Every number with at least one active bar: what every gateway must hold."""
    return set(conn.execute(select(bars.c.number).where(bars.c.active).distinct()).scalars())


def bar_counts(conn: Connection, numbers: Sequence[str]) -> dict[str, int]:
    """How many active cases bar each of `numbers` (0 when none)."""
    rows = conn.execute(
        select(bars.c.number, func.count())
        .where(and_(bars.c.number.in_(numbers), bars.c.active))
        .group_by(bars.c.number)
    )
    counts = {n: 0 for n in numbers}
    counts.update({number: int(count) for number, count in rows})
    return counts


def active_cases_barring(conn: Connection, number: str) -> list[int]:
    return sorted(
        conn.execute(
            select(bars.c.case_id).where(and_(bars.c.number == number, bars.c.active))
        ).scalars()
    )


def write_outbox(
    conn: Connection, case_id: int, action: str, changes: Sequence[Change], now: dt.datetime
) -> int | None:
    """Queue `changes` for the relay in the caller's transaction; the row id, or None if empty."""
    if not changes:
        return None
    result = conn.execute(
        outbox.insert().values(
            created_at=now,
            case_id=case_id,
            action=action,
            changes=json.dumps([list(c) for c in changes], separators=(",", ":")),
        )
    )
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


def decode_changes(text: str) -> tuple[Change, ...]:
    out: list[Change] = []
    for item in json.loads(text):
        op, e164, ref = item
        if op not in ("add", "remove"):
            raise ValueError(f"outbox holds an unknown operation {op!r}")
        out.append((str(op), str(e164), str(ref)))
    return tuple(out)
