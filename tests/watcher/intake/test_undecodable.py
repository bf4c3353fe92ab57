"""A record batch the Kafka client cannot decode never blocks its partition. Real parts only
(embedded broker, SQLite and PostgreSQL, kafka-python's own record classes): a failed CRC, a
broken record inside a batch whose CRC matches, a compressed payload its codec rejects, and
`warden run` on an install without the lz4 library. Each becomes one dead-lettered offset range
with the exact error and an alert, and the messages after it are stored."""

from __future__ import annotations

import json
import signal
import threading
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from kafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder
from kafka.record.memory_records import MemoryRecords
from sqlmodel import Session, select

from storage import migrate
from storage.db import make_engine
from storage.tables import DeadLetter, Prediction
from tests.support.kafka_producers import (
    damaged_batches,
    flush,
    intake_config,
    librdkafka,
    send,
    start_warden,
    stored_counts,
)
from tests.watcher.intake.test_ingest import prediction
from watcher.alerts.alerter import Alerter
from watcher.config import load_config
from watcher.daemon.intake_thread import IntakeThread
from watcher.daemon.service import wait_for
from watcher.intake.consumer import Ingestor
from watcher.kafka.clients import make_producer
from watcher.kafka.undecodable import _range
from watcher.kafka.wire import encode

BEFORE, BAD, AFTER = 20, 10, 20
TOTAL = BEFORE + BAD + AFTER
EXPECTED_ERROR = {
    "crc": "failed crc check",
    "record": "CorruptRecordError(",
    "payload": "RuntimeError('LZ4F_decompress failed",
}


class RecordingIngestor(Ingestor):
    """The real Ingestor, keeping every state it reports (status shows only the latest)."""

    def __init__(self, *args, **kwargs) -> None:
        self.states: list[str] = []
        super().__init__(*args, **kwargs)

    def _set_state(self, state: str) -> None:
        self.states.append(state)
        super()._set_state(state)


def produce_around(kafka_cfg, how: str) -> None:
    """Good batch, damaged batch, good batch, all on partition 0: offsets 0-19, 20-29, 30-49."""
    codec = "lz4" if how == "payload" else None
    producer = make_producer(kafka_cfg, compression_type=codec)
    topic = kafka_cfg.predictions_topic

    def batch(prefix: str, count: int) -> None:
        for i in range(count):
            producer.send(topic, encode(prediction(f"{prefix}-{i}")), partition=0)
        producer.flush()

    batch("before", BEFORE)
    with damaged_batches(how):
        batch("bad", BAD)
    batch("after", AFTER)
    producer.close()


def consume_all(ingestor: Ingestor, thread: threading.Thread | IntakeThread) -> None:
    thread.start()
    try:
        assert wait_for(lambda: ingestor.stats.consumed >= TOTAL, 60, 0.05), ingestor.stats
        assert wait_for(lambda: not ingestor.stats.state.startswith("undecodable"), 10, 0.05)
    finally:
        ingestor.stop_event.set()
        thread.join(30)


def dead_rows(engine) -> list[DeadLetter]:
    with Session(engine) as session:
        return list(session.exec(select(DeadLetter)))


def stored_ids(engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.execute(select(Prediction.prediction_id)).scalars())


