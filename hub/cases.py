"""The hub's case operations: intake, the workflow, transfers, and audited views.

Every public method is one database transaction that does its work AND writes its audit row
(hub.audit), so nothing is changed or shown without its log entry. Transitions follow the table in
hub.workflow; those that apply or release bars take `hub.db.lock_bars` first and queue their
publication in the outbox in the same transaction (hub.bars).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from sqlalchemy import and_, func, select
from sqlalchemy.engine import Connection, Engine

from hub import bars as bars_mod
from hub.audit import AuditAction, AuditEntry, read_audit, record, tag
from hub.db import READ_ONLY, lock_bars, tag_key
from hub.intake import CaseRequest
from hub.records import (
    CaseRecord,
    CaseSummary,
    PersonRecord,
    PhoneRecord,
    TransferRecord,
    TransitionRecord,
    TransitionResult,
)
from hub.schema import (
    case_transitions,
    cases,
    protected_addresses,
    protected_emails,
    protected_people,
    protected_phones,
    transfers,
)
from hub.workflow import (
    BARRING_STATES,
    Action,
    State,
    TransitionRefused,
    check_expiry,
    next_state,
)

__all__ = ["DEFAULT_REVIEW_DAYS", "CaseNotFound", "Hub", "HubConfig", "utc_now"]

DEFAULT_REVIEW_DAYS = 365  # a yearly review unless the handler sets --review-date on approval
UK_TIME = ZoneInfo("Europe/London")  # review dates are calendar dates in England and Wales


class CaseNotFound(LookupError):
    def __init__(self, case_id: int) -> None:
        super().__init__(f"no case {case_id}")
        self.case_id = case_id


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class HubConfig:
    review_after_days: int = DEFAULT_REVIEW_DAYS


class Hub:
    """Case handling on one hub database. `clock` returns aware UTC time (tests move it)."""

    def __init__(
        self,
        engine: Engine,
        config: HubConfig | None = None,
        clock: Callable[[], dt.datetime] = utc_now,
    ) -> None:
        self.engine = engine
        self.config = config or HubConfig()
        self.clock = clock

    def today(self) -> dt.date:
        return self.clock().astimezone(UK_TIME).date()

    # ---- changes -------------------------------------------------------------------------

    def create_case(self, request: CaseRequest, *, handler: str, reason: str) -> int:
        """Store a checked request as a new case in state `received`; its id."""
        _need_text(handler, "handler")
        _need_text(reason, "reason")
        now = self.clock()
        with self.engine.begin() as conn:
            result = conn.execute(
                cases.insert().values(
                    state=State.RECEIVED.value,
                    created_at=now,
                    updated_at=now,
                    requester_type=request.requester.type.value,
                    requester_name=request.requester.name,
                    requester_contact=request.requester.contact,
                    victim_consent=request.victim_consent,
                    reason=request.reason,
                    offender_name=request.offender.name,
                    prison_number=request.offender.prison_number,
                    offender_dob=request.offender.date_of_birth,
                    establishment=request.offender.establishment,
                )
            )
            key = result.inserted_primary_key
            assert key is not None
            case_id = int(key[0])
            for pos, person in enumerate(request.protected):
                pres = conn.execute(
                    protected_people.insert().values(
                        case_id=case_id, position=pos, name=person.name
                    )
                )
                pkey = pres.inserted_primary_key
                assert pkey is not None
                pid = int(pkey[0])
                if person.phones:
                    conn.execute(
                        protected_phones.insert(),
                        [
                            {
                                "person_id": pid,
                                "position": i,
                                "e164": p.e164,
                                "unallocated": p.unallocated,
                            }
                            for i, p in enumerate(person.phones)
                        ],
                    )
                if person.addresses:
                    conn.execute(
                        protected_addresses.insert(),
                        [
                            {"person_id": pid, "position": i, "address": a}
                            for i, a in enumerate(person.addresses)
                        ],
                    )
                if person.emails:
                    conn.execute(
                        protected_emails.insert(),
                        [
                            {"person_id": pid, "position": i, "email": e}
                            for i, e in enumerate(person.emails)
                        ],
                    )
            key_bytes = tag_key(conn)
            record(
                conn,
                at=now,
                actor=handler,
                action=AuditAction.CASE_CREATE,
                reason=reason,
                case_ids=(case_id,),
                detail={
                    "requester_type": request.requester.type.value,
                    "victim_consent": request.victim_consent,
                    "people": len(request.protected),
                    "numbers": sorted(tag(key_bytes, n) for n in request.numbers()),
                    "addresses": sum(len(p.addresses) for p in request.protected),
                    "emails": sum(len(p.emails) for p in request.protected),
                    "warnings": len(request.warnings),
                },
            )
        return case_id

    def transition(
        self,
        case_id: int,
        action: Action,
        *,
        handler: str,
        reason: str,
        review_date: dt.date | None = None,
    ) -> TransitionResult:
        """Move the case along the workflow graph, applying or releasing its bars."""
        _need_text(handler, "handler")
        _need_text(reason, "reason")
        now = self.clock()
        today = self.today()
        with self.engine.begin() as conn:
            lock_bars(conn)
            row = conn.execute(
                select(cases.c.state, cases.c.review_date).where(cases.c.id == case_id)
            ).one_or_none()
            if row is None:
                raise CaseNotFound(case_id)
            current = State(row.state)
            new = next_state(current, action)
            values: dict[str, object] = {"state": new.value, "updated_at": now}
            if action is Action.EXPIRE:
                check_expiry(row.review_date, today)
            if new is State.APPROVED:
                review = review_date or today + dt.timedelta(days=self.config.review_after_days)
                if review <= today:
                    raise TransitionRefused(
                        f"review date {review.isoformat()} is not in the future"
                    )
                values["review_date"] = review
            elif review_date is not None:
                raise TransitionRefused("a review date is set only when approving")
            changes: list[bars_mod.Change] = []
            still = 0
            if new in BARRING_STATES and current not in BARRING_STATES:
                changes = bars_mod.apply_bars(conn, case_id, self._numbers(conn, case_id), now)
            elif current in BARRING_STATES and new not in BARRING_STATES:
                changes, still = bars_mod.release_bars(conn, case_id, now)
            conn.execute(cases.update().where(cases.c.id == case_id).values(**values))
            conn.execute(
                case_transitions.insert().values(
                    case_id=case_id,
                    at=now,
                    handler=handler,
                    action=action.value,
                    from_state=current.value,
                    to_state=new.value,
                    reason=reason,
                )
            )
            outbox_id = bars_mod.write_outbox(conn, case_id, action.value, changes, now)
            adds = sum(1 for c in changes if c[0] == "add")
            result = TransitionResult(
                case_id, current.value, new.value, outbox_id, adds, len(changes) - adds, still
            )
            detail = result.as_json()
            if "review_date" in values:
                detail["review_date"] = str(values["review_date"])
            record(
                conn,
                at=now,
                actor=handler,
                action=AuditAction.CASE_TRANSITION,
                reason=reason,
                case_ids=(case_id,),
                detail=detail,
            )
        return result

    def expire_due(self, *, handler: str, reason: str) -> list[TransitionResult]:
        """Expire every approved case whose review date has come."""
        with self.engine.connect().execution_options(**READ_ONLY) as conn:
            due = list(
                conn.execute(
                    select(cases.c.id)
                    .where(
                        and_(
                            cases.c.state == State.APPROVED.value,
                            cases.c.review_date <= self.today(),
                        )
                    )
                    .order_by(cases.c.id)
                ).scalars()
            )
            conn.rollback()
        return [self.transition(c, Action.EXPIRE, handler=handler, reason=reason) for c in due]

    def transfer(self, case_id: int, establishment: str, *, handler: str, reason: str) -> None:
        """Record that the offender is now held at `establishment` (the bar stays national)."""
        _need_text(establishment, "establishment")
        _need_text(handler, "handler")
        _need_text(reason, "reason")
        now = self.clock()
        with self.engine.begin() as conn:
            before = conn.execute(
                select(cases.c.establishment).where(cases.c.id == case_id)
            ).one_or_none()
            if before is None:
                raise CaseNotFound(case_id)
            conn.execute(
                transfers.insert().values(
                    case_id=case_id,
                    at=now,
                    from_establishment=before.establishment,
                    to_establishment=establishment.strip(),
                    handler=handler,
                    reason=reason,
                )
            )
            conn.execute(
                cases.update()
                .where(cases.c.id == case_id)
                .values(establishment=establishment.strip(), updated_at=now)
            )
            record(
                conn,
                at=now,
                actor=handler,
                action=AuditAction.CASE_TRANSFER,
                reason=reason,
                case_ids=(case_id,),
                detail={"from": before.establishment, "to": establishment.strip()},
            )

    # ---- views (each one audited) ----------------------------------------------------------

    def list_cases(
        self, *, handler: str, reason: str, state: State | None = None
    ) -> list[CaseSummary]:
        _need_text(handler, "handler")
        _need_text(reason, "reason")
        with self.engine.begin() as conn:
            summaries = self._summaries(conn, state=state)
            ids: list[int | None] = [s.id for s in summaries] or [None]
            record(
                conn,
                at=self.clock(),
                actor=handler,
                action=AuditAction.CASE_LIST,
                reason=reason,
                case_ids=ids,
                detail={"state": state.value if state else None, "shown": len(summaries)},
            )
        return summaries

    def show_case(
        self, case_id: int, *, handler: str, reason: str, disclosed_to: str | None = None
    ) -> CaseRecord:
        """The whole case. `disclosed_to` names a recipient outside the hub (e.g. a police
        force asking for evidence): s.62(3) wants the recipient's identity logged."""
        _need_text(handler, "handler")
        _need_text(reason, "reason")
        with self.engine.begin() as conn:
            found = self._summaries(conn, case_id=case_id)
            if not found:
                raise CaseNotFound(case_id)
            full = self._record(conn, found[0])
            record(
                conn,
                at=self.clock(),
                actor=handler,
                action=AuditAction.DISCLOSE if disclosed_to else AuditAction.CASE_VIEW,
                reason=reason,
                case_ids=(case_id,),
                detail={"fields": "all", "recipient": disclosed_to}
                if disclosed_to
                else {"fields": "all"},
            )
        return full

    def audit(self, *, handler: str, reason: str, case_id: int | None = None) -> list[AuditEntry]:
        """The audit log (all, or one case's), oldest first; this view is itself logged last."""
        _need_text(handler, "handler")
        _need_text(reason, "reason")
        with self.engine.begin() as conn:
            entries = read_audit(conn, case_id=case_id)
            record(
                conn,
                at=self.clock(),
                actor=handler,
                action=AuditAction.AUDIT_VIEW,
                reason=reason,
                case_ids=(case_id,),
                detail={"shown": len(entries)},
            )
        return entries

    # ---- helpers ------------------------------------------------------------------------

    def _numbers(self, conn: Connection, case_id: int) -> list[str]:
        return list(
            conn.execute(
                select(protected_phones.c.e164)
                .join(protected_people, protected_people.c.id == protected_phones.c.person_id)
                .where(protected_people.c.case_id == case_id)
            ).scalars()
        )

    def _summaries(
        self, conn: Connection, *, case_id: int | None = None, state: State | None = None
    ) -> list[CaseSummary]:
        people = (
            select(protected_people.c.case_id, func.count().label("n"))
            .group_by(protected_people.c.case_id)
            .subquery()
        )
        numbers = (
            select(
                protected_people.c.case_id,
                func.count(func.distinct(protected_phones.c.e164)).label("n"),
            )
            .join(protected_people, protected_people.c.id == protected_phones.c.person_id)
            .group_by(protected_people.c.case_id)
            .subquery()
        )
        query = (
            select(cases, people.c.n.label("people"), numbers.c.n.label("numbers"))
            .outerjoin(people, people.c.case_id == cases.c.id)
            .outerjoin(numbers, numbers.c.case_id == cases.c.id)
            .order_by(cases.c.id)
        )
        if case_id is not None:
            query = query.where(cases.c.id == case_id)
        if state is not None:
            query = query.where(cases.c.state == state.value)
        return [
            CaseSummary(
                id=r.id,
                state=r.state,
                created_at=r.created_at,
                updated_at=r.updated_at,
                requester_type=r.requester_type,
                offender_name=r.offender_name,
                prison_number=r.prison_number,
                establishment=r.establishment,
                review_date=r.review_date,
                people=int(r.people or 0),
                numbers=int(r.numbers or 0),
            )
            for r in conn.execute(query)
        ]

    def _record(self, conn: Connection, summary: CaseSummary) -> CaseRecord:
        case_id = summary.id
        row = conn.execute(select(cases).where(cases.c.id == case_id)).one()
        persons = conn.execute(
            select(protected_people)
            .where(protected_people.c.case_id == case_id)
            .order_by(protected_people.c.position)
        ).all()
        pids = [p.id for p in persons]
        phones = conn.execute(
            select(protected_phones)
            .where(protected_phones.c.person_id.in_(pids))
            .order_by(protected_phones.c.position)
        ).all()
        counts = bars_mod.bar_counts(conn, sorted({p.e164 for p in phones}))
        addresses = conn.execute(
            select(protected_addresses)
            .where(protected_addresses.c.person_id.in_(pids))
            .order_by(protected_addresses.c.position)
        ).all()
        emails = conn.execute(
            select(protected_emails)
            .where(protected_emails.c.person_id.in_(pids))
            .order_by(protected_emails.c.position)
        ).all()
        people = tuple(
            PersonRecord(
                name=p.name,
                phones=tuple(
                    PhoneRecord(ph.e164, ph.unallocated, counts.get(ph.e164, 0))
                    for ph in phones
                    if ph.person_id == p.id
                ),
                addresses=tuple(a.address for a in addresses if a.person_id == p.id),
                emails=tuple(e.email for e in emails if e.person_id == p.id),
            )
            for p in persons
        )
        history = tuple(
            TransitionRecord(h.at, h.handler, h.action, h.from_state, h.to_state, h.reason)
            for h in conn.execute(
                select(case_transitions)
                .where(case_transitions.c.case_id == case_id)
                .order_by(case_transitions.c.id)
            )
        )
        moves = tuple(
            TransferRecord(t.at, t.from_establishment, t.to_establishment, t.handler, t.reason)
            for t in conn.execute(
                select(transfers).where(transfers.c.case_id == case_id).order_by(transfers.c.id)
            )
        )
        return CaseRecord(
            summary=summary,
            requester_name=row.requester_name,
            requester_contact=row.requester_contact,
            victim_consent=row.victim_consent,
            reason=row.reason,
            offender_dob=row.offender_dob,
            protected=people,
            history=history,
            transfers=moves,
        )


def _need_text(value: str, what: str) -> None:
    if not value or not value.strip():
        raise ValueError(f"a {what} is required")
