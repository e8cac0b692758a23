"""The hub database: engines, migrations, and the one lock that keeps bar counts right.

SQLite is the embedded default and PostgreSQL the production database (issue 5, "Storage"). On
SQLite every transaction starts with BEGIN IMMEDIATE so two writers never read the same bar count
and both act on it (the second waits up to `SQLITE_BUSY_TIMEOUT_S`). On PostgreSQL the same is
done by `lock_bars`, which every transaction that changes bars takes first.
"""

from __future__ import annotations

import datetime as dt
import secrets
import uuid
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, event, select
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from hub.audit import AuditAction, record
from hub.schema import hub_meta

__all__ = [
    "DEFAULT_DATABASE_URL",
    "MIGRATIONS_DIR",
    "READ_ONLY",
    "SQLITE_BUSY_TIMEOUT_S",
    "DatabaseError",
    "check_current",
    "get_meta",
    "hub_instance_id",
    "lock_bars",
    "make_engine",
    "migrate",
    "redact_url",
    "set_meta",
    "tag_key",
]

DEFAULT_DATABASE_URL = "sqlite:///upcs-hub.db"  # issue 5: a SQLite file in the working directory
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_TIMEOUT_S = 30.0  # a case handler's command may wait this long behind the relay
META_INSTANCE_ID = "instance_id"
READ_ONLY_OPTION = "hub_read_only"
# Options for a connection that only reads: `engine.connect().execution_options(**READ_ONLY)`
READ_ONLY: dict[str, bool] = {READ_ONLY_OPTION: True}
META_TAG_KEY = "audit_tag_key"
TAG_KEY_BYTES = 32  # HMAC-SHA256 key size (RFC 2104 §3: at least the hash output length)


class DatabaseError(RuntimeError):
    """The hub database cannot be used; the message says why and what to do (no secrets)."""


def redact_url(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable database URL>"


def make_engine(url: str) -> Engine:
    """An engine for `url` with the hub's per-backend settings."""
    try:
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite":
            engine = create_engine(parsed, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})
            _sqlite_setup(engine)
            return engine
        if parsed.drivername == "postgresql":
            # The driver upcs installs (the `postgres` extra) is psycopg 3, not SQLAlchemy's
            # default psycopg2, so a plain postgresql:// URL works as operators expect.
            parsed = parsed.set(drivername="postgresql+psycopg")
        return create_engine(parsed, pool_pre_ping=True)
    except (ArgumentError, ImportError) as exc:
        raise DatabaseError(f"cannot use database {redact_url(url)}: {exc}") from None


def _sqlite_setup(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take transaction control from the sqlite3 module so BEGIN IMMEDIATE below is ours.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA foreign_keys=ON")
        # WAL lets the relay and a handler's command read while the other writes.
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")  # a committed approval survives a power cut
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Writers take the write lock up front; a pure read (the relay's poll) does not.
        read_only = conn.get_execution_options().get(READ_ONLY_OPTION, False)
        conn.exec_driver_sql("BEGIN DEFERRED" if read_only else "BEGIN IMMEDIATE")


def _driver_message(exc: SQLAlchemyError) -> str:
    """The driver's own first line (e.g. "connection refused"), never SQLAlchemy's rendering,
    which appends the statement and its parameters (secrets, contact details)."""
    orig = getattr(exc, "orig", None)
    text = str(orig).strip().splitlines()[0] if orig is not None and str(orig).strip() else ""
    return f"{exc.__class__.__name__}: {text}" if text else exc.__class__.__name__


def lock_bars(conn: Connection) -> None:
    """Serialise every transaction that reads and changes bar counts or writes the outbox.

    Without it, lifting case A and approving case B for the same number at the same moment could
    both see the other's bar as absent and publish a 'remove' for a number B still bars. It also
    makes outbox ids follow commit order, so the relay publishes changes in the order they
    happened. SQLite already serialises writers (BEGIN IMMEDIATE).
    """
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("LOCK TABLE bars IN SHARE ROW EXCLUSIVE MODE")


def _alembic_config(conn: Connection) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = conn
    return cfg


def migrate(engine: Engine, *, actor: str = "upcs hub init") -> tuple[str | None, str]:
    """Create or upgrade the schema to the newest revision; (revision before, revision after).
    The run is written to the audit log as `actor`'s."""
    try:
        with engine.connect() as conn:
            before = MigrationContext.configure(conn).get_current_revision()
            conn.rollback()
            command.upgrade(_alembic_config(conn), "head")
            conn.commit()
            after = MigrationContext.configure(conn).get_current_revision()
            conn.rollback()
        with engine.begin() as conn:
            if get_meta(conn, META_INSTANCE_ID) is None:
                set_meta(conn, META_INSTANCE_ID, str(uuid.uuid4()))
            if get_meta(conn, META_TAG_KEY) is None:
                set_meta(conn, META_TAG_KEY, secrets.token_hex(TAG_KEY_BYTES))
            record(
                conn,
                at=dt.datetime.now(dt.UTC),
                actor=actor,
                action=AuditAction.SCHEMA_MIGRATE,
                reason="create or migrate the hub database",
                detail={"from": before, "to": after},
            )
    except SQLAlchemyError as exc:
        url = redact_url(str(engine.url))
        raise DatabaseError(f"cannot migrate {url}: {_driver_message(exc)}") from None
    return before, after or ""


def check_current(engine: Engine) -> None:
    """DatabaseError unless the schema is at the newest revision (run `upcs hub init`)."""
    head = ScriptDirectory.from_config(_alembic_config_plain()).get_current_head()
    url = redact_url(str(engine.url))
    try:
        with engine.connect().execution_options(**READ_ONLY) as conn:
            current = MigrationContext.configure(conn).get_current_revision()
            conn.rollback()
    except SQLAlchemyError as exc:
        raise DatabaseError(f"cannot open hub database {url}: {_driver_message(exc)}") from None
    if current is None:
        raise DatabaseError(f"hub database {url} is not initialised: run `upcs hub init`")
    if current != head:
        raise DatabaseError(
            f"hub database {url} is at revision {current}, this upcs needs {head}: "
            "run `upcs hub init` to migrate"
        )


def _alembic_config_plain() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def get_meta(conn: Connection, key: str) -> str | None:
    return conn.execute(select(hub_meta.c.value).where(hub_meta.c.key == key)).scalar_one_or_none()


def set_meta(conn: Connection, key: str, value: str) -> None:
    updated = conn.execute(hub_meta.update().where(hub_meta.c.key == key).values(value=value))
    if updated.rowcount == 0:
        conn.execute(hub_meta.insert().values(key=key, value=value))


def hub_instance_id(conn: Connection) -> str:
    """This database's instance id: part of every idempotency key, so a re-created hub database
    (whose outbox ids start again at 1) can never be mistaken for one already published."""
    value = get_meta(conn, META_INSTANCE_ID)
    if value is None:
        raise DatabaseError("hub database has no instance id: run `upcs hub init`")
    return value


def tag_key(conn: Connection) -> bytes:
    value = get_meta(conn, META_TAG_KEY)
    if value is None:
        raise DatabaseError("hub database has no audit tag key: run `upcs hub init`")
    return bytes.fromhex(value)