@pytest.mark.parametrize("how", ["crc", "record", "payload"])
def test_an_undecodable_batch_becomes_one_dead_lettered_range(kafka_cfg, db_url, how):
    produce_around(kafka_cfg, how)
    engine = make_engine(db_url)
    ingestor = RecordingIngestor(kafka_cfg, engine, threading.Event())
    consume_all(ingestor, threading.Thread(target=ingestor.run))

    [row] = dead_rows(engine)
    assert (row.topic, row.partition, row.last_offset) == (kafka_cfg.predictions_topic, 0, 29)
    assert BEFORE <= row.offset <= row.last_offset  # a broken record: the ones before it read
    assert EXPECTED_ERROR[how] in row.reason and row.reason.startswith("undecodable record batch")
    assert "record batch: magic=2" in row.payload
    ids = stored_ids(engine)
    assert {f"before-{i}" for i in range(BEFORE)} | {f"after-{i}" for i in range(AFTER)} <= ids
    skipped = row.last_offset - row.offset + 1
    assert len(ids) == TOTAL - skipped
    stats = ingestor.stats
    assert stats.consumed == TOTAL == stats.predictions + stats.dead_letters
    assert stats.dead_letters == skipped and stats.undecodable_batches == 1
    assert any("re-fetching (2/2)" in s for s in ingestor.states)  # kafka.undecodable_retries
    assert any(
        s.startswith("undecodable batch at") and "dead-lettered" in s for s in ingestor.states
    )
    assert not any(s.startswith("broker") for s in ingestor.states)


def test_without_retries_the_range_is_dead_lettered_at_once(kafka_cfg, tmp_path):
    produce_around(kafka_cfg, "crc")
    engine = make_engine(f"sqlite:///{tmp_path / 'w.db'}")
    cfg = kafka_cfg.model_copy(update={"undecodable_retries": 0})
    ingestor = RecordingIngestor(cfg, engine, threading.Event())
    consume_all(ingestor, threading.Thread(target=ingestor.run))
    assert stored_counts(engine) == (BEFORE + AFTER, BEFORE + AFTER, 1, BAD)
    assert not any("re-fetching" in s for s in ingestor.states)


def test_a_restart_before_the_commit_dead_letters_the_range_once(kafka_cfg, tmp_path):
    """Redelivery after a crash: the range's fingerprint is the range, so one row."""
    produce_around(kafka_cfg, "crc")
    engine = make_engine(f"sqlite:///{tmp_path / 'w.db'}")
    for group in ("first", "second"):  # a second group reads everything again
        cfg = kafka_cfg.model_copy(update={"group_id": f"{kafka_cfg.group_id}-{group}"})
        ingestor = RecordingIngestor(cfg, engine, threading.Event())
        consume_all(ingestor, threading.Thread(target=ingestor.run))
    assert stored_counts(engine) == (BEFORE + AFTER, BEFORE + AFTER, 1, BAD)


def test_the_intake_thread_alerts_through_the_daemons_alerter(kafka_cfg, tmp_path):
    extra = '[alerts]\nlog = false\nkafka = false\nfile = "alerts.jsonl"\n'
    config = intake_config(tmp_path, kafka_cfg, f"sqlite:///{tmp_path / 'w.db'}", extra)
    cfg = load_config(config)
    produce_around(kafka_cfg, "crc")
    engine = make_engine(cfg.storage.url)
    stop = threading.Event()
    ingestor = Ingestor(cfg.kafka, engine, stop)
    consume_all(ingestor, IntakeThread(ingestor, stop, alert=Alerter(cfg).send))

    [alert] = [json.loads(line) for line in (tmp_path / "alerts.jsonl").read_text().splitlines()]
    assert alert["alert"] == "undecodable_batch" and alert["severity"] == "high"
    assert (alert["topic"], alert["partition"]) == (kafka_cfg.predictions_topic, 0)
    assert (alert["first_offset"], alert["last_offset"], alert["offsets"]) == (20, 29, BAD)
    assert "failed crc check" in alert["error"] and "dead-lettered" in alert["summary"]


def _batch(base_offset: int, count: int) -> bytearray:
    """A real record batch (v2) as kafka-python's producer builds it."""
    builder = DefaultRecordBatchBuilder(2, 0, False, -1, -1, -1, 1024 * 1024)
    for i in range(count):
        builder.append(i, timestamp=None, key=None, value=b"{}", headers=[])
    buf = builder.build()
    buf[0:8] = base_offset.to_bytes(8, "big")
    return buf


