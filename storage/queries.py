"""Reads shared by checks, corrections and status: windows of traffic as DataFrames."""

from __future__ import annotations

from datetime import datetime

import msgspec
import numpy as np
import pandas as pd
from sqlalchemy import Engine, LargeBinary, Text, cast, func, select

from storage.core import table_of
from storage.features_frame import features_frame
from storage.tables import Prediction

COLUMNS = ["seq", "prediction_id", "model_version", "ts", "prediction", "label", "groups"]
_DECODE = msgspec.json.Decoder()


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
    The JSON columns are read as text and decoded a whole column at a time
    (`storage.features_frame`), SQLite's timestamp text parsed as one column: at 1M rows
    the per-row decoding through SQLAlchemy took ~30 s (bench/window_read.py).
    """
    t = table_of(Prediction).c
    sqlite = engine.dialect.name == "sqlite"
    # both as UTC wall-time text, parsed below in one call (read through sqlmodel's
    # UTCDateTime, each row would be converted in Python): SQLite stores that text,
    # PostgreSQL formats it from its timestamptz, whatever the session's zone
    ts = (
        cast(t.ts, Text)
        if sqlite
        else func.to_char(func.timezone("UTC", t.ts), "YYYY-MM-DD HH24:MI:SS.US")
    )
    query = select(
        t.seq,
        t.prediction_id,
        t.model_version,
        ts,
        t.prediction,
        t.label,
        cast(t.groups, Text),
        # SQLite hands the stored JSON over as bytes without decoding it; Arrow reads bytes
        cast(t.features, LargeBinary if sqlite else Text),
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
        # the driver's tuples: no column here has a result processor (all are cast or plain),
        # and a SQLAlchemy Row per row cost ~0.4 s per 200k rows
        fetched = conn.execute(query).cursor.fetchall()
    if not fetched:
        return pd.DataFrame(columns=COLUMNS)
    rows = np.array(fetched, dtype=object)[::-1]
    del fetched  # the tuples; the array holds their values
    return _frame(rows)


def _frame(rows: np.ndarray) -> pd.DataFrame:
    """`rows`: (n, 8) object array, oldest first, in the select's column order."""
    texts = rows[:, 7].tolist()
    rows[:, 7] = None  # the texts now live in `texts` only, which features_frame empties
    seq, pid, version, ts, prediction, label, groups = rows[:, :7].T
    base = pd.DataFrame(
        {
            "seq": pd.Series(seq.astype("int64")),
            "prediction_id": pd.Series(pid, dtype=object),
            "model_version": pd.Series(version, dtype=object),
            "ts": pd.to_datetime(pd.Series(ts, dtype=object), format="ISO8601", utc=True),
            "prediction": pd.Series(prediction, dtype=object),
            "label": pd.Series(label, dtype=object),
            "groups": pd.Series(
                [None if g is None else _DECODE.decode(g) for g in groups], dtype=object
            ),
        }
    )
    return pd.concat([base, features_frame(texts)], axis=1, copy=False)
