"""Window read: the last N predictions of a model, from the store into the checks' frame,
on SQLite and PostgreSQL, against the previous read (SQLAlchemy rows, a dict per row) in the
same run; the two frames are compared, so a faster read that changed the frame fails here.

    python bench/window_read.py [--sizes 50000 200000 1000000] [--pg URL|none] [--repeat 3]
                                [--db PATH]  (a SQLite file kept between runs)

The store holds max(sizes) predictions of one model (20 numeric + 2 categorical features,
~390-byte JSON, a third labelled, groups on half) and 10 % of another model's, interleaved.
Prints a table (median of --repeat) and lines `window read <store> N rows: S s (previous P s)`.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from sqlalchemy import Engine, func, select  # noqa: E402

from storage.core import table_of  # noqa: E402
from storage.db import make_engine  # noqa: E402
from storage.intake import write_batch  # noqa: E402
from storage.queries import COLUMNS, recent_window  # noqa: E402
from storage.tables import Prediction  # noqa: E402

console = Console()
MODEL = "bench"


def previous_read(engine: Engine, model: str, size: int) -> pd.DataFrame:
    """The read as it was before: SQLAlchemy rows, then a DataFrame from one dict per row."""
    t = table_of(Prediction).c
    query = (
        select(t.seq, t.prediction_id, t.model_version, t.ts, t.prediction, t.label, t.groups)
        .add_columns(t.features)
        .where(t.model == model)
        .order_by(t.seq.desc())
        .limit(size)
    )
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    rows = rows[::-1]
    base = pd.DataFrame([r[:-1] for r in rows], columns=COLUMNS)
    features = pd.DataFrame.from_records([r[-1] for r in rows])
    return pd.concat([base, features], axis=1)


def rows(n: int, rng: random.Random) -> list[dict]:
    start = datetime(2026, 11, 25, tzinfo=UTC)
    out = []
    for i in range(n):
        model = MODEL if i % 10 else "other"
        features = {f"f{j}": round(rng.gauss(0, 1), 2) for j in range(20)}
        features["plan"] = rng.choice(["basic", "pro", "team"])
        features["region"] = rng.choice(["eu", "us", "apac"])
        out.append(
            {
                "prediction_id": f"{i:012x}",
                "model": model,
                "model_version": "v2" if i > n // 2 else "v1",
                "ts": start + timedelta(milliseconds=i),
                "features": features,
                "prediction": str(rng.randint(0, 1)),
                "scores": [0.3, 0.7],
                "groups": {"sex": rng.choice("FM")} if i % 2 else None,
                "label": str(rng.randint(0, 1)) if i % 3 == 0 else None,
                "labelled_at": start if i % 3 == 0 else None,
            }
        )
    return out


def fill(engine: Engine, n: int) -> None:
    """Enough rows that the model holds n; nothing written when they are already there."""
    t = table_of(Prediction).c
    with engine.connect() as conn:
        have = conn.execute(select(func.count()).where(t.model == MODEL)).scalar_one()
    if have >= n:
        return
    rng = random.Random(11)
    total = n * 10 // 9 + 1
    started = time.perf_counter()
    for first in range(0, total, 20_000):
        batch = rows(min(20_000, total - first), rng)
        for i, r in enumerate(batch):
            r["prediction_id"] = f"{first + i:012x}"
        write_batch(engine, batch, [], [])
    with engine.begin() as conn:  # planner statistics, as autovacuum would gather them
        conn.exec_driver_sql("ANALYZE")
    console.print(f"filled {total:,} rows in {time.perf_counter() - started:.0f} s")


def timed(fn, *args) -> tuple[float, pd.DataFrame]:
    started = time.perf_counter()
    frame = fn(*args)
    return time.perf_counter() - started, frame


def measure(name: str, engine: Engine, sizes: list[int], repeat: int) -> list[tuple]:
    fill(engine, max(sizes))
    results = []
    for size in sizes:
        new, old = [], []
        for _ in range(repeat):  # interleaved, so a busy moment hits both alike
            seconds, fresh = timed(recent_window, engine, MODEL, size)
            new.append(seconds)
            seconds, before = timed(previous_read, engine, MODEL, size)
            old.append(seconds)
        pd.testing.assert_frame_equal(fresh, before)
        results.append((name, size, statistics.median(new), statistics.median(old)))
        print(
            f"window read {name} {size} rows: {results[-1][2]:.2f} s "
            f"(previous {results[-1][3]:.2f} s)",
            flush=True,
        )
    return results


def pg_url(base: str) -> str | None:
    import sqlalchemy as sa

    schema = f"bench_{uuid.uuid4().hex[:8]}"
    try:
        engine = sa.create_engine(base, connect_args={"connect_timeout": 3})
        with engine.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        engine.dispose()
    except Exception as exc:  # noqa: BLE001
        console.print(f"[yellow]PostgreSQL skipped: {exc}")
        return None
    return f"{base}?options=-csearch_path%3D{schema}"


def drop_schema(base: str, url: str) -> None:
    import sqlalchemy as sa

    schema = url.rsplit("%3D", 1)[-1]
    engine = sa.create_engine(base)
    with engine.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[50_000, 200_000, 1_000_000])
    parser.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--db", help="SQLite file to keep between runs")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        path = args.db or f"{tmp}/window.db"
        engine = make_engine(f"sqlite:///{path}")
        results += measure("SQLite", engine, args.sizes, args.repeat)
        engine.dispose()
    url = pg_url(args.pg) if args.pg != "none" else None
    if url is not None:
        try:
            engine = make_engine(url)
            results += measure("PostgreSQL", engine, args.sizes, args.repeat)
            engine.dispose()
        finally:
            drop_schema(args.pg, url)
    table = Table(title=f"window read, 22 feature columns, median of {args.repeat}")
    for column in ("store", "rows", "read (s)", "previous read (s)", "new/previous"):
        table.add_column(column, justify="right")
    for name, size, new, old in results:
        table.add_row(name, f"{size:,}", f"{new:.2f}", f"{old:.2f}", f"{new / old:.2f}")
    console.print(table)


if __name__ == "__main__":
    main()
