"""dead letters for undecodable record batches: `dead_letters.last_offset`

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01

A record batch the Kafka client cannot decode (codec library missing or unknown, corrupt
batch, failed CRC) is dead-lettered as one row for its offset range `offset`..`last_offset`;
NULL (every row before this revision) is a single message. A database made by `create_all`
with this column already (stamped 0002 by `storage.migrate`) is left as it is.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def added_columns() -> dict[str, list[sa.Column]]:
    """The columns this revision adds, per table (fresh objects on each call)."""
    return {"dead_letters": [sa.Column("last_offset", sa.Integer(), nullable=True)]}


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
