"""SQLModel tables. Every arrow of the loop leaves a row here, so any version can be traced."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column, Index, Text
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    """Timezone-aware UTC: sqlmodel refuses naive datetimes, and logs come from many zones."""
    return datetime.now(UTC)


class CandidateStatus(StrEnum):
    """Where a candidate stands: `training → validated | rejected | failed → awaiting_approval →
    active → retired`, `rolled_back` from active, `withdrawn` from training, validated or
    awaiting_approval when the incident it was made for resolved by itself. The values are the
    strings stored in `candidates.status`, so rows written before the enum read back unchanged."""

    TRAINING = "training"
    VALIDATED = "validated"
    REJECTED = "rejected"
    FAILED = "failed"
    AWAITING_APPROVAL = "awaiting_approval"
    ACTIVE = "active"
    RETIRED = "retired"
    ROLLED_BACK = "rolled_back"
    WITHDRAWN = "withdrawn"


class Prediction(SQLModel, table=True):
    """One logged prediction; the label is attached when it arrives (possibly hours later)."""

    __tablename__ = "predictions"
    __table_args__ = (Index("ix_predictions_model_seq", "model", "seq"),)

    seq: int | None = Field(default=None, primary_key=True)
    prediction_id: str = Field(max_length=128, unique=True)
    model: str = Field(max_length=128)
    model_version: str = Field(max_length=128)
    ts: datetime
    ingested_at: datetime = Field(default_factory=utcnow)
    features: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    prediction: str = Field(max_length=256)
    scores: list[float] | None = Field(default=None, sa_column=Column(JSON))
    groups: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    label: str | None = Field(default=None, max_length=256)
    labelled_at: datetime | None = None


class PendingLabel(SQLModel, table=True):
    """A label whose prediction has not been stored yet; applied when the prediction arrives."""

    __tablename__ = "pending_labels"

    prediction_id: str = Field(max_length=128, primary_key=True)
    label: str = Field(max_length=256)
    received_at: datetime = Field(default_factory=utcnow)


class DeadLetter(SQLModel, table=True):
    """A message that could not be stored as data, with where it came from and why.

    `fingerprint` (its Kafka coordinates + payload hash) makes redelivery harmless here too.
    A record batch the Kafka client could not decode at all is one row for its whole offset
    range, `offset`..`last_offset` (None for a single message): it counts its offsets."""

    __tablename__ = "dead_letters"

    id: int | None = Field(default=None, primary_key=True)
    fingerprint: str = Field(max_length=64, unique=True)
    topic: str = Field(max_length=256)
    partition: int
    offset: int
    last_offset: int | None = None
    reason: str = Field(sa_column=Column(Text, nullable=False))
    payload: str = Field(sa_column=Column(Text, nullable=False))
    received_at: datetime = Field(default_factory=utcnow)


class CheckRun(SQLModel, table=True):
    """One scheduled check over a window of traffic, with its figures and verdict."""

    __tablename__ = "check_runs"

    id: int | None = Field(default=None, primary_key=True)
    model: str = Field(max_length=128, index=True)
    model_version: str = Field(max_length=128)
    kind: str = Field(max_length=32)
    window_start_seq: int | None = None
    window_end_seq: int | None = None
    window_start_ts: datetime | None = None
    window_end_ts: datetime | None = None
    rows: int = 0
    labelled_rows: int = 0
    passed: bool
    skipped_reason: str | None = None
    figures: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    report_path: str | None = None
    duration_s: float = 0.0
    created_at: datetime = Field(default_factory=utcnow)


class Incident(SQLModel, table=True):
    """A failed check that needs attention (kind drift | error | bias)."""

    __tablename__ = "incidents"

    id: int | None = Field(default=None, primary_key=True)
    model: str = Field(max_length=128, index=True)
    model_version: str = Field(max_length=128)
    kind: str = Field(max_length=32)
    severity: str = Field(max_length=16)
    status: str = Field(default="open", max_length=16)
    summary: str = Field(sa_column=Column(Text, nullable=False))
    figures: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    check_run_id: int | None = None
    window_start_seq: int | None = None
    window_end_seq: int | None = None
    report_path: str | None = None
    candidate_id: str | None = Field(default=None, max_length=160)
    clean_checks: int = 0
    flagged_ids: list[str] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False, default=list)
    )  # the samples a correction should target (capped by checks.max_flagged_ids)
    reopened: int = 0  # times it failed again within the cooldown after resolving
    correction_attempts: int = 0  # corrections whose training worker failed (retried)
    correction_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    alerted_at: datetime | None = None
    opened_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    resolved_at: datetime | None = None


class Candidate(SQLModel, table=True):
    """A fine-tuned model version, from training through validation to serving (or not)."""

    __tablename__ = "candidates"

    id: str = Field(max_length=160, primary_key=True)
    model: str = Field(max_length=128, index=True)
    version: str = Field(max_length=128)
    parent_version: str = Field(max_length=128)
    incident_id: int | None = None
    status: str = Field(default=CandidateStatus.TRAINING.value, max_length=32)  # CandidateStatus
    training: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    champion_metrics: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column(JSON, nullable=False)
    )
    candidate_metrics: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column(JSON, nullable=False)
    )
    verdict: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    onnx_path: str | None = None
    onnx_sha256: str | None = None
    watch_checks_left: int = 0  # judged quality checks still to watch after going live
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class Event(SQLModel, table=True):
    """Append-only audit log of every state change, with who caused it."""

    __tablename__ = "events"

    id: int | None = Field(default=None, primary_key=True)
    ts: datetime = Field(default_factory=utcnow, index=True)
    model: str | None = Field(default=None, max_length=128)
    kind: str = Field(max_length=64)
    actor: str = Field(max_length=32)
    subject: str | None = Field(default=None, max_length=160)
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class Lease(SQLModel, table=True):
    """Who runs a model's checks and corrections (or retention) now. Several daemons share one
    database; a lease row, renewed by its holder and taken over when it expires, makes sure
    exactly one of them acts at a time without a home-made consensus."""

    __tablename__ = "leases"

    name: str = Field(max_length=160, primary_key=True)
    holder: str = Field(max_length=200)
    acquired_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime


class DaemonHeartbeat(SQLModel, table=True):
    """Each running daemon's intake state, written every few seconds, for `warden status`."""

    __tablename__ = "daemons"

    id: str = Field(max_length=200, primary_key=True)
    host: str = Field(max_length=200)
    pid: int
    started_at: datetime = Field(default_factory=utcnow)
    heartbeat_at: datetime = Field(default_factory=utcnow)
    state: str = Field(default="starting", sa_column=Column(Text, nullable=False))
    consumed: int = 0
    predictions: int = 0
    labels: int = 0
    dead_letters: int = 0
    lag: int | None = None
    partitions: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    leases: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
