"""Alembic revisions, oldest first; each one is hand-written and never edited once released."""
