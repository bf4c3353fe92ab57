"""The window read (text columns decoded a column at a time) gives the frame the per-row read
gave, on both stores, for the shapes features take: missing keys, nulls, booleans, mixed
numbers, nested values, text that COPY and JSON must escape."""

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from sqlalchemy import Engine, select

from storage.core import table_of
from storage.db import make_engine
from storage.features_frame import features_frame
from storage.intake import write_batch
from storage.queries import COLUMNS, recent_window
from storage.tables import Prediction

START = datetime(2026, 11, 25, 12, tzinfo=UTC)


def per_row_read(engine: Engine, model: str, size: int) -> pd.DataFrame:
    """The previous read: SQLAlchemy decodes each row, pandas builds from one dict per row."""
    t = table_of(Prediction).c
    query = (
        select(t.seq, t.prediction_id, t.model_version, t.ts, t.prediction, t.label, t.groups)
        .add_columns(t.features)
        .where(t.model == model)
        .order_by(t.seq.desc())
        .limit(size)
    )
    with engine.connect() as conn:
        rows = conn.execute(query).all()[::-1]
    base = pd.DataFrame([r[:-1] for r in rows], columns=COLUMNS)
    return pd.concat([base, pd.DataFrame.from_records([r[-1] for r in rows])], axis=1)


def stored(engine: Engine, features: list[dict], model: str = "m", **extra) -> None:
    rows = [
        {
            "prediction_id": f"{model}-{i}",
            "model": model,
            "model_version": "v1",
            "ts": START + timedelta(seconds=i, microseconds=7),
            "features": f,
            "prediction": str(i % 2),
            "scores": [0.4, 0.6] if i % 2 else None,
            "groups": {"sex": "FM"[i % 2]} if i % 3 else None,
            "label": str(i % 2) if i % 4 == 0 else None,
            "labelled_at": START if i % 4 == 0 else None,
            **extra,
        }
        for i, f in enumerate(features)
    ]
    write_batch(engine, rows, [], [])


def assert_same_read(engine: Engine, model: str = "m", size: int = 1000) -> pd.DataFrame:
    frame = recent_window(engine, model, size)
    pd.testing.assert_frame_equal(frame, per_row_read(engine, model, size), check_exact=True)
    return frame


def test_numeric_and_categorical_columns_keep_types(db_url):
    engine = make_engine(db_url)
    stored(engine, [{"a": i / 3, "n": i, "c": "xyz"[i % 3], "b": i % 2 == 0} for i in range(40)])
    frame = assert_same_read(engine)
    assert frame["a"].dtype == "float64" and frame["n"].dtype == "int64"
    assert frame["b"].dtype == "bool" and frame["c"].tolist()[:3] == ["x", "y", "z"]
    assert frame["ts"].iloc[1] == pd.Timestamp(START + timedelta(seconds=1, microseconds=7))
    assert frame["seq"].is_monotonic_increasing and frame["groups"].iloc[1] == {"sex": "M"}


def test_missing_values_as_pandas_gives_them(db_url):
    """Absent keys and nulls: NaN in numbers, NaN (absent) vs None (null) in strings."""
    engine = make_engine(db_url)
    features = [
        {"a": 1.5, "n": 1, "c": "x"},
        {"a": None, "c": None},
        {"n": 3, "extra": 2.0},
        {"a": 2, "n": 4.5, "c": "y"},
    ]
    stored(engine, features)
    frame = assert_same_read(engine)
    assert frame["n"].dtype == "float64" and frame["a"].isna().tolist() == [
        False,
        True,
        True,
        False,
    ]
    assert frame["c"].iloc[1] is None and pd.isna(frame["c"].iloc[2])
    assert list(frame.columns[len(COLUMNS) :]) == ["a", "n", "c", "extra"]


def test_nested_mixed_and_escaped_values(db_url):
    engine = make_engine(db_url)
    features = [
        {"v": [1, 2], "o": {"k": 1}, "mixed": 1, "s": 'tab\there "q" back\\slash\nnl é'},
        {"v": [], "o": {}, "mixed": "one", "s": "\u2603 \r end"},
    ]
    stored(engine, features)
    frame = assert_same_read(engine)
    assert frame["s"].tolist() == [f["s"] for f in features]
    assert frame["v"].iloc[0] == [1, 2] and frame["mixed"].tolist() == [1, "one"]


def test_window_bounds_and_other_models(db_url):
    engine = make_engine(db_url)
    stored(engine, [{"a": float(i)} for i in range(30)])
    stored(engine, [{"a": -1.0} for _ in range(5)], model="other")
    frame = assert_same_read(engine, size=10)
    assert frame["a"].tolist() == [float(i) for i in range(20, 30)]
    assert recent_window(engine, "nobody", 10).columns.tolist() == COLUMNS
    labelled = recent_window(engine, "m", 100, labelled_only=True)
    assert labelled["label"].notna().all() and len(labelled) == 8


def test_features_frame_agrees_with_pandas_on_any_text():
    """Both paths (Arrow's and the dicts') against pandas' own frame."""
    cases = [
        ['{"a":1,"b":"x"}', '{"a":2.5,"b":"y"}'],
        ['{"a":1}', '{"b":true}'],  # a boolean with a gap: the dicts' path
        ['{"a":1e3,"t":"2026-01-01T00:00:00"}', '{"a":-0.0,"t":"2026-01-02T00:00:00"}'],
        ['{"a":9007199254740993}', '{"a":1}'],
        ['{"x":{"y":[1,{"z":null}]}}', '{"x":null}'],
        ["{}", "{}"],
        ['{\n"a": 1}', '{"a": 2}'],  # a line break inside a row's JSON
    ]
    import json

    for texts in cases:
        expected = pd.DataFrame.from_records([json.loads(t) for t in texts])
        pd.testing.assert_frame_equal(features_frame(list(texts)), expected, check_exact=True)
        as_bytes = [t.encode() for t in texts]  # what SQLite hands over
        pd.testing.assert_frame_equal(features_frame(as_bytes), expected, check_exact=True)


@pytest.mark.parametrize("rows", [3000])
def test_a_larger_window_equal_to_the_per_row_read(db_url, rows):
    engine = make_engine(db_url)
    stored(
        engine,
        [
            {f"f{j}": (i * 7 + j) % 13 / 7 for j in range(20)} | {"p": "ab"[i % 2]}
            for i in range(rows)
        ],
    )
    assert_same_read(engine, size=rows - 100)


def test_instants_whatever_the_session_zone(db_url):
    if db_url.startswith("postgresql"):
        db_url += "%20-cTimeZone%3DAsia/Kolkata"
    engine = make_engine(db_url)
    stored(engine, [{"a": 1.0}, {"a": 2.0}])
    frame = assert_same_read(engine)
    assert str(frame["ts"].dtype) == "datetime64[ns, UTC]"
    assert frame["ts"].iloc[0] == pd.Timestamp(START + timedelta(microseconds=7))
