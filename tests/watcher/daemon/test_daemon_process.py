"""The daemon as users run it (`warden run` in its own process): kill -9 mid-stream loses
nothing and stores nothing twice; SIGTERM stops it cleanly with exit code 0; Ctrl-C (SIGINT to
the whole process group, the intake's writer included) too, with no error logged and nothing
lost; and with several daemons on one store, a lease lets exactly one of them check a model at
a time."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlmodel import Session

from storage.db import make_engine
from storage.tables import CheckRun, DeadLetter, Lease, Prediction
from tests.support.helpers import setup_model, store_traffic
from tests.support.kafka_producers import intake_config
from tests.watcher.intake.test_ingest import prediction
from watcher.daemon.service import Daemon, wait_for
from watcher.demo.credit import NORMAL
from watcher.demo.run import MODEL
from watcher.kafka.clients import make_producer
from watcher.kafka.wire import encode

TOTAL, BAD_EVERY = 20_000, 500


def start_daemon(config: Path, log: Path, *, own_group: bool = False) -> subprocess.Popen:
    """`warden run`; `own_group`: in its own process group, as a terminal starts a command."""
    out = log.open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "watcher.cli", "run", "--config", str(config)],
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=own_group,
    )


def log_lines(text: str) -> list[dict]:
    """The JSON lines of a daemon's log; anything else (a traceback) as an error line."""
    lines = []
    for line in text.splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:
            lines.append({"level": "error", "event": line})
    return lines


def counts(engine) -> tuple[int, int, int]:
    with engine.connect() as conn:
        return (
            conn.execute(select(func.count()).select_from(Prediction)).scalar_one(),
            conn.execute(select(func.count(func.distinct(Prediction.prediction_id)))).scalar_one(),
            conn.execute(select(func.count()).select_from(DeadLetter)).scalar_one(),
        )


def produce_stream(kafka_cfg, done: threading.Event) -> None:
    """A steady stream (about 10k/s in bursts), one bad message every BAD_EVERY."""
    producer = make_producer(kafka_cfg)
    for i in range(TOTAL):
        raw = b"{truncated" if i % BAD_EVERY == 0 else encode(prediction(f"p-{i}"))
        producer.send(kafka_cfg.predictions_topic, raw)
        if i % 1000 == 999:
            producer.flush()
            time.sleep(0.1)
    producer.flush()
    producer.close()
    done.set()


@pytest.mark.slow
def test_kill_minus_9_mid_stream_then_restart_loses_and_duplicates_nothing(
    kafka_cfg, db_url, tmp_path
):
    config = intake_config(tmp_path, kafka_cfg, db_url)
    engine = make_engine(db_url)
    log = tmp_path / "daemon.log"
    first = start_daemon(config, log)
    produced = threading.Event()
    threading.Thread(target=produce_stream, args=(kafka_cfg, produced), daemon=True).start()
    try:
        assert wait_for(lambda: counts(engine)[0] >= 2000, 90, 0.05), log.read_text()[-2000:]
        first.send_signal(signal.SIGKILL)  # no chance to finish the batch or commit
        first.wait(10)
        at_kill = counts(engine)[0]
        assert at_kill < TOTAL - TOTAL // BAD_EVERY, "the stream was over before the kill"
    finally:
        if first.poll() is None:
            first.kill()
    second = start_daemon(config, log)
    try:
        good = TOTAL - TOTAL // BAD_EVERY
        assert produced.wait(60)
        assert wait_for(lambda: counts(engine)[0] >= good, 120, 0.2), counts(engine)
        time.sleep(2)  # anything redelivered after the last new row must still be harmless
        assert counts(engine) == (good, good, TOTAL // BAD_EVERY)
        second.send_signal(signal.SIGTERM)
        assert second.wait(60) == 0, log.read_text()[-3000:]
    finally:
        if second.poll() is None:
            second.kill()
    text = log.read_text()
    assert "ingest_stopped" in text and "daemon_stopped" in text


@pytest.mark.slow
def test_ctrl_c_to_the_process_group_stops_cleanly_and_loses_nothing(kafka_cfg, db_url, tmp_path):
    """Ctrl-C at a terminal: SIGINT to every process of the foreground group while records
    flow. The daemon finishes the batch in hand and exits 0; the writer does not die
    mid-batch (no `ingest_writer_lost`), nothing is logged at level error, what was consumed
    is stored or dead-lettered, and a restart stores the rest: every produced id, once."""
    config = intake_config(tmp_path, kafka_cfg, db_url)
    engine = make_engine(db_url)
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    daemon = start_daemon(config, first_log, own_group=True)
    produced = threading.Event()
    threading.Thread(target=produce_stream, args=(kafka_cfg, produced), daemon=True).start()
    try:
        assert wait_for(lambda: counts(engine)[0] >= 2000, 90, 0.05), first_log.read_text()[-2000:]
        os.killpg(daemon.pid, signal.SIGINT)
        assert daemon.wait(60) == 0, first_log.read_text()[-3000:]
    finally:
        if daemon.poll() is None:
            os.killpg(daemon.pid, signal.SIGKILL)
    lines = log_lines(first_log.read_text())
    errors = [line for line in lines if line.get("level") in ("error", "critical")]
    assert errors == [], errors
    [stopped] = [line for line in lines if line.get("event") == "ingest_stopped"]
    stored, distinct, dead = counts(engine)
    assert stored == distinct == stopped["predictions"]
    assert stopped["consumed"] == stopped["predictions"] + stopped["dead_letters"]
    assert dead == stopped["dead_letters"]
    assert stored < TOTAL - TOTAL // BAD_EVERY, "the stream was over before Ctrl-C"

    second = start_daemon(config, second_log)
    try:
        good = TOTAL - TOTAL // BAD_EVERY
        assert produced.wait(60)
        assert wait_for(lambda: counts(engine)[0] >= good, 120, 0.2), counts(engine)
        time.sleep(2)  # anything redelivered after the last new row must still be harmless
        assert counts(engine) == (good, good, TOTAL // BAD_EVERY)
        with engine.connect() as conn:
            ids = set(conn.execute(select(Prediction.prediction_id)).scalars())
        assert ids == {f"p-{i}" for i in range(TOTAL) if i % BAD_EVERY}
        second.send_signal(signal.SIGTERM)
        assert second.wait(60) == 0, second_log.read_text()[-3000:]
    finally:
        if second.poll() is None:
            second.kill()


@pytest.mark.slow
def test_one_daemon_at_a_time_checks_a_model(workdir, trained, broker, tmp_path):
    config, cfg, engine, registry = setup_model(
        workdir, trained[1], broker.bootstrap, interval=60, group_id=f"lease-{uuid.uuid4().hex}"
    )
    store_traffic(engine, registry, 600, NORMAL, seed=5)
    first, second = Daemon(config), Daemon(config)

    def runs() -> int:
        with engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(CheckRun)).scalar_one()

    threads = [threading.Thread(target=d.check_model, args=[MODEL]) for d in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    per_round = runs()
    assert per_round > 0, "no check ran"
    with Session(engine) as session:
        lease = session.get(Lease, f"model:{MODEL}")
    assert lease.holder in (first.holder, second.holder)
    holder, other = (first, second) if lease.holder == first.holder else (second, first)

    other.check_model(MODEL)  # the lease is live: the other daemon does nothing
    assert runs() == per_round
    holder.shutdown()  # a clean stop releases the lease at once
    other.check_model(MODEL)
    assert runs() == 2 * per_round
    with Session(engine) as session:
        assert session.get(Lease, f"model:{MODEL}").holder == other.holder
    other.shutdown()
