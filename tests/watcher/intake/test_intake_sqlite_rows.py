"""The SQLite intake path writes its rows itself (multi-row INSERT, values pre-formatted, for
speed: see storage/intake.py). What it writes must be exactly what SQLAlchemy's own types
would have written, and read back the same through the models."""

from __future__ import annotations

import sqlite3

from sqlmodel import Session, select

from storage.db import make_engine
from storage.intake import PREDICTIONS, _sqlite_chunk_sizes, write_batch
from storage.tables import Prediction, utcnow
from watcher.kafka.wire import encode, parse_prediction

MESSAGES = [
    {
        "prediction_id": 'a\\"q',
        "model": "m\n😀",
        "model_version": "v",
        "ts": "2026-01-01T10:00:00.5+02:00",
        "features": {"x": 1.5, "s": "é\t\u0001", "n": None, "b": True, "big": 12345678901234567890},
        "prediction": 1,
    },
    {
        "prediction_id": "b",
        "model": "m",
        "model_version": "v",
        "ts": "0001-01-01T00:00:00Z",
        "features": {"x": 1},
        "prediction": "y",
        "scores": [0.1, 0.9],
        "groups": {"g": "F", "a": 3},
        "label": 1.0,
    },
    {
        "prediction_id": "c",
        "model": "m",
        "model_version": "v",
        "ts": "9999-12-31T23:59:59.999999",
        "features": {"big": 1.7976931348623157e308, "tiny": -5e-324, "neg0": -0.0},
        "prediction": 2.5,
        "label": "01",
    },
]
RAW = (
    "SELECT prediction_id, model, model_version, ts, features, prediction, scores, groups, "
    "label, typeof(label), typeof(scores), length(labelled_at), length(ingested_at) "
    "FROM predictions ORDER BY prediction_id"
)


def test_the_fast_path_writes_what_sqlalchemy_writes(tmp_path):
    rows = [parse_prediction(encode(m), 1_000_000) for m in MESSAGES]
    fast, core = tmp_path / "fast.db", tmp_path / "core.db"
    engine = make_engine(f"sqlite:///{fast}")
    assert write_batch(engine, rows, [], []).predictions == 3
    assert write_batch(engine, rows, [], []).predictions == 0  # redelivery changes nothing
    reference = make_engine(f"sqlite:///{core}")
    with reference.begin() as conn:
        conn.execute(PREDICTIONS.insert(), [{**r, "ingested_at": utcnow()} for r in rows])
    assert list(sqlite3.connect(fast).execute(RAW)) == list(sqlite3.connect(core).execute(RAW))
    with Session(engine) as a, Session(reference) as b:
        mine = [
            p.model_dump(exclude={"ingested_at", "labelled_at", "seq"})
            for p in a.exec(select(Prediction))
        ]
        theirs = [
            p.model_dump(exclude={"ingested_at", "labelled_at", "seq"})
            for p in b.exec(select(Prediction))
        ]
    assert mine == theirs and mine[1]["ts"].tzinfo is not None


def test_big_batches_are_split_into_a_few_statement_shapes(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'w.db'}")
    base = parse_prediction(encode(MESSAGES[1]), 1_000_000)
    rows = [{**base, "prediction_id": f"p-{i}"} for i in range(5003)]
    assert write_batch(engine, rows, [], []).predictions == 5003
    assert sum(_sqlite_chunk_sizes(5003)) == 5003 and len(set(_sqlite_chunk_sizes(5003))) <= 12
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM predictions").scalar_one() == 5003
