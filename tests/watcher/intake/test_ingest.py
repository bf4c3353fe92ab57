"""Intake through the real broker into SQLite and PostgreSQL."""

import json
import threading
import uuid

import pytest
from sqlalchemy import func, select

from storage.db import make_engine
from storage.tables import DeadLetter, Prediction
from watcher.daemon.service import wait_for
from watcher.intake.consumer import Ingestor
from watcher.kafka.clients import make_producer
from watcher.kafka.wire import encode

BAD = [
    b"{not json",
    b'{"prediction_id": "x"}',
    b"\x00\x01\xff",
    b"[1,2]",
    b'{"prediction_id":"n","model":"m","model_version":"v","ts":"2026-01-01T00:00:00Z",'
    b'"features":{"a":NaN},"prediction":1}',
]


def prediction(pid: str) -> dict:
    return {
        "prediction_id": pid,
        "model": "m",
        "model_version": "v1",
        "ts": "2026-11-22T20:00:00Z",
        "features": {"a": 1.5, "c": "x"},
        "prediction": 1,
        "scores": [0.1, 0.9],
        "groups": {"sex": "M"},
        "label": None,
    }


def stored(engine) -> tuple[int, int, int]:
    with engine.connect() as conn:
        return (
            conn.execute(select(func.count()).select_from(Prediction)).scalar_one(),
            conn.execute(select(func.count(Prediction.label))).scalar_one(),
            conn.execute(select(func.count()).select_from(DeadLetter)).scalar_one(),
        )


def run_ingestor(cfg, engine, until) -> Ingestor:
    stop = threading.Event()
    ingestor = Ingestor(cfg, engine, stop)
    thread = threading.Thread(target=ingestor.run)
    thread.start()
    try:
        assert wait_for(until, 60), f"intake stalled: {stored(engine)}"
    finally:
        stop.set()
        thread.join(30)
    assert ingestor.stats.state == "stopped"
    return ingestor


def test_bad_messages_are_dead_lettered_and_nothing_is_lost(kafka_cfg, db_url):
    engine = make_engine(db_url)
    producer = make_producer(kafka_cfg)
    ids = [uuid.uuid4().hex for _ in range(300)]
    sent = 0
    for i, pid in enumerate(ids):
        producer.send(kafka_cfg.predictions_topic, encode(prediction(pid)))
        sent += 1
        if i % 60 == 0:  # bad messages interleaved with good ones in the same batches
            for bad in BAD:
                producer.send(kafka_cfg.predictions_topic, bad)
                sent += 1
    producer.send(kafka_cfg.predictions_topic, encode(prediction(ids[0])))  # a redelivery
    sent += 1
    for pid in ids[:100]:
        producer.send(
            kafka_cfg.labels_topic, json.dumps({"prediction_id": pid, "label": 0}).encode()
        )
    producer.send(kafka_cfg.labels_topic, b'{"label": 1}')
    producer.flush()
    n_bad = 5 * len(BAD) + 1

    ingestor = run_ingestor(kafka_cfg, engine, lambda: stored(engine) == (300, 100, n_bad))
    assert ingestor.stats.consumed == sent + 101
    # counts in = stored + dead-lettered + redelivered duplicates
    assert ingestor.stats.consumed == 300 + n_bad + 1 + 100
    with engine.connect() as conn:
        reasons = conn.execute(select(DeadLetter.reason)).scalars().all()
    assert any("not valid JSON" in r for r in reasons)
    assert any("non-finite" in r for r in reasons)
    assert any("schema" in r for r in reasons)


@pytest.mark.slow
def test_offsets_are_committed_and_redelivery_is_harmless(kafka_cfg, db_url):
    engine = make_engine(db_url)
    producer = make_producer(kafka_cfg)
    for _ in range(200):
        producer.send(kafka_cfg.predictions_topic, encode(prediction(uuid.uuid4().hex)))
    producer.flush()
    run_ingestor(kafka_cfg, engine, lambda: stored(engine)[0] == 200)
    # Same group again: offsets were committed after the write, so only the new one is read.
    producer.send(kafka_cfg.predictions_topic, encode(prediction("one-more")))
    producer.flush()
    again = run_ingestor(kafka_cfg, engine, lambda: stored(engine)[0] == 201)
    assert again.stats.consumed == 1
    # A new group re-reads everything (a full redelivery): storage does not change.
    replay_cfg = kafka_cfg.model_copy(update={"group_id": kafka_cfg.group_id + "-replay"})
    replay = Ingestor(replay_cfg, engine, threading.Event())
    thread = threading.Thread(target=replay.run)
    thread.start()
    assert wait_for(lambda: replay.stats.consumed >= 201, 60)
    replay.stop_event.set()
    thread.join(30)
    assert replay.stats.consumed == 201
    assert stored(engine) == (201, 0, 0)
