"""The hub: case intake, individual assessment, approval and lifting of bars, reference-counted
barring, an append-only audit trail and attempted-contact alerts (issue 5).

hub never imports sync or gateway: the relay publishes through an injected callable, wired to
`sync.Publisher.publish` by upcs/cli_hub.py.
"""

from hub.alerts import AlertRecord, Attempt, AttemptPuller, list_alerts, parse_attempt
from hub.audit import NO_REASON_GIVEN, AuditAction, AuditEntry, tag
from hub.bars import Change
from hub.cases import DEFAULT_REVIEW_DAYS, CaseNotFound, Hub, HubConfig
from hub.db import (
    DEFAULT_DATABASE_URL,
    DatabaseError,
    check_current,
    make_engine,
    migrate,
    redact_url,
)
from hub.intake import CaseRequest, IntakeRefused, RequesterType, parse_case_request
from hub.records import CaseRecord, CaseSummary, TransitionResult
from hub.relay import Backoff, PublishFn, Relay, RelayConfig, idempotency_key, run_loop
from hub.workflow import (
    TRANSITIONS,
    Action,
    IllegalTransition,
    State,
    TransitionRefused,
    allowed_actions,
    next_state,
)

__all__ = [
    "DEFAULT_DATABASE_URL",
    "DEFAULT_REVIEW_DAYS",
    "NO_REASON_GIVEN",
    "TRANSITIONS",
    "Action",
    "AlertRecord",
    "Attempt",
    "AttemptPuller",
    "AuditAction",
    "AuditEntry",
    "Backoff",
    "CaseNotFound",
    "CaseRecord",
    "CaseRequest",
    "CaseSummary",
    "Change",
    "DatabaseError",
    "Hub",
    "HubConfig",
    "IllegalTransition",
    "IntakeRefused",
    "PublishFn",
    "Relay",
    "RelayConfig",
    "RequesterType",
    "State",
    "TransitionRefused",
    "TransitionResult",
    "allowed_actions",
    "check_current",
    "idempotency_key",
    "list_alerts",
    "make_engine",
    "migrate",
    "next_state",
    "parse_attempt",
    "parse_case_request",
    "redact_url",
    "run_loop",
    "tag",
]
