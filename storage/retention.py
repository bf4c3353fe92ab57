"""Data retention: drop old predictions, dead letters and parked labels in short batches.

Each batch is its own transaction, so intake (one transaction per consumer batch) waits for
one batch at most, never for a whole prune; SQLite has a single writer, so this matters there.

Never deleted: predictions in the seq window of any incident of their model (whatever its
status: its report and figures still describe those rows), in a window that a candidate's
`training` summary names under `window_start_seq` / `window_end_seq`, and, when a registry is
given, in the window that a registered version's card names as its drift baseline
(`baseline.drift_reference` of kind `window`, written by correctors.pipeline). That card
window is where a candidate's training window really lives today, and detection re-reads
those rows whenever the version serves, so callers should pass the registry. Check runs
protect nothing: they are history only.

Reference data sets live in files next to the model definitions, not in the database, so
retention has nothing to do for them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Engine, and_, delete, func, or_, select
from sqlalchemy.sql import ColumnElement

from storage.core import table_of
from storage.registry import ModelRegistry, RegistryError
from storage.tables import Candidate, DeadLetter, Incident, PendingLabel, Prediction, utcnow

PREDICTIONS = table_of(Prediction)
PENDING = table_of(PendingLabel)
DEAD = table_of(DeadLetter)
INCIDENTS = table_of(Incident)
CANDIDATES = table_of(Candidate)


class RetentionConfig(BaseModel):
    """How much traffic to keep; None means no limit of that kind."""

    model_config = ConfigDict(extra="forbid")

    max_age_days: float | None = Field(default=None, gt=0)
    max_rows_per_model: int | None = Field(default=None, gt=0)
    batch_size: int = Field(default=5000, gt=0)
    interval_minutes: float = Field(default=60, gt=0)


@dataclass
class PruneResult:
    """What one prune did; `kept_protected` counts expired predictions kept for a reference."""

    predictions_deleted: int = 0
    dead_letters_deleted: int = 0
    pending_labels_deleted: int = 0
    kept_protected: int = 0


def prune(
    engine: Engine,
    *,
    max_age_days: float | None,
    max_rows: int | None,
    batch_size: int = 5000,
    now: datetime | None = None,
    registry: ModelRegistry | None = None,
) -> PruneResult:
    """Delete expired rows in batches of `batch_size`, keeping every protected prediction.

    A prediction expires when it was ingested more than `max_age_days` before `now`, or when
    it is not among its model's newest `max_rows` (by seq). Dead letters and parked labels
    expire by age only.
    """
    for name, value in (("max_age_days", max_age_days), ("max_rows", max_rows)):
        if value is not None and value <= 0:
            raise ValueError(f"{name} must be positive, got {value}")
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    result = PruneResult()
    cutoff = _cutoff(now, max_age_days)
    p = PREDICTIONS.alias("p")  # the DELETE's own table must not swallow the subquery's FROM
    expired = _expired(engine, p, cutoff, max_rows)
    if expired is not None:
        protected = _protected(p, _card_windows(engine, registry))
        result.predictions_deleted = _delete_predictions(
            engine, p, and_(expired, ~protected), batch_size
        )
        with engine.connect() as conn:
            count = select(func.count()).select_from(p).where(expired, protected)
            result.kept_protected = conn.execute(count).scalar_one()
    if cutoff is not None:
        result.dead_letters_deleted = _delete_by_key(
            engine, DEAD.c.id, DEAD.c.received_at < cutoff, batch_size
        )
        result.pending_labels_deleted = _delete_by_key(
            engine, PENDING.c.prediction_id, PENDING.c.received_at < cutoff, batch_size
        )
    return result


def _cutoff(now: datetime | None, max_age_days: float | None) -> datetime | None:
    """Aware UTC, a naive `now` read as UTC: the columns refuse naive values (sqlmodel's
    UTCDateTime) and SQLite compares their UTC wall-clock text, so the bind must be UTC too."""
    if max_age_days is None:
        return None
    now = now or utcnow()
    now = now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)
    return now - timedelta(days=max_age_days)


def _expired(engine: Engine, p, cutoff: datetime | None, max_rows: int | None):
    """Too old, or older than the newest `max_rows` of its model (cut-offs fixed up front)."""
    clauses: list[ColumnElement[bool]] = []
    if cutoff is not None:
        clauses.append(p.c.ingested_at < cutoff)
    if max_rows is not None:
        t = PREDICTIONS.c
        with engine.connect() as conn:
            crowded = select(t.model).group_by(t.model).having(func.count() > max_rows)
            for model in conn.execute(crowded).scalars().all():
                newest_dropped = conn.execute(
                    select(t.seq)
                    .where(t.model == model)
                    .order_by(t.seq.desc())
                    .offset(max_rows)
                    .limit(1)
                ).scalar_one_or_none()
                if newest_dropped is not None:
                    clauses.append(and_(p.c.model == model, p.c.seq <= newest_dropped))
    return or_(*clauses) if clauses else None


def _protected(p, windows: list[tuple[str, int, int]]) -> ColumnElement[bool]:
    """In an incident's or a candidate's window (checked per statement), or a card window."""
    inc, cand = INCIDENTS.c, CANDIDATES.c
    start = cand.training["window_start_seq"].as_integer()
    end = cand.training["window_end_seq"].as_integer()
    return or_(
        select(inc.id)
        .where(inc.model == p.c.model, p.c.seq.between(inc.window_start_seq, inc.window_end_seq))
        .exists(),
        select(cand.id).where(cand.model == p.c.model, p.c.seq.between(start, end)).exists(),
        *(and_(p.c.model == m, p.c.seq.between(lo, hi)) for m, lo, hi in windows),
    )


def _card_windows(engine: Engine, registry: ModelRegistry | None) -> list[tuple[str, int, int]]:
    """Seq windows that registered versions use as drift baseline; unreadable cards raise."""
    if registry is None:
        return []
    with engine.connect() as conn:
        models = conn.execute(select(CANDIDATES.c.model).distinct()).scalars().all()
    windows: list[tuple[str, int, int]] = []
    for model in models:
        try:
            versions = registry.versions(model)
        except RegistryError:  # a name the registry refuses has no versions on disk
            continue
        for version in versions:
            spec = registry.card(model, version).get("baseline", {}).get("drift_reference", {})
            if spec.get("kind") == "window":
                windows.append((model, int(spec["start_seq"]), int(spec["end_seq"])))
    return windows


def _delete_predictions(engine: Engine, p, condition, batch_size: int) -> int:
    """Oldest first; each batch starts after the last, so kept rows are not rescanned."""
    deleted, after = 0, None
    while True:
        pick = select(p.c.seq).where(condition)
        if after is not None:
            pick = pick.where(p.c.seq > after)
        pick = pick.order_by(p.c.seq).limit(batch_size)
        stmt = delete(PREDICTIONS).where(PREDICTIONS.c.seq.in_(pick)).returning(PREDICTIONS.c.seq)
        with engine.begin() as conn:
            seqs = conn.execute(stmt).scalars().all()
        deleted += len(seqs)
        if len(seqs) < batch_size:
            return deleted
        after = max(seqs)


def _delete_by_key(engine: Engine, key, condition, batch_size: int) -> int:
    """Batches of `DELETE ... WHERE key IN (SELECT key ... LIMIT n)` for unprotected tables."""
    table, deleted = key.table, 0
    while True:
        pick = select(key).where(condition).limit(batch_size).correlate(None)
        with engine.begin() as conn:
            count = conn.execute(delete(table).where(key.in_(pick))).rowcount
        deleted += count
        if count < batch_size:
            return deleted
