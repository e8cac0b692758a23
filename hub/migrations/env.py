"""Alembic environment for the hub: online migrations only, on the connection hub.db hands over.

`hub.db.migrate` passes its own connection in `config.attributes["connection"]`, so the schema
search path, SQLite pragmas and transaction mode are the ones the hub itself uses. A developer
running the alembic command line passes `-x url=...` instead.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from hub.db import make_engine
from hub.schema import metadata


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=metadata, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if isinstance(connection, Connection):
        _run(connection)
        return
    url = context.get_x_argument(as_dictionary=True).get("url")
    if not url:
        raise SystemExit("pass the database as: alembic -x url=SQLALCHEMY_URL ...")
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            _run(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("the hub migrations run online only (upcs hub init)")
run_migrations_online()
