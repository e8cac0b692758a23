"""`upcs hub ...` round trips on SQLite and PostgreSQL: names, JSON Lines, exit codes, and an
audit row for every command (Data Protection Act 2018 s.62)."""

from __future__ import annotations

import asyncio
import getpass
import json
from pathlib import Path
from typing import Any

import pytest
import redis as redis_sync
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from typer.testing import CliRunner, Result

from hub import make_engine
from hub.audit import AuditEntry, read_audit
from hub.schema import cases
from tests.hub.conftest import REDIS_URL, make_request
from tests.hub.synccheck import assert_exactly_once
from upcs.cli_hub import app

HANDLER = "case.handler.one"


class Cli:
    def __init__(
        self,
        db_url: str,
        tmp_path: Path,
        config: Path | None = None,
        *,
        handler: str | None = HANDLER,
    ) -> None:
        """`handler`: UPCS_HANDLER for every call (None: unset, so the OS login acts)."""
        self.db = db_url
        self.tmp = tmp_path
        self.config = config or tmp_path / "none.toml"
        if config is None:
            self.config.write_text("", encoding="utf-8")
        self.runner = CliRunner(env={"UPCS_HANDLER": handler, "UPCS_HUB_REDIS": None})

    def __call__(self, *args: str, code: int = 0) -> Result:
        argv = [*args, "--db", self.db, "--config", str(self.config)]
        result = self.runner.invoke(app, argv, catch_exceptions=False)
        assert result.exit_code == code, (argv, result.stdout, result.stderr)
        return result

    def json(self, *args: str) -> list[dict[str, Any]]:
        out = self(*args, "--json").stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def new(self, request: dict[str, Any]) -> int:
        path = self.tmp / "request.json"
        path.write_text(json.dumps(request), encoding="utf-8")
        (row,) = self.json("case", "new", "--from-json", str(path))
        return int(row["id"])


@pytest.fixture
def cli(db_url: str, tmp_path: Path) -> Cli:
    c = Cli(db_url, tmp_path)
    c("init")
    return c


def _audit(db_url: str) -> list[AuditEntry]:
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            return read_audit(conn)
    finally:
        engine.dispose()


def _case_count(db_url: str) -> int:
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(cases)).scalar_one())
    finally:
        engine.dispose()


def test_round_trip(cli: Cli) -> None:
    case_id = cli.new(make_request())
    assert cli("case", "new", "--from-json", str(cli.tmp / "request.json")).stdout.strip() == str(
        case_id + 1
    )
    cli("case", "assess", str(case_id), "--handler", "h", "--reason", "start")
    (approved,) = cli.json("case", "approve", str(case_id), "--reason", "threats confirmed")
    assert approved["from"] == "assessing" and approved["to"] == "approved"
    assert approved["adds"] == 2 and approved["published"] == "pending"  # no Redis configured
    listed = cli.json("case", "list")
    assert [(c["id"], c["state"]) for c in listed] == [
        (case_id, "approved"),
        (case_id + 1, "received"),
    ]
    assert cli.json("case", "list", "--state", "received")[0]["id"] == case_id + 1
    (shown,) = cli.json("case", "show", str(case_id), "--reason", "police evidence request")
    assert shown["protected"][0]["phones"][0]["e164"] == "+447700900001"
    assert shown["protected"][0]["phones"][0]["barred_by_cases"] == 1
    assert [h["action"] for h in shown["history"]] == ["assess", "approve"]
    text = cli("case", "show", str(case_id), "--reason", "again").stdout
    assert "approved" in text and "+447700900001" in text
    cli("case", "transfer", str(case_id), "--establishment", "HMP Wakefield", "--reason", "moved")
    (moved,) = cli.json("case", "show", str(case_id), "--reason", "check transfer")
    assert moved["offender"]["establishment"] == "HMP Wakefield"
    assert moved["transfers"][0]["from"] == "HMP Leeds"
    (lifted,) = cli.json("case", "lift", str(case_id), "--reason", "victim asked")
    assert lifted["removes"] == 2
    rows = cli.json("audit", "--case", str(case_id))
    assert rows and all(r["case"] == case_id for r in rows)


