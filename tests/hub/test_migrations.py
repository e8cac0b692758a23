"""The packaged Alembic migrations build exactly hub.schema, on both databases, idempotently,
and ship inside the wheel so `upcs hub init` works from an installed package."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from hub import DatabaseError, check_current, make_engine, migrate
from hub.db import MIGRATIONS_DIR, _alembic_config
from hub.schema import metadata
from tests.hub.conftest import ROOT


def test_migrations_build_exactly_the_schema(engine: Engine) -> None:
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []


def test_init_is_idempotent_and_checked(db_url: str) -> None:
    eng = make_engine(db_url)
    try:
        with pytest.raises(DatabaseError, match="run `upcs hub init`"):
            check_current(eng)
        assert migrate(eng) == (None, "0002")
        assert migrate(eng) == ("0002", "0002")
        check_current(eng)
    finally:
        eng.dispose()


def test_plain_postgresql_url_uses_psycopg3() -> None:
    eng = make_engine("postgresql://postgres@127.0.0.1:5432/test")
    try:
        assert eng.dialect.driver == "psycopg"
    finally:
        eng.dispose()


def test_bad_url_is_a_clear_error() -> None:
    with pytest.raises(DatabaseError, match="cannot use database"):
        make_engine("nosuchdb://user:secret@host/x")
    with pytest.raises(DatabaseError) as info:
        make_engine("nosuchdb://user:secret@host/x")
    assert "secret" not in str(info.value)


@pytest.mark.slow
def test_package_build_ships_the_migrations(tmp_path: Path) -> None:
    """setuptools' own build step (what a wheel is made from), run on a copy of the project with
    the pyproject package-data rules, must carry every migration file."""
    src = tmp_path / "src"
    shutil.copytree(
        ROOT, src, ignore=shutil.ignore_patterns(".git", "*.egg-info", "__pycache__", "build")
    )
    out = tmp_path / "lib"
    built = subprocess.run(
        [sys.executable, "-c", "from setuptools import setup; setup()", "-q", "build_py",
         "--build-lib", str(out)],
        cwd=src, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr[-2000:]
    shipped = {
        p.relative_to(MIGRATIONS_DIR).as_posix()
        for p in MIGRATIONS_DIR.rglob("*")
        if p.is_file() and p.suffix in (".py", ".mako", ".ini")
    }
    assert {
        "env.py",
        "script.py.mako",
        "alembic.ini",
        "versions/0001_initial.py",
        "versions/0002_audit_no_replace.py",
    } <= shipped
    missing = [name for name in shipped if not (out / "hub" / "migrations" / name).is_file()]
    assert not missing


def test_a_database_made_by_0001_upgrades_and_gains_the_replace_lock(db_url: str) -> None:
    """A hub initialised before 0002 (already deployed) gets the lock from `upcs hub init`."""
    eng = make_engine(db_url)
    try:
        with eng.connect() as conn:
            command.upgrade(_alembic_config(conn), "0001")
            conn.commit()
        assert migrate(eng) == ("0001", "0002")
        check_current(eng)
        if eng.dialect.name == "sqlite":
            with pytest.raises(DBAPIError, match="append-only"), eng.begin() as conn:
                conn.execute(
                    text(
                        "REPLACE INTO audit_log (id, at, actor, action, reason, detail) "
                        "VALUES (1, '2020-01-01 00:00:00', 'x', 'x', 'rewritten', '{}')"
                    )
                )
    finally:
        eng.dispose()
