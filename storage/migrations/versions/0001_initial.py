"""initial: the schema as it was at commit 0ca2bfa (before migrations existed)

Revision ID: 0001
Revises:
Create Date: 2025-01-01

The tables are described once, by `schema()`, which `storage.migrate` also reads to recognise a
database that `SQLModel.metadata.create_all` made before migrations existed.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _ts(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def schema() -> sa.MetaData:
    """The nine tables of 0ca2bfa, exactly as `create_all` made them then (fresh objects)."""
    md = sa.MetaData()
    sa.Table(
        "predictions",
        md,
        sa.Column("seq", sa.Integer(), primary_key=True, nullable=False),
        sa.Column("prediction_id", sa.String(128), nullable=False, unique=True),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("model_version", sa.String(128), nullable=False),
        _ts("ts"),
        _ts("ingested_at"),
        sa.Column("features", sa.JSON(), nullable=False),
        sa.Column("prediction", sa.String(256), nullable=False),
        sa.Column("scores", sa.JSON(), nullable=True),
        sa.Column("groups", sa.JSON(), nullable=True),
        sa.Column("label", sa.String(256), nullable=True),
        _ts("labelled_at", nullable=True),
        sa.Index("ix_predictions_model_seq", "model", "seq"),
    )
    sa.Table(
        "pending_labels",
        md,
        sa.Column("prediction_id", sa.String(128), primary_key=True, nullable=False),
        sa.Column("label", sa.String(256), nullable=False),
        _ts("received_at"),
    )
    sa.Table(
        "dead_letters",
        md,
        sa.Column("id", sa.Integer(), primary_key=True, nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False, unique=True),
        sa.Column("topic", sa.String(256), nullable=False),
        sa.Column("partition", sa.Integer(), nullable=False),
        sa.Column("offset", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        _ts("received_at"),
    )
    sa.Table(
        "check_runs",
        md,
        sa.Column("id", sa.Integer(), primary_key=True, nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("model_version", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("window_start_seq", sa.Integer(), nullable=True),
        sa.Column("window_end_seq", sa.Integer(), nullable=True),
        _ts("window_start_ts", nullable=True),
        _ts("window_end_ts", nullable=True),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("labelled_rows", sa.Integer(), nullable=False),
        sa.Column("passed", sa.Boolean(), nullable=False),
        sa.Column("skipped_reason", sa.String(), nullable=True),
        sa.Column("figures", sa.JSON(), nullable=False),
        sa.Column("report_path", sa.String(), nullable=True),
        sa.Column("duration_s", sa.Float(), nullable=False),
        _ts("created_at"),
        sa.Index("ix_check_runs_model", "model"),
    )
    sa.Table(
        "incidents",
        md,
        sa.Column("id", sa.Integer(), primary_key=True, nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("model_version", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("figures", sa.JSON(), nullable=False),
        sa.Column("check_run_id", sa.Integer(), nullable=True),
        sa.Column("window_start_seq", sa.Integer(), nullable=True),
        sa.Column("window_end_seq", sa.Integer(), nullable=True),
        sa.Column("report_path", sa.String(), nullable=True),
        sa.Column("candidate_id", sa.String(160), nullable=True),
        sa.Column("clean_checks", sa.Integer(), nullable=False),
        _ts("opened_at"),
        _ts("updated_at"),
        _ts("resolved_at", nullable=True),
        sa.Index("ix_incidents_model", "model"),
    )
    sa.Table(
        "candidates",
        md,
        sa.Column("id", sa.String(160), primary_key=True, nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("version", sa.String(128), nullable=False),
        sa.Column("parent_version", sa.String(128), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("training", sa.JSON(), nullable=False),
        sa.Column("champion_metrics", sa.JSON(), nullable=False),
        sa.Column("candidate_metrics", sa.JSON(), nullable=False),
        sa.Column("verdict", sa.JSON(), nullable=False),
        sa.Column("onnx_path", sa.String(), nullable=True),
        sa.Column("onnx_sha256", sa.String(), nullable=True),
        _ts("created_at"),
        _ts("updated_at"),
        sa.Index("ix_candidates_model", "model"),
    )
    sa.Table(
        "events",
        md,
        sa.Column("id", sa.Integer(), primary_key=True, nullable=False),
        _ts("ts"),
        sa.Column("model", sa.String(128), nullable=True),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("actor", sa.String(32), nullable=False),
        sa.Column("subject", sa.String(160), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Index("ix_events_ts", "ts"),
    )
    sa.Table(
        "leases",
        md,
        sa.Column("name", sa.String(160), primary_key=True, nullable=False),
        sa.Column("holder", sa.String(200), nullable=False),
        _ts("acquired_at"),
        _ts("expires_at"),
    )
    sa.Table(
        "daemons",
        md,
        sa.Column("id", sa.String(200), primary_key=True, nullable=False),
        sa.Column("host", sa.String(200), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        _ts("started_at"),
        _ts("heartbeat_at"),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("consumed", sa.Integer(), nullable=False),
        sa.Column("predictions", sa.Integer(), nullable=False),
        sa.Column("labels", sa.Integer(), nullable=False),
        sa.Column("dead_letters", sa.Integer(), nullable=False),
        sa.Column("lag", sa.Integer(), nullable=True),
        sa.Column("partitions", sa.JSON(), nullable=False),
        sa.Column("leases", sa.JSON(), nullable=False),
    )
    return md


def upgrade() -> None:
    for table in schema().sorted_tables:
        # fresh copies: a column belongs to one table (they carry primary_key and unique)
        op.create_table(table.name, *(column._copy() for column in table.columns))
        for index in table.indexes:
            op.create_index(index.name, table.name, [c.name for c in index.columns])


def downgrade() -> None:
    for table in reversed(schema().sorted_tables):
        op.drop_table(table.name)