def test_intake_refusal_exits_1_and_creates_nothing(cli: Cli) -> None:
    bad = make_request(["07700 900001", "999"])
    path = cli.tmp / "bad.json"
    path.write_text(json.dumps(bad), encoding="utf-8")
    result = cli("case", "new", "--from-json", str(path), code=1)
    assert "protected[0].phones[1]" in result.stderr
    assert "emergency" in result.stderr
    assert "no case created" in result.stderr
    assert "900001" not in result.stderr
    consent = make_request(requester_type="on_behalf_with_consent", consent=False)
    path.write_text(json.dumps(consent), encoding="utf-8")
    assert "victim_consent" in cli("case", "new", "--from-json", str(path), code=1).stderr
    path.write_text("{not json", encoding="utf-8")
    assert "not valid JSON" in cli("case", "new", "--from-json", str(path), code=1).stderr
    assert _case_count(cli.db) == 0


def test_new_from_flags(cli: Cli) -> None:
    result = cli(
        "case", "new", "--requester-type", "victim", "--requester-name", "V",
        "--requester-contact", "v@example.org", "--victim-consent", "--reason", "calls",
        "--offender-name", "O", "--prison-number", "B2345CD", "--date-of-birth", "1990-01-01",
        "--protected-name", "V", "--phone", "07700 900111", "--phone", "0113 496 0111", "--json",
    )  # fmt: skip
    case_id = json.loads(result.stdout)["id"]
    (shown,) = cli.json("case", "show", str(case_id), "--reason", "r")
    assert [p["e164"] for p in shown["protected"][0]["phones"]] == [
        "+447700900111",
        "+441134960111",
    ]
    cli("case", "new", "--prison-number", "B2345CD", code=1)  # the rest missing: refused


def test_usage_errors_exit_2(cli: Cli) -> None:
    case_id = str(cli.new(make_request()))
    # Issue 5 names the transitions with --handler and --reason: both stay required.
    for action in ("assess", "approve", "decline", "lift", "expire"):
        cli("case", action, case_id, code=2)  # no --reason
    cli("case", "transfer", case_id, "--establishment", "HMP Hull", code=2)
    nobody = Cli(cli.db, cli.tmp, handler=None)
    for action in ("assess", "approve", "decline", "lift", "expire"):
        nobody("case", action, case_id, "--reason", "r", code=2)  # no --handler
    nobody("case", "transfer", case_id, "--establishment", "HMP Hull", "--reason", "r", code=2)
    nobody("case", "expire-due", code=2)
    # A disclosure outside the hub (not in the issue's contract) still needs its justification.
    cli("case", "show", case_id, "--disclosed-to", "West Yorkshire Police", code=2)
    cli("case", "bogus", code=2)
    cli("case", "new", code=2)
    assert [e.action for e in _audit(cli.db)][-1] == "case.create"  # none of these acted


def test_issue_5_contract_commands_run_as_written(db_url: str, tmp_path: Path) -> None:
    """Every command issue 5 lists without --handler/--reason runs exactly as written there (plus
    the --db every hub command takes); its audit row names the OS login as who, and a view's row
    says plainly that no reason was given rather than carrying an invented one."""
    cli = Cli(db_url, tmp_path, handler=None)
    who = f"os:{getpass.getuser()}"
    path = tmp_path / "req.json"
    path.write_text(json.dumps(make_request()), encoding="utf-8")

    def run(*args: str, action: str, why: str | None = "no reason given") -> Result:
        before = len(_audit(db_url)) if args != ("init",) else 0
        result = cli(*args)
        new = _audit(db_url)[before:]
        assert any(e.action == action for e in new), (args, new)
        for entry in new:
            assert entry.actor == who, (args, entry)
            if why is not None:
                assert entry.reason == why, (args, entry)
        return result

    run("init", action="schema.migrate", why=None)
    created = run("case", "new", "--from-json", str(path), action="case.create", why=None)
    case_id = created.stdout.strip()
    as_json = run("case", "new", "--from-json", str(path), "--json", action="case.create", why=None)
    assert [json.loads(line) for line in as_json.stdout.splitlines()] == [{"id": int(case_id) + 1}]
    intake = [e for e in _audit(db_url) if e.action == "case.create"]
    assert [e.reason for e in intake] == ["intake of a request from police"] * 2
    assert case_id in run("case", "list", action="case.list").stdout
    assert json.loads(run("case", "list", "--json", action="case.list").stdout.splitlines()[0])
    assert "+447700900001" in run("case", "show", case_id, action="case.view").stdout
    shown = json.loads(run("case", "show", case_id, "--json", action="case.view").stdout)
    assert shown["id"] == int(case_id)
    assert run("audit", action="audit.view").stdout.strip()
    assert run("audit", "--json", action="audit.view").stdout.strip()
    assert run("audit", "--case", case_id, action="audit.view").stdout.strip()
    rows = run("audit", "--case", case_id, "--json", action="audit.view").stdout.splitlines()
    assert all(json.loads(r)["case"] == int(case_id) for r in rows)
    run("alerts", action="alert.view")
    run("alerts", "--json", action="alert.view")
    # Still a named handler and a real reason when given, as before.
    named = Cli(db_url, tmp_path)
    named("case", "show", case_id, "--reason", "police evidence request")
    last = _audit(db_url)[-1]
    assert (last.actor, last.reason) == (HANDLER, "police evidence request")


