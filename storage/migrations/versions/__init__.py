"""Revision modules (alembic skips this file)."""
