"""Intake writes against SQLite and PostgreSQL: idempotent, labels find their predictions."""

from datetime import UTC, datetime, timedelta, timezone

from sqlalchemy import func, select

from storage.db import make_engine
from storage.intake import write_batch
from storage.tables import DeadLetter, PendingLabel, Prediction
from watcher.kafka.wire import dead_letter


def row(pid: str, label=None) -> dict:
    return {
        "prediction_id": pid,
        "model": "m",
        "model_version": "v1",
        "ts": datetime.now(UTC),
        "features": {"a": 1.0, "c": "x"},
        "prediction": "1",
        "scores": [0.3, 0.7],
        "groups": {"sex": "F"},
        "label": label,
        "labelled_at": None,
    }


def counts(engine):
    with engine.connect() as conn:
        return (
            conn.execute(select(func.count()).select_from(Prediction)).scalar_one(),
            conn.execute(select(func.count(Prediction.label))).scalar_one(),
            conn.execute(select(func.count()).select_from(PendingLabel)).scalar_one(),
            conn.execute(select(func.count()).select_from(DeadLetter)).scalar_one(),
        )


def test_redelivered_batch_changes_nothing(db_url):
    engine = make_engine(db_url)
    batch = [row(f"p{i}") for i in range(50)]
    first = write_batch(engine, batch, [], [])
    second = write_batch(engine, batch + [row("p0")], [], [])
    assert (first.predictions, second.predictions) == (50, 0)
    assert counts(engine) == (50, 0, 0, 0)


def test_label_before_prediction_is_parked_then_applied(db_url):
    engine = make_engine(db_url)
    write_batch(
        engine,
        [row("a")],
        [{"prediction_id": "a", "label": "0"}, {"prediction_id": "late", "label": "1"}],
        [],
    )
    assert counts(engine) == (1, 1, 1, 0)
    applied = write_batch(engine, [row("late")], [], [])
    assert applied.labels_applied == 1
    assert counts(engine) == (2, 2, 0, 0)
    with engine.connect() as conn:
        label = conn.execute(
            select(Prediction.label).where(Prediction.prediction_id == "late")
        ).scalar_one()
    assert label == "1"


def test_dead_letters_are_stored_with_reason(db_url):
    engine = make_engine(db_url)
    dead = [dead_letter("t", 0, 7, "not valid JSON", b"{oops \x00")]
    assert write_batch(engine, [row("ok")], [], dead).dead_letters == 1
    assert counts(engine) == (1, 0, 0, 1)
    # the same message delivered again is not a second dead letter
    assert write_batch(engine, [], [], dead).dead_letters == 0
    assert counts(engine) == (1, 0, 0, 1)


def test_partly_redelivered_batch_stores_only_the_new_rows(db_url):
    """On PostgreSQL the COPY meets a stored id, rolls back to its savepoint and merges."""
    engine = make_engine(db_url)
    assert write_batch(engine, [row(f"p{i}") for i in range(10)], [], []).predictions == 10
    write_batch(engine, [], [{"prediction_id": "p12", "label": "1"}], [])
    again = write_batch(engine, [row(f"p{i}") for i in range(5, 15)], [], [])
    assert (again.predictions, again.labels_applied) == (5, 1)
    assert counts(engine) == (15, 1, 0, 0)


def test_dead_letters_counted_beside_a_redelivered_batch(db_url):
    engine = make_engine(db_url)
    dead = [dead_letter("t", 0, i, "not valid JSON", b"{oops") for i in range(3)]
    write_batch(engine, [row("a")], [], dead[:1])
    counted = write_batch(engine, [row("a"), row("b")], [], dead)
    assert (counted.predictions, counted.dead_letters) == (1, 2)
    assert counts(engine) == (2, 0, 0, 3)


def test_values_round_trip_with_escapes_and_zones(db_url):
    """Text that COPY must escape, nulls, and instants: stored exactly, whatever the session's
    time zone (PostgreSQL's is set away from UTC here)."""
    if db_url.startswith("postgresql"):
        db_url += "%20-cTimeZone%3DAmerica/New_York"
    engine = make_engine(db_url)
    odd = "tab\there\\back\nline\rcr \u00e9"
    ts = datetime(2026, 3, 8, 6, 59, 59, 123456, tzinfo=UTC)
    first = row(odd) | {"ts": ts, "label": odd, "prediction": odd}
    first |= {"features": {"s": odd, "q": '"quoted"', "n": None}, "scores": None, "groups": None}
    other = row("plain") | {"ts": ts.astimezone(timezone(timedelta(hours=5, minutes=30)))}
    assert write_batch(engine, [first, other], [], []).predictions == 2
    with engine.connect() as conn:
        got = {r.prediction_id: r for r in conn.execute(select(Prediction))}
    assert got[odd].features == first["features"] and got[odd].label == odd
    assert got[odd].prediction == odd and got[odd].scores is None and got[odd].groups is None
    assert got[odd].ts == ts and got["plain"].ts == ts
    assert got["plain"].groups == {"sex": "F"} and got["plain"].scores == [0.3, 0.7]
