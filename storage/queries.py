"""Reads shared by checks, corrections and status: windows of traffic as DataFrames."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
from sqlalchemy import Engine, select

from storage.core import table_of
from storage.tables import Prediction

COLUMNS = ["seq", "prediction_id", "model_version", "ts", "prediction", "label", "groups"]


def recent_window(
    engine: Engine,
    model: str,
    size: int,
    *,
    version: str | None = None,
    labelled_only: bool = False,
    start_seq: int | None = None,
    end_seq: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> pd.DataFrame:
    """The last `size` predictions of a model (optionally one version / a seq range), oldest first.

    Features are flattened into columns; `label` is None where no label has arrived yet.
    """
    t = table_of(Prediction).c
    query = select(
        t.seq, t.prediction_id, t.model_version, t.ts, t.prediction, t.label, t.groups, t.features
    ).where(t.model == model)
    if version is not None:
        query = query.where(t.model_version == version)
    if labelled_only:
        query = query.where(t.label.is_not(None))
    if start_seq is not None:
        query = query.where(t.seq >= start_seq)
    if end_seq is not None:
        query = query.where(t.seq <= end_seq)
    if since is not None:
        query = query.where(t.ts >= since)
    if until is not None:
        query = query.where(t.ts < until)
    query = query.order_by(t.seq.desc()).limit(size)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    if not rows:
        return pd.DataFrame(columns=COLUMNS)
    rows = rows[::-1]
    base = pd.DataFrame([r[:-1] for r in rows], columns=COLUMNS)
    features = pd.DataFrame.from_records([r[-1] for r in rows])
    return pd.concat([base, features], axis=1)
