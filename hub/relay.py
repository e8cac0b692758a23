"""The outbox relay: publish pending outbox rows, in order, exactly once as the gateways see it.

Approval and lifting write an outbox row in the same transaction as the case change (hub.bars).
The relay publishes each pending row through an injected `publish` callable (hub never imports
sync; upcs/cli_hub.py wires it to `sync.Publisher.publish`) with an idempotency key made of this
hub's instance id and the row id, then marks the row done and writes the disclosure to the audit
log. If the relay or Redis dies between the publish and the mark, the row is still pending on
restart and is published again with the same key, which the publisher turns into a no-op that
returns the first version: at least once from here, exactly once at the gateways.

Rows are published strictly in id order, and a failure stops the batch, because a 'remove' must
never overtake the 'add' it follows.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import and_, select
from sqlalchemy.engine import Engine

from hub.audit import AuditAction, record, tag
from hub.bars import Change, OutboxRow, decode_changes
from hub.db import READ_ONLY, hub_instance_id, tag_key
from hub.schema import outbox

__all__ = [
    "Backoff",
    "PublishFn",
    "Relay",
    "RelayConfig",
    "idempotency_key",
    "run_loop",
]

log = logging.getLogger("hub.relay")

RELAY_ACTOR = "relay"  # the audit actor for publications: a process, not a person


class PublishFn(Protocol):
    """Publish changes as one idempotent batch; the last list version it produced."""

    def __call__(self, changes: Sequence[Change], *, idempotency_key: str) -> Awaitable[int]: ...


@dataclass(frozen=True)
class Backoff:
    """Jittered exponential backoff between failed cycles (STYLE.md rule 7)."""

    initial_s: float = 0.2
    max_s: float = 10.0  # a Redis failover (Sentinel) takes seconds; retry at least this often
    jitter: float = 0.5  # +/- this fraction, so 120 sites' relays and followers don't stampede

    def delay_s(self, failures: int, rng: random.Random) -> float:
        base = min(self.max_s, self.initial_s * 2.0 ** max(0, failures - 1))
        return max(0.0, base * (1 + self.jitter * (2 * rng.random() - 1)))


@dataclass(frozen=True)
class RelayConfig:
    batch_rows: int = 100  # rows read per query; every one is still published on its own
    # Idle wait between polls. DESIGN.md targets approval-to-enforcement within 100 ms p99; the
    # approving command publishes inline when it has Redis, and this poll bounds the delay when
    # it had not (an indexed read of an empty pending set costs well under a millisecond).
    poll_interval_s: float = 0.05
    recipient: str = "sync"  # named in the audit disclosure rows
    backoff: Backoff = Backoff()


def idempotency_key(instance_id: str, outbox_id: int) -> str:
    return f"hub:{instance_id}:outbox:{outbox_id}"


class Relay:
    def __init__(
        self,
        engine: Engine,
        publish: PublishFn,
        config: RelayConfig | None = None,
        clock: Callable[[], dt.datetime] | None = None,
    ) -> None:
        self.engine = engine
        self.publish = publish
        self.config = config or RelayConfig()
        self.clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self._instance: str | None = None
        self._key: bytes | None = None

    def pending(self, limit: int | None = None) -> list[OutboxRow]:
        query = select(outbox).where(outbox.c.published_at.is_(None)).order_by(outbox.c.id)
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect().execution_options(**READ_ONLY) as conn:
            if self._instance is None or self._key is None:
                self._instance = hub_instance_id(conn)
                self._key = tag_key(conn)
            rows = [
                OutboxRow(r.id, r.case_id, r.action, decode_changes(r.changes))
                for r in conn.execute(query)
            ]
            conn.rollback()
        return rows

    async def publish_pending(self) -> int:
        """Publish every pending row in order; how many rows were published. Raises the first
        publish error, leaving that row and all after it pending."""
        done = 0
        while True:
            rows = self.pending(self.config.batch_rows)
            if not rows:
                return done
            for row in rows:
                await self._publish_row(row)
                done += 1

    async def _publish_row(self, row: OutboxRow) -> None:
        assert self._instance is not None and self._key is not None
        key = idempotency_key(self._instance, row.id)
        version = await self.publish(row.changes, idempotency_key=key)
        now = self.clock()
        with self.engine.begin() as conn:
            marked = conn.execute(
                outbox.update()
                .where(and_(outbox.c.id == row.id, outbox.c.published_at.is_(None)))
                .values(published_at=now, version=version)
            )
            if marked.rowcount == 1:
                record(
                    conn,
                    at=now,
                    actor=RELAY_ACTOR,
                    action=AuditAction.DISCLOSE,
                    reason=f"{row.action}: bar changes published to the prison gateways",
                    case_ids=(row.case_id,),
                    detail={
                        "outbox": row.id,
                        "version": version,
                        "recipient": self.config.recipient,
                        "changes": [
                            {"op": op, "tag": tag(self._key, n)} for op, n, _ in row.changes
                        ],
                    },
                )
        log.info(
            "relay.published outbox=%d case=%d changes=%d version=%d",
            row.id,
            row.case_id,
            len(row.changes),
            version,
        )


Step = Callable[[], Awaitable[int]]


async def run_loop(
    steps: Sequence[Step],
    config: RelayConfig | None = None,
    stop: asyncio.Event | None = None,
    rng: random.Random | None = None,
) -> None:
    """Run `steps` (e.g. Relay.publish_pending, AttemptPuller.pull) until `stop` is set (checked
    between cycles and during every wait) or the task is cancelled.

    A failing step (Redis down, database busy) is logged by class only (messages could in
    principle carry data) and retried after a jittered backoff; cancellation always propagates.
    Stopping by event is the normal path: it never interrupts a publish between Redis's
    acknowledgement and the row being marked (that window is safe anyway, but quieter this way).
    """
    config = config or RelayConfig()
    rng = rng or random.Random()
    stop = stop or asyncio.Event()
    failures = 0
    while not stop.is_set():
        try:
            busy = 0
            for step in steps:
                busy += await step()
            failures = 0
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            failures += 1
            wait = config.backoff.delay_s(failures, rng)
            log.warning(
                "relay.step_failed error=%s failures=%d retry_in_s=%.2f",
                exc.__class__.__name__,
                failures,
                wait,
            )
            await _pause(stop, wait)
            continue
        if not busy:
            await _pause(stop, config.poll_interval_s)


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    """Sleep `seconds`, or less if `stop` is set meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
