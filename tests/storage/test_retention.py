"""Retention on SQLite and PostgreSQL: expired rows go in batches, referenced rows stay."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError
from sqlalchemy import event, func, select, update

from storage.db import make_engine, session_scope
from storage.intake import write_batch
from storage.registry import ModelRegistry
from storage.retention import RetentionConfig, prune
from storage.tables import Candidate, CheckRun, DeadLetter, Incident, PendingLabel, Prediction
from watcher.kafka import wire

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
OLD = NOW - timedelta(days=10, hours=1)  # one hour past a 10-day limit
YOUNG = NOW - timedelta(days=10) + timedelta(hours=1)  # one hour inside it


@pytest.fixture()
def engine(db_url):
    """On PostgreSQL the session runs in New York time: comparisons must not depend on it."""
    engine = make_engine(db_url)
    if engine.dialect.name == "postgresql":

        @event.listens_for(engine, "connect")
        def _zone(dbapi_conn, _record) -> None:
            with dbapi_conn.cursor() as cur:
                cur.execute("SET TIME ZONE 'America/New_York'")
            dbapi_conn.commit()

        engine.dispose()
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SHOW TIME ZONE").scalar_one() == "America/New_York"
    yield engine
    engine.dispose()


def row(pid: str, model: str = "m") -> dict:
    return {
        "prediction_id": pid,
        "model": model,
        "model_version": "v1",
        "ts": datetime.now(UTC),
        "features": {"a": 1.0},
        "prediction": "1",
        "scores": None,
        "groups": None,
        "label": None,
        "labelled_at": None,
    }


def add(engine, count: int, model: str = "m", start: int = 0) -> list[int]:
    """Write `count` predictions through intake; returns their seqs, oldest first."""
    pids = [f"{model}-{i}" for i in range(start, start + count)]
    write_batch(engine, [row(pid, model) for pid in pids], [], [])
    t = Prediction.__table__.c
    with engine.connect() as conn:
        query = select(t.seq).where(t.prediction_id.in_(pids)).order_by(t.seq)
        return list(conn.execute(query).scalars())


def set_age(engine, seqs, when: datetime) -> None:
    t = Prediction.__table__
    with engine.begin() as conn:
        conn.execute(update(t).where(t.c.seq.in_(list(seqs))).values(ingested_at=when))


def seqs_of(engine, model: str) -> set[int]:
    t = Prediction.__table__.c
    with engine.connect() as conn:
        return set(conn.execute(select(t.seq).where(t.model == model)).scalars())


def count(engine, table) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


def incident(model: str, lo: int | None, hi: int | None, status: str = "open") -> Incident:
    return Incident(
        model=model,
        model_version="v1",
        kind="drift",
        severity="high",
        status=status,
        summary="s",
        window_start_seq=lo,
        window_end_seq=hi,
    )


def dead_letter(offset: int) -> dict:
    return wire.dead_letter("t", 0, offset, "r", b"x")


def count_prediction_deletes(engine) -> list[int]:
    """A one-element list holding how many DELETE statements hit predictions."""
    seen = [0]

    @event.listens_for(engine, "before_cursor_execute")
    def _count(_conn, _cursor, statement, *_args) -> None:
        if statement.lstrip().upper().startswith("DELETE FROM PREDICTIONS"):
            seen[0] += 1

    return seen


def test_prune_by_age_keeps_referenced_windows(engine, tmp_path):
    m = add(engine, 30)
    other = add(engine, 5, model="other")
    set_age(engine, m[:20] + other, OLD)
    set_age(engine, m[20:], YOUNG)
    registry = ModelRegistry(tmp_path / "registry")
    window = {"kind": "window", "start_seq": m[13], "end_seq": m[14]}
    registry.write_card("m", "v2", {"baseline": {"accuracy": 0.9, "drift_reference": window}})
    registry.write_card("m", "v1", {"baseline": {"drift_reference": {"kind": "reference"}}})
    with session_scope(engine) as s:
        s.add(incident("m", m[2], m[4], status="resolved"))
        s.add(incident("other", m[6], m[7]))  # another model's window protects nothing of m
        s.add(incident("other", other[2], other[3]))
        s.add(incident("m", None, None))  # no window, nothing to protect
        training = {"window_start_seq": m[8], "window_end_seq": m[9], "flagged_total": 12}
        s.add(Candidate(id="m-v2", model="m", version="v2", parent_version="v1", training=training))
        s.add(
            CheckRun(
                model="m", model_version="v1", kind="drift", passed=False,
                window_start_seq=m[10], window_end_seq=m[12],
            )
        )  # fmt: skip

    labels = [{"prediction_id": f"gone-{i}", "label": "1"} for i in range(5)]
    write_batch(engine, [], labels, [dead_letter(i) for i in range(5)])
    dead, pend = DeadLetter.__table__, PendingLabel.__table__
    with engine.begin() as conn:
        conn.execute(update(dead).where(dead.c.offset < 3).values(received_at=OLD))
        conn.execute(update(dead).where(dead.c.offset >= 3).values(received_at=YOUNG))
        old_labels = [f"gone-{i}" for i in range(4)]
        conn.execute(
            update(pend).where(pend.c.prediction_id.in_(old_labels)).values(received_at=OLD)
        )
        conn.execute(update(pend).where(pend.c.prediction_id == "gone-4").values(received_at=YOUNG))

    deletes = count_prediction_deletes(engine)
    tokyo_now = NOW.astimezone(ZoneInfo("Asia/Tokyo"))  # same instant, nine hours ahead
    result = prune(
        engine, max_age_days=10, max_rows=None, batch_size=7, now=tokyo_now, registry=registry
    )

    protected_m = {m[i] for i in (2, 3, 4, 8, 9, 13, 14)}
    assert seqs_of(engine, "m") == protected_m | set(m[20:])
    assert seqs_of(engine, "other") == {other[2], other[3]}
    assert result.predictions_deleted == 13 + 3
    assert result.kept_protected == 7 + 2
    assert deletes[0] == 3  # 7 + 7 + 2
    assert (result.dead_letters_deleted, count(engine, dead)) == (3, 2)
    assert (result.pending_labels_deleted, count(engine, pend)) == (4, 1)
    with engine.connect() as conn:
        left = conn.execute(select(pend.c.prediction_id)).scalars().all()
    assert left == ["gone-4"]

    again = prune(engine, max_age_days=10, max_rows=None, batch_size=7, now=tokyo_now)
    assert again.predictions_deleted == 2  # without the registry the card window is fair game
    assert seqs_of(engine, "m") == (protected_m - {m[13], m[14]}) | set(m[20:])


def test_prune_by_count_then_age(engine):
    m = add(engine, 30)
    other = add(engine, 5, model="other")
    with session_scope(engine) as s:
        s.add(incident("m", m[1], m[3]))
        training = {"window_start_seq": m[5], "window_end_seq": m[5]}
        s.add(Candidate(id="m-v2", model="m", version="v2", parent_version="v1", training=training))
    write_batch(engine, [], [], [dead_letter(1)])

    result = prune(engine, max_age_days=None, max_rows=10, batch_size=7)

    newest = set(m[20:])
    assert seqs_of(engine, "m") == {m[1], m[2], m[3], m[5]} | newest
    assert seqs_of(engine, "other") == set(other)  # under the limit: untouched
    assert (result.predictions_deleted, result.kept_protected) == (16, 4)
    assert (result.dead_letters_deleted, count(engine, DeadLetter.__table__)) == (0, 1)

    set_age(engine, m[20:25] + other[:2], OLD)
    naive_utc = NOW.replace(tzinfo=None)  # read as UTC
    both = prune(engine, max_age_days=10, max_rows=10, batch_size=7, now=naive_utc)
    assert seqs_of(engine, "m") == {m[1], m[2], m[3], m[5]} | set(m[25:])
    assert seqs_of(engine, "other") == set(other[2:])
    assert (both.predictions_deleted, both.kept_protected) == (7, 4)


def test_nothing_to_do_without_limits(engine):
    add(engine, 5)
    result = prune(engine, max_age_days=None, max_rows=None)
    assert (result.predictions_deleted, result.kept_protected) == (0, 0)
    assert count(engine, Prediction.__table__) == 5
    with pytest.raises(ValueError):
        prune(engine, max_age_days=None, max_rows=0)


def test_intake_keeps_writing_during_a_prune(engine):
    old = add(engine, 3000)
    set_age(engine, old, datetime.now(UTC) - timedelta(days=30))
    with session_scope(engine) as s:
        s.add(incident("m", old[100], old[149]))
    outcome: dict = {}

    def run_prune() -> None:
        try:
            outcome["result"] = prune(engine, max_age_days=10, max_rows=None, batch_size=20)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            outcome["error"] = exc

    pruner = threading.Thread(target=run_prune)
    pruner.start()
    written, during, batch = 0, 0, 0
    while pruner.is_alive() or batch < 5:
        rows = [row(f"new-{batch}-{i}") for i in range(20)]
        labels = [{"prediction_id": f"new-{batch}-{i}", "label": "0"} for i in range(0, 20, 2)]
        counts = write_batch(engine, rows, labels, [])
        written += counts.predictions
        during += pruner.is_alive()
        batch += 1
    pruner.join()

    assert "error" not in outcome, outcome.get("error")
    assert during >= 1
    assert outcome["result"].predictions_deleted == 3000 - 50
    assert outcome["result"].kept_protected == 50
    t = Prediction.__table__.c
    with engine.connect() as conn:
        new = conn.execute(select(func.count()).where(t.prediction_id.like("new-%"))).scalar_one()
        labelled = conn.execute(select(func.count(t.label))).scalar_one()
    assert new == written == 20 * batch
    assert labelled == 10 * batch
    assert seqs_of(engine, "m") >= set(old[100:150])


def test_retention_config_is_strict():
    cfg = RetentionConfig(max_age_days=30, max_rows_per_model=100_000)
    assert (cfg.batch_size, cfg.interval_minutes) == (5000, 60)
    assert RetentionConfig().max_age_days is None
    for bad in ({"max_age_days": 0}, {"max_rows_per_model": -1}, {"batch_size": 0},
                {"interval_minutes": 0}, {"max_age": 3}):  # fmt: skip
        with pytest.raises(ValidationError):
            RetentionConfig(**bad)
