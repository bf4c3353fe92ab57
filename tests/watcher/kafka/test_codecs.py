"""What real producers write, through the real broker: confluent-kafka (librdkafka) with every
codec Kafka defines, large linger and batch settings, keys and headers. This install reads
every codec and checks CRCs in C; `warden config check` says so (and says which it cannot
read when a library is missing); a running daemon stores each codec's messages exactly once,
also across a kill -9 in the middle of an lz4 stream with bad and oversize messages in it."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time

import pytest
from sqlmodel import select
from typer.testing import CliRunner

from storage.db import make_engine
from storage.tables import DeadLetter, Prediction
from tests.support.kafka_producers import (
    CODECS,
    flush,
    intake_config,
    librdkafka,
    send,
    start_warden,
    stored_counts,
)
from tests.watcher.intake.test_ingest import prediction
from watcher.cli import app
from watcher.daemon.service import wait_for
from watcher.kafka.codecs import codec_support, crc_support
from watcher.kafka.wire import encode

PER_CODEC = 200


def test_this_install_reads_every_codec_and_checks_crcs_in_c():
    support = {c.name: c for c in codec_support()}
    assert set(support) == set(CODECS)
    assert all(c.readable for c in support.values()), support
    fast, detail = crc_support()
    assert fast, detail


def test_config_check_lists_the_codecs_this_install_reads(kafka_cfg, tmp_path):
    config = intake_config(tmp_path, kafka_cfg, f"sqlite:///{tmp_path / 'w.db'}")
    result = CliRunner().invoke(app, ["config", "check", str(config)])
    assert result.exit_code == 0, result.output
    for codec in CODECS:
        assert f"kafka {codec}: yes" in result.output
    assert "kafka CRC-32C checks: C extension" in result.output


def test_config_check_names_a_codec_that_is_missing(kafka_cfg, tmp_path):
    """On an install without lz4 (the module unimportable, as if never installed)."""
    config = intake_config(tmp_path, kafka_cfg, f"sqlite:///{tmp_path / 'w.db'}")
    code = (
        "import sys; sys.modules['lz4'] = sys.modules['lz4.frame'] = None\n"
        f"from watcher.cli import app; app(['config', 'check', {str(config)!r}])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "kafka lz4: NO" in done.stdout and "pip install lz4" in done.stdout
    assert "kafka zstd: yes" in done.stdout


def produce_every_codec(kafka_cfg) -> dict[str, dict]:
    """PER_CODEC predictions per codec (and uncompressed), each with a key and headers, and a
    label for every tenth, produced while every producer is open (their batches interleave)."""
    sent: dict[str, dict] = {}
    producers = {c: librdkafka(kafka_cfg.bootstrap_servers, c) for c in ("none", *CODECS)}
    for i in range(PER_CODEC):
        for codec, producer in producers.items():
            msg = prediction(f"{codec}-{i}")
            msg["features"] = {"i": i, "codec": codec, "x": i / 7}
            sent[msg["prediction_id"]] = msg
            headers = [("codec", codec.encode()), ("trace", f"t-{i}".encode())]
            key = f"user-{i % 13}".encode()
            send(producer, kafka_cfg.predictions_topic, encode(msg), key=key, headers=headers)
            if i % 10 == 0:
                label = json.dumps({"prediction_id": msg["prediction_id"], "label": 1}).encode()
                send(producer, kafka_cfg.labels_topic, label, key=key)
    for producer in producers.values():
        flush(producer)
    return sent


def test_warden_run_stores_every_codec_exactly_once(kafka_cfg, db_url, tmp_path):
    sent = produce_every_codec(kafka_cfg)
    config, log = intake_config(tmp_path, kafka_cfg, db_url), tmp_path / "daemon.log"
    daemon = start_warden(config, log)
    engine = make_engine(db_url)
    total = len(sent)
    labelled = select(Prediction).where(Prediction.label.is_not(None))
    try:
        assert wait_for(lambda: stored_counts(engine)[0] >= total, 90, 0.2), log.read_text()[-3000:]
        with engine.connect() as conn:
            assert wait_for(lambda: len(conn.execute(labelled).all()) == total // 10, 30)
        time.sleep(1)  # anything redelivered must change nothing
        assert stored_counts(engine) == (total, total, 0, 0)
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(60) == 0, log.read_text()[-3000:]
    finally:
        if daemon.poll() is None:
            daemon.kill()
    with engine.connect() as conn:
        rows = conn.execute(select(Prediction.prediction_id, Prediction.features)).all()
    assert {pid: features for pid, features in rows} == {
        pid: msg["features"] for pid, msg in sent.items()
    }
    text = log.read_text()
    assert '"kafka_codecs"' in text and '"undecodable_batch"' not in text


def produce_lz4_stream(kafka_cfg, total: int, done: threading.Event) -> tuple[int, int]:
    """librdkafka lz4 producers (two of them, as several services would), in bursts: one bad
    message every 250, one oversize (1.5 MB, over the 1 MB limit) every 2,500."""
    producers = [librdkafka(kafka_cfg.bootstrap_servers, "lz4", **{"linger.ms": 50}) for _ in "ab"]
    blob = b'{"blob":"' + b"z" * 1_500_000 + b'"}'
    bad = 0
    for i in range(total):
        if i % 2500 == 1249:
            raw = blob
        elif i % 250 == 0:
            raw = b"{truncated"
        else:
            raw = encode(prediction(f"p-{i}"))
        bad += not raw.startswith(b'{"prediction_id"')
        send(producers[i % 2], kafka_cfg.predictions_topic, raw, key=f"k{i % 7}".encode())
        if i % 1000 == 999:
            time.sleep(0.1)
    for producer in producers:
        flush(producer)
    done.set()
    return total - bad, bad


@pytest.mark.slow
def test_kill_minus_9_mid_stream_with_lz4_producers_loses_and_duplicates_nothing(
    kafka_cfg, db_url, tmp_path
):
    total, result = 20_000, {}
    config, log = intake_config(tmp_path, kafka_cfg, db_url), tmp_path / "daemon.log"
    engine = make_engine(db_url)
    first = start_warden(config, log)
    produced = threading.Event()

    def stream() -> None:
        result["good"], result["bad"] = produce_lz4_stream(kafka_cfg, total, produced)

    threading.Thread(target=stream, daemon=True).start()
    try:
        assert wait_for(lambda: stored_counts(engine)[0] >= 2000, 90, 0.05), log.read_text()[-2000:]
        first.send_signal(signal.SIGKILL)  # no chance to finish the batch or commit
        first.wait(10)
        assert stored_counts(engine)[0] < total * 0.9, "the stream was over before the kill"
    finally:
        if first.poll() is None:
            first.kill()
    second = start_warden(config, log)
    try:
        assert produced.wait(90)
        good, bad = result["good"], result["bad"]
        assert wait_for(lambda: stored_counts(engine)[0] >= good, 120, 0.2), stored_counts(engine)
        time.sleep(2)  # anything redelivered after the last new row must still be harmless
        assert stored_counts(engine) == (good, good, bad, bad)
        second.send_signal(signal.SIGTERM)
        assert second.wait(60) == 0, log.read_text()[-3000:]
    finally:
        if second.poll() is None:
            second.kill()
    with engine.connect() as conn:
        reasons = conn.execute(select(DeadLetter.reason)).scalars().all()
    assert sum("exceeds the 1000000-byte limit" in r for r in reasons) == total // 2500
    assert "ingest_stopped" in log.read_text()
