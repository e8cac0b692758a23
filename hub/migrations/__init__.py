"""Alembic migrations for the hub database, shipped inside the package so `upcs hub init` works
from an installed wheel (hub.db.migrate points Alembic here)."""
