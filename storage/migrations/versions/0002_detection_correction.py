"""detection and correction: incident flags, reopen count, alert time, correction retries;
candidates' post-swap watch

Revision ID: 0002
Revises: 0001
Create Date: 2025-01-02

Added to `storage/tables.py` after 0ca2bfa, in three commits (b0b5e1b: flagged_ids, reopened,
alerted_at; dfea733: watch_checks_left; d09b8e9: correction_attempts, correction_error). A
database made by `create_all` between those commits has some of them already, so each column
is added only where it is missing. NOT NULL columns get server defaults, which also fill the
rows already there.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def added_columns() -> dict[str, list[sa.Column]]:
    """The columns this revision adds, per table (fresh objects on each call)."""
    return {
        "incidents": [
            sa.Column("flagged_ids", sa.JSON(), nullable=False, server_default="[]"),
            sa.Column("reopened", sa.Integer(), nullable=False, server_default="0"),
            sa.Column("correction_attempts", sa.Integer(), nullable=False, server_default="0"),
            sa.Column("correction_error", sa.Text(), nullable=True),
            sa.Column("alerted_at", sa.DateTime(timezone=True), nullable=True),
        ],
        "candidates": [
            sa.Column("watch_checks_left", sa.Integer(), nullable=False, server_default="0"),
        ],
    }


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    for table, columns in added_columns().items():
        present = {c["name"] for c in inspector.get_columns(table)}
        missing = [c for c in columns if c.name not in present]
        if not missing:
            continue
        with op.batch_alter_table(table) as batch:
            for column in missing:
                batch.add_column(column)


def downgrade() -> None:
    for table, columns in added_columns().items():
        with op.batch_alter_table(table) as batch:
            for column in reversed(columns):
                batch.drop_column(column.name)
