"""Fixtures for the hub tests: every DB test runs on SQLite AND on the real PostgreSQL.

PostgreSQL isolation (other engineers' tests share the server): one freshly created database per
test session, and inside it one schema per test (selected with the libpq `options` search path in
the URL, so subprocesses given the URL land in the same schema). Both are dropped afterwards.
Redis isolation: a unique key prefix per test on the shared server, deleted afterwards; the
kill-Redis test starts its own redis-server on a unix socket (no port to collide on).
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import redis as redis_sync
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from hub import Hub, make_engine, migrate

PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
REDIS_URL = "redis://127.0.0.1:6379/0"
ROOT = Path(__file__).resolve().parents[2]


def _missing(binary: str, why: str) -> None:
    if shutil.which(binary) is None:
        if os.environ.get("CI"):
            pytest.fail(f"{binary} is not installed but CI is set: {why}")
        pytest.skip(f"{binary} is not installed: {why}")


class FakeClock:
    """Aware UTC time that tests move by hand."""

    def __init__(self, start: dt.datetime | None = None) -> None:
        self.now = start or dt.datetime(2026, 12, 3, 12, 0, tzinfo=dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += dt.timedelta(**kwargs)


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this session; its SQLAlchemy URL."""
    if shutil.which("postgres") is None and shutil.which("pg_ctlcluster") is None:
        _missing("postgres", "the hub's production database")
    name = f"upcs_hub_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database URL nobody else uses: a SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'hub.db'}"
        return
    base: str = request.getfixturevalue("pg_database")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{base}?options={quote(f'-csearch_path={schema}')}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url)
    migrate(eng, actor="test-setup")
    yield eng
    eng.dispose()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def hub(engine: Engine, clock: FakeClock) -> Hub:
    return Hub(engine, clock=clock)


def make_request(
    phones: list[str] | None = None,
    *,
    requester_type: str = "police",
    consent: bool = False,
    people: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A valid request (Ofcom drama numbers only) that tests then break one field at a time."""
    return {
        "requester": {"type": requester_type, "name": "PC Drama", "contact": "020 7946 0999"},
        "victim_consent": consent,
        "reason": "repeated threatening calls from prison",
        "offender": {
            "name": "Joe Bloggs",
            "prison_number": "A1234BC",
            "date_of_birth": "1985-04-01",
            "establishment": "HMP Leeds",
        },
        "protected": people
        or [
            {
                "name": "Victim One",
                "phones": phones if phones is not None else ["07700 900001", "020 7946 0001"],
                "addresses": ["1 Drama Street, Leeds LS1 1AA"],
                "emails": ["victim.one@example.org"],
            }
        ],
    }


# ---- Redis -------------------------------------------------------------------------------------


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A key prefix on the shared Redis nobody else uses; its keys are deleted afterwards."""
    _missing("redis-server", "sync and attempts go through the real Redis")
    prefix = f"hubtest{uuid.uuid4().hex[:10]}"
    yield prefix
    client = redis_sync.Redis.from_url(REDIS_URL)
    try:
        for pattern in (f"{prefix}:*", f"{{{prefix}:*"):
            keys = list(client.scan_iter(match=pattern, count=1000))
            if keys:
                client.delete(*keys)
    finally:
        client.close()


@dataclass
class PrivateRedis:
    """Our own redis-server on a unix socket, AOF on: killed and restarted at will."""

    dir: Path
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    args: list[str] = field(default_factory=list)

    @property
    def socket(self) -> Path:
        return self.dir / "redis.sock"

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def start(self) -> None:
        self.socket.unlink(missing_ok=True)
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                "0",
                "--unixsocket",
                str(self.socket),
                "--unixsocketperm",
                "700",
                "--dir",
                str(self.dir),
                "--appendonly",
                "yes",
                # Every acknowledged write on disk before the reply: what the hub needs in
                # production, and what makes kill -9 lose nothing here.
                "--appendfsync",
                "always",
                "--save",
                "",
                "--logfile",
                str(self.dir / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.starts += 1
        client = redis_sync.Redis(unix_socket_path=str(self.socket))
        deadline = time.monotonic() + 10
        try:
            while True:
                try:
                    if client.ping():
                        return
                except (redis_sync.ConnectionError, FileNotFoundError):
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("private redis-server did not start within 10 s")
                time.sleep(0.02)
        finally:
            client.close()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()  # SIGKILL: no shutdown, no final AOF flush
            self.proc.wait(timeout=10)
        self.proc = None


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    _missing("redis-server", "the kill-Redis recovery test runs its own server")
    server = PrivateRedis(tmp_path / "redis")
    server.dir.mkdir()
    server.start()
    yield server
    server.kill()


def hub_cli(*args: str) -> list[str]:
    """argv that runs `upcs hub ARGS...` in a fresh interpreter (for subprocess tests)."""
    code = "from upcs.cli_hub import app; app(prog_name='upcs hub')"
    return [sys.executable, "-c", code, *args]
