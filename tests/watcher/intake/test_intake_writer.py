"""The intake's writer process (watcher/intake/writer*.py): what crosses to it, and that it
neither outlives its parent nor takes the intake down when it is killed."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

from kafka.consumer.fetcher import ConsumerRecord
from kafka.structs import TopicPartition
from sqlalchemy import func, select

from storage.db import make_engine
from storage.tables import Prediction
from tests.support import ROOT  # noqa: E402
from tests.watcher.intake.test_ingest import prediction
from watcher.daemon.intake_thread import IntakeThread
from watcher.daemon.service import wait_for
from watcher.intake.consumer import Ingestor
from watcher.intake.raw_batch import decode, pack
from watcher.kafka.clients import make_producer
from watcher.kafka.wire import BadMessage, dead_letter, encode, parse_prediction

LIMIT = 1000


def record(topic: str, offset: int, value: bytes | None) -> ConsumerRecord:
    size = -1 if value is None else len(value)
    return ConsumerRecord(topic, 0, -1, offset, 0, 0, None, value, [], None, -1, size, -1)


def test_a_packed_batch_decodes_to_what_each_record_parses_to():
    good = encode(prediction("p-1"))
    huge = encode(prediction("p-huge") | {"features": {"blob": "x" * LIMIT}})
    values = [good, b"{not json", None, huge, encode({"prediction_id": "p-1", "label": 1})]
    topics = ["pred"] * 4 + ["labels"]
    batch: dict[TopicPartition, list[ConsumerRecord]] = {}
    for offset, (topic, value) in enumerate(zip(topics, values, strict=True)):
        batch.setdefault(TopicPartition(topic, 0), []).append(record(topic, offset, value))

    raw = pack(batch, LIMIT)
    assert all(len(v or b"") <= LIMIT for p in raw.partitions for v in p.values)  # huge stayed
    parsed = decode(pickle.loads(pickle.dumps(raw)), "labels", LIMIT)

    by_offset = {item.offset: item for item in parsed.items}
    assert sorted(by_offset) == [0, 1, 2, 3, 4]
    assert by_offset[0].kind == "prediction" and by_offset[0].row == parse_prediction(good, LIMIT)
    assert by_offset[4].kind == "label" and by_offset[4].row["label"] == "1"
    for offset in (1, 2, 3):  # the same dead letter the record alone would have given
        item = by_offset[offset]
        try:
            parse_prediction(values[offset], LIMIT)
        except BadMessage as exc:
            expected = dead_letter("pred", 0, offset, str(exc), values[offset])
        assert item.kind == "dead" and item.row == expected


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's zombie waits for whoever reaps here)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_a_killed_parent_leaves_no_writer_behind(kafka_cfg, tmp_path):
    """kill -9 of the process running the intake: its writer exits by itself."""
    script = textwrap.dedent(
        f"""
        import sys, threading, time
        sys.path.insert(0, {str(ROOT)!r})
        from storage.db import make_engine
        from watcher.config import KafkaConfig
        from watcher.intake.consumer import Ingestor
        cfg = KafkaConfig.model_validate_json({kafka_cfg.model_dump_json()!r})
        ingestor = Ingestor(cfg, make_engine({f"sqlite:///{tmp_path / 'w.db'}"!r}),
                            threading.Event())
        threading.Thread(target=ingestor.run, daemon=True).start()
        while ingestor.stats.state in ("starting", "joining group"):
            time.sleep(0.05)
        print("WRITER", ingestor.writer_pid, flush=True)
        time.sleep(600)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        line = ""
        while not line.startswith("WRITER"):  # the intake logs to stdout too
            line = parent.stdout.readline()
            assert line, "the intake did not start"
        writer = int(line.split()[1])
        assert writer in children_of(parent.pid) and running(writer)
        kids = children_of(parent.pid)  # the writer, and multiprocessing's resource tracker
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
    assert wait_for(lambda: not any(running(k) for k in kids), 15, 0.1), (
        f"left running after kill -9 of their parent: {[k for k in kids if running(k)]}"
    )


def test_a_killed_writer_is_replaced_and_nothing_is_lost_or_doubled(kafka_cfg, tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'w.db'}")
    stop = threading.Event()
    ingestor = Ingestor(kafka_cfg, engine, stop)
    intake = IntakeThread(ingestor, stop)
    producer = make_producer(kafka_cfg)

    def send(prefix: str, n: int) -> None:
        for i in range(n):
            producer.send(kafka_cfg.predictions_topic, encode(prediction(f"{prefix}-{i}")))
        producer.flush()

    def count() -> int:
        with engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(Prediction)).scalar_one()

    intake.start()
    try:
        send("before", 2000)
        assert wait_for(lambda: count() == 2000, 60), count()
        first = ingestor.writer_pid
        os.kill(first, signal.SIGKILL)
        assert wait_for(lambda: ingestor.writer_pid != first, 30), ingestor.stats.state
        send("after", 2000)
        assert wait_for(lambda: count() == 4000, 60), (count(), ingestor.stats.state)
        time.sleep(1)  # anything redelivered must still be harmless
        with engine.connect() as conn:
            distinct = conn.execute(select(func.count(func.distinct(Prediction.prediction_id))))
            assert distinct.scalar_one() == count() == 4000
    finally:
        stop.set()
        intake.join(60)
        producer.close()
    assert not intake.alive() and ingestor.stats.state == "stopped"
    # a batch the writer stored but could not answer for comes again and adds nothing new
    assert 2000 < ingestor.stats.predictions <= 4000 <= ingestor.stats.consumed


def test_the_writer_leaves_stopping_to_its_parent(kafka_cfg, tmp_path):
    """Ctrl-C and a SIGTERM to the process group reach the writer too: it ignores both (its
    parent finishes the batch in hand) and ends when its pipe closes."""
    engine = make_engine(f"sqlite:///{tmp_path / 'w.db'}")
    stop = threading.Event()
    ingestor = Ingestor(kafka_cfg, engine, stop)
    intake = IntakeThread(ingestor, stop)
    intake.start()
    try:
        assert wait_for(lambda: ingestor.writer_pid is not None, 30)
        writer = ingestor.writer_pid
        os.kill(writer, signal.SIGINT)  # at once: it may still be importing
        os.kill(writer, signal.SIGTERM)
        assert wait_for(lambda: ingestor.stats.state == "consuming", 60), ingestor.stats.state
        for sig in (signal.SIGINT, signal.SIGTERM):
            os.kill(writer, sig)
        time.sleep(1)
        assert running(writer) and ingestor.writer_pid == writer, ingestor.stats.state
    finally:
        stop.set()
        intake.join(60)
    assert not intake.alive() and ingestor.stats.state == "stopped"
    assert wait_for(lambda: not running(writer), 15, 0.1), "the writer outlived its pipe"