def test_a_corrupt_header_cannot_stretch_the_range_past_readable_messages():
    """The header of a batch whose CRC failed is not trusted beyond the next batch's base
    offset or the partition's end, and never when it contradicts the fetch position."""
    damaged = _batch(20, 10)
    damaged[23:27] = (1_000_000).to_bytes(4, "big")  # last_offset_delta: claims 1M records
    records = MemoryRecords(bytes(damaged + _batch(30, 20)))
    batch = records.next_batch()
    assert isinstance(batch, DefaultRecordBatch) and not batch.validate_crc()
    assert _range(20, batch, records, highwater=50) == 29  # the next batch starts at 30

    def alone(buf: bytearray, highwater: int | None) -> int:
        records = MemoryRecords(bytes(buf))
        return _range(20, records.next_batch(), records, highwater)

    assert alone(damaged, highwater=30) == 29  # the partition's end
    assert alone(damaged, highwater=None) == 20  # no bound: one offset at a time
    assert alone(_batch(20, 10), highwater=None) == 29  # a header whose CRC matches
    assert alone(_batch(40, 5), highwater=50) == 20  # contradicts the position: one offset


def test_warden_run_without_lz4_dead_letters_lz4_batches_and_stores_the_rest(kafka_cfg, tmp_path):
    """As in the report: 50 messages each lz4, zstd, snappy, gzip from librdkafka, into one
    partition (lz4 first, so the others are behind it), read by a daemon whose install has no
    lz4 library (the module is made unimportable before kafka-python loads)."""
    for codec in ("lz4", "zstd", "snappy", "gzip"):
        producer = librdkafka(kafka_cfg.bootstrap_servers, codec)
        for i in range(50):
            raw = encode(prediction(f"{codec}-{i}"))
            send(producer, kafka_cfg.predictions_topic, raw, partition=0, key=b"k")
        flush(producer)
    url = f"sqlite:///{tmp_path / 'w.db'}"
    config, log = intake_config(tmp_path, kafka_cfg, url), tmp_path / "daemon.log"
    daemon = start_warden(config, log, hide=("lz4", "lz4.frame"))
    engine = make_engine(url)
    try:
        done = wait_for(lambda: stored_counts(engine)[::3] == (150, 50), 90, 0.2)
        assert done, (stored_counts(engine), log.read_text()[-3000:])
        assert stored_counts(engine) == (150, 150, 1, 50)
        [row] = dead_rows(engine)
        assert "Libraries for lz4 compression codec not found" in row.reason
        assert "codec=lz4" in row.payload and (row.offset, row.last_offset) == (0, 49)
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(60) == 0, log.read_text()[-3000:]
    finally:
        if daemon.poll() is None:
            daemon.kill()
    text = log.read_text()
    assert '"kafka_codec_unavailable"' in text and '"codec": "lz4"' in text
    assert '"undecodable_batch"' in text and "ingest_broker_error" not in text
    assert stored_ids(engine) == {f"{c}-{i}" for c in ("zstd", "snappy", "gzip") for i in range(50)}


def test_revision_0003_adds_last_offset_and_keeps_the_dead_letters_there(db_url):
    """From 0002 with a dead letter in it: the row survives as a single message (NULL)."""
    engine = make_engine(db_url, create=False)
    assert migrate.upgrade(engine, "0002") == "0002"
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                'INSERT INTO dead_letters (fingerprint, topic, partition, "offset", reason, '
                "payload, received_at) VALUES ('f', 't', 0, 7, 'bad', '{', :now)"
            ),
            {"now": datetime(2026, 1, 1, tzinfo=UTC)},
        )
    assert migrate.upgrade(engine) == migrate.head() == "0003"
    assert stored_counts(engine)[2:] == (1, 1)
    with Session(engine) as session:
        [row] = session.exec(select(DeadLetter)).all()
    assert (row.offset, row.last_offset) == (7, None)
    assert migrate.downgrade(engine, "0002") == "0002"
    with engine.connect() as conn:
        assert "last_offset" not in {
            c["name"] for c in sa.inspect(conn).get_columns("dead_letters")
        }
    assert migrate.upgrade(engine) == "0003"