def test_no_handler_and_no_os_login_is_refused(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """With neither --handler nor an OS login to name, a view is refused, never logged as nobody."""

    def no_login() -> str:
        raise OSError("no login name")

    monkeypatch.setattr(getpass, "getuser", no_login)
    before = len(_audit(cli.db))
    err = Cli(cli.db, cli.tmp, handler=None)("case", "list", code=1).stderr
    assert "give --handler NAME" in err
    assert len(_audit(cli.db)) == before


def test_runtime_errors_exit_1(cli: Cli, tmp_path: Path) -> None:
    assert "no case 99" in cli("case", "assess", "99", "--reason", "r", code=1).stderr
    case_id = cli.new(make_request())
    err = cli("case", "lift", str(case_id), "--reason", "r", code=1).stderr
    assert "cannot lift a case that is received; allowed from received: assess" in err
    cli("case", "assess", str(case_id), "--reason", "r")
    cli("case", "approve", str(case_id), "--reason", "r", "--review-date", "2099-01-31")
    err = cli("case", "expire", str(case_id), "--reason", "r", code=1).stderr
    assert "review date is 2099-01-31, not yet come" in err
    bad_date = cli("case", "approve", "1", "--reason", "r", "--review-date", "31/1/2099", code=1)
    assert "YYYY-MM-DD" in bad_date.stderr
    fresh = Cli(f"sqlite:///{tmp_path / 'empty.db'}", tmp_path)
    assert "run `upcs hub init`" in fresh("case", "list", code=1).stderr


def test_every_command_leaves_its_audit_row(db_url: str, tmp_path: Path, redis_prefix: str) -> None:
    config = tmp_path / "upcs.toml"
    config.write_text(
        f'[sync]\nkey_prefix = "{redis_prefix}"\n[hub]\nredis = "{REDIS_URL}"\n',
        encoding="utf-8",
    )
    cli = Cli(db_url, tmp_path, config)

    def run(args: tuple[str, ...], action: str, actor: str = HANDLER) -> list[AuditEntry]:
        before = len(_audit(db_url)) if args[0] != "init" else 0
        cli(*args)
        new = _audit(db_url)[before:]
        assert new, f"{args} left no audit row"
        assert any(e.action == action and e.actor == actor for e in new), (args, new)
        return new

    run(("init", "--handler", "ops.admin"), "schema.migrate", "ops.admin")
    path = tmp_path / "req.json"
    path.write_text(json.dumps(make_request()), encoding="utf-8")
    run(("case", "new", "--from-json", str(path)), "case.create")
    run(("case", "new", "--from-json", str(path)), "case.create")
    run(("case", "assess", "1", "--reason", "a"), "case.transition")
    run(("case", "approve", "1", "--reason", "b"), "case.transition")
    run(("case", "assess", "2", "--reason", "a"), "case.transition")
    run(("case", "decline", "2", "--reason", "no grounds"), "case.transition")
    run(("case", "transfer", "1", "--establishment", "HMP Hull", "--reason", "t"), "case.transfer")
    run(("case", "list",), "case.list")  # fmt: skip
    run(("case", "show", "1", "--reason", "evidence"), "case.view")
    new = run(
        ("case", "show", "1", "--reason", "evidence", "--disclosed-to", "West Yorkshire Police"),
        "disclose",
    )
    assert new[-1].detail["recipient"] == "West Yorkshire Police"
    run(("audit",), "audit.view")
    run(("audit", "--case", "1"), "audit.view")
    run(("alerts",), "alert.view")
    attempt = {
        "site": "HMP Hull",
        "ts": "1796300000.5",
        "caller": "A1234BC",
        "dialled": "907700900001",
        "matched": "+447700900001",
        "call_id": "c1@pbx",
    }
    client = redis_sync.Redis.from_url(REDIS_URL)
    try:
        client.xadd(f"{redis_prefix}:attempts", attempt)  # type: ignore[arg-type]
        new = run(("alerts", "--pull"), "alert.view")
        assert any(e.action == "alert.record" and e.actor == "alerts" for e in new)
        (alert,) = cli.json("alerts")  # JSON Lines: one object per alert
        assert (alert["case"], alert["site"], alert["call_id"]) == (1, "HMP Hull", "c1@pbx")
        assert alert["matched"] == "+447700900001"
        attempt["call_id"] = "c2@pbx"
        client.xadd(f"{redis_prefix}:attempts", attempt)  # type: ignore[arg-type]
        run(("relay", "--once"), "alert.record", "alerts")
    finally:
        client.close()
    run(("case", "lift", "1", "--reason", "c"), "case.transition")
    disclosed = [e for e in _audit(db_url) if e.action == "disclose"]
    # approve and lift were published inline (Redis configured), each row disclosed once
    assert [(e.case_id, e.actor) for e in disclosed] == [
        (1, "relay"),
        (1, HANDLER),
        (1, "relay"),
    ]
    # Every row: who, when, what, why.
    for entry in _audit(db_url):
        assert entry.actor and entry.action and entry.reason and entry.at.tzinfo is not None
    engine = make_engine(db_url)
    try:
        asyncio.run(assert_exactly_once(engine, REDIS_URL, redis_prefix, tmp_path))
    finally:
        engine.dispose()


def test_list_audits_each_case_shown(cli: Cli) -> None:
    a = cli.new(make_request())
    b = cli.new(make_request())
    cli("case", "list", "--reason", "weekly review")
    listed = [e for e in _audit(cli.db) if e.action == "case.list"]
    assert sorted(e.case_id for e in listed if e.case_id is not None) == [a, b]
    assert {e.reason for e in listed} == {"weekly review"}


def test_relay_once_publishes_what_approval_left_pending(
    cli: Cli, redis_prefix: str, tmp_path: Path, db_url: str
) -> None:
    case_id = cli.new(make_request())
    cli("case", "assess", str(case_id), "--reason", "a")
    (approved,) = cli.json("case", "approve", str(case_id), "--reason", "b")
    assert approved["published"] == "pending"
    config = tmp_path / "relay.toml"
    config.write_text(f'[sync]\nkey_prefix = "{redis_prefix}"\n', encoding="utf-8")
    relay = Cli(db_url, tmp_path, config)
    relay("relay", "--once", "--redis", REDIS_URL)
    engine: Engine = make_engine(db_url)
    try:
        assert asyncio.run(assert_exactly_once(engine, REDIS_URL, redis_prefix, tmp_path)) == 2
    finally:
        engine.dispose()
    assert [e.action for e in _audit(db_url)][-1] == "disclose"


def test_registered_under_upcs() -> None:
    from upcs.cli import app as upcs_app

    result = CliRunner().invoke(upcs_app, ["hub", "--help"])
    assert result.exit_code == 0
    for name in ("init", "case", "audit", "alerts", "relay"):
        assert name in result.stdout
    case_help = CliRunner().invoke(upcs_app, ["hub", "case", "--help"]).stdout
    for name in ("new", "assess", "approve", "decline", "lift", "list", "show"):
        assert name in case_help


def test_db_defaults_to_config_then_a_sqlite_file_here(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--db` falls back to `[hub] database`, else to a SQLite file in the working directory."""
    monkeypatch.chdir(tmp_path)
    runner = CliRunner(env={"UPCS_HANDLER": HANDLER, "UPCS_HUB_DB": None})
    config = tmp_path / "upcs.toml"
    config.write_text(f'[hub]\ndatabase = "{db_url}"\n', encoding="utf-8")
    request = tmp_path / "req.json"
    request.write_text(json.dumps(make_request()), encoding="utf-8")
    for argv in (["init"], ["case", "new", "--from-json", str(request)]):
        result = runner.invoke(app, [*argv, "--config", str(config)], catch_exceptions=False)
        assert result.exit_code == 0, result.stderr
    assert _case_count(db_url) == 1
    assert not (tmp_path / "upcs-hub.db").exists()

    empty = tmp_path / "empty.toml"
    empty.write_text("", encoding="utf-8")
    for argv in (["init"], ["case", "new", "--from-json", str(request)]):
        result = runner.invoke(app, [*argv, "--config", str(empty)], catch_exceptions=False)
        assert result.exit_code == 0, result.stderr
    assert _case_count(f"sqlite:///{tmp_path / 'upcs-hub.db'}") == 1
    assert _case_count(db_url) == 1
