"""Attempted-contact alerts: blocked dials from the gateways' Redis stream, linked to the cases
that barred the number at the time, stored exactly once."""

from __future__ import annotations

import datetime as dt

import pytest
import redis.asyncio as aioredis
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from hub import Action, AttemptPuller, Hub, list_alerts, parse_case_request
from hub.alerts import parse_attempt
from hub.audit import read_audit
from hub.db import set_meta
from hub.schema import attempts
from tests.hub.conftest import REDIS_URL, FakeClock, make_request

pytestmark = pytest.mark.redis


def _approve(hub: Hub, phones: list[str]) -> int:
    case_id = hub.create_case(parse_case_request(make_request(phones)), handler="h", reason="r")
    hub.transition(case_id, Action.ASSESS, handler="h", reason="r")
    hub.transition(case_id, Action.APPROVE, handler="h", reason="r")
    return case_id


def _attempt(at: dt.datetime, matched: str, call_id: str) -> dict[str, str]:
    return {
        "site": "HMP Leeds",
        "ts": f"{at.timestamp():.3f}",
        "caller": "A1234BC",
        "dialled": "9" + matched.replace("+44", "0"),
        "matched": matched,
        "call_id": call_id,
    }


async def test_attempts_link_to_the_cases_barring_at_that_time(
    hub: Hub, engine: Engine, clock: FakeClock, redis_prefix: str
) -> None:
    a = _approve(hub, ["07700 900001"])
    clock.advance(hours=1)
    b = _approve(hub, ["07700 900001", "020 7946 0001"])
    clock.advance(hours=1)
    hub.transition(a, Action.LIFT, handler="h", reason="r")
    t_both = clock.now - dt.timedelta(minutes=30)  # a and b both barred then
    t_after = clock.now + dt.timedelta(minutes=5)  # only b
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        key = f"{redis_prefix}:attempts"
        await client.xadd(key, _attempt(t_both, "+447700900001", "one"))  # type: ignore[arg-type]
        await client.xadd(key, _attempt(t_after, "+447700900001", "two"))  # type: ignore[arg-type]
        await client.xadd(key, _attempt(t_after, "+442079460001", "three"))  # type: ignore[arg-type]
        await client.xadd(key, _attempt(t_after, "+441134960999", "unbarred"))  # type: ignore[arg-type]
        puller = AttemptPuller(engine, client, redis_prefix, clock=clock, batch=2)
        assert await puller.pull() == 4
        assert await puller.pull() == 0  # the cursor moved: nothing twice
        with engine.begin() as conn:  # even a lost cursor never duplicates an attempt
            set_meta(conn, "attempts_cursor", "0-0")
        assert await puller.pull() == 4
    finally:
        await client.aclose()
    found = list_alerts(engine, handler="ann", reason="weekly alert review", at=clock.now)
    assert sorted((x.call_id, x.case_id) for x in found) == [
        ("one", a),
        ("one", b),
        ("three", b),
        ("two", b),
    ]
    with engine.connect() as conn:
        stored = conn.execute(select(func.count()).select_from(attempts)).scalar_one()
        audit = read_audit(conn)
    assert stored == 4  # the unbarred one is kept as evidence, with no alert
    assert {(e.case_id, e.actor) for e in audit if e.action == "alert.view"} == {
        (a, "ann"),
        (b, "ann"),
    }
    only_a = list_alerts(engine, handler="ann", reason="r", at=clock.now, case_id=a)
    assert {x.call_id for x in only_a} == {"one"}


def test_malformed_attempts_are_kept_as_evidence() -> None:
    received = dt.datetime(2026, 12, 3, tzinfo=dt.UTC)
    parsed = parse_attempt("5-0", {b"site": b"HMP X", b"ts": b"not-a-time"}, received)
    assert parsed.at == received and parsed.site == "HMP X" and parsed.matched == ""
    long = parse_attempt("6-0", {"caller": "x" * 10_000, "ts": "1796300000"}, received)
    assert len(long.caller) == 256
    assert long.at == dt.datetime.fromtimestamp(1796300000, dt.UTC)
