"""`warden serve` over real HTTP on 127.0.0.1 with a bootstrapped model, real onnxruntime and
the real broker: predictions match `OnnxModel.predict`, every served row arrives on the
predictions topic as a valid message with the version that answered, 413/422/401/503, the
ACTIVE pointer followed through 20 swaps under load without a failed or mixed request, and the
CLI process from start to SIGTERM."""

from __future__ import annotations

import copy
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import numpy as np
import pandas as pd
import pytest
import torch

from correctors.models.champion import load_champion, register_version
from correctors.models.runtime import OnnxModel
from storage.registry import ModelRegistry
from tests.support.helpers import setup_model
from watcher.config import HttpConfig
from watcher.daemon.service import wait_for
from watcher.demo.credit import CATEGORICAL, NUMERIC, SHIFTED, generate
from watcher.demo.run import MODEL
from watcher.kafka.clients import make_consumer
from watcher.kafka.wire import parse_prediction
from watcher.serving.active import ActiveModel
from watcher.serving.prediction_logger import PredictionLogger
from watcher.serving.server import InferenceServer, encode_rows

FEATURES = NUMERIC + CATEGORICAL
TOKEN_ENV = "WARDEN_TEST_SERVE_TOKEN"


@contextmanager
def serving(registry, logger=None, **kw) -> Iterator[InferenceServer]:
    cfg = kw.pop("cfg", None) or HttpConfig(port=0)
    server = InferenceServer(registry, MODEL, cfg, logger=logger, **kw)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def records(frame: pd.DataFrame) -> list[dict]:
    return frame[FEATURES].to_dict(orient="records")


def consume(kafka_cfg, wanted: set[str], timeout_s: float = 60) -> dict[str, dict]:
    """Read the predictions topic until every id in `wanted` arrived; parse each message."""
    consumer = make_consumer(kafka_cfg, [kafka_cfg.predictions_topic])
    found: dict[str, dict] = {}
    deadline = time.monotonic() + timeout_s
    try:
        while not wanted <= found.keys() and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                for record in batch:
                    row = parse_prediction(record.value, kafka_cfg.max_message_bytes)
                    assert record.key == row["prediction_id"].encode()
                    assert row["prediction_id"] not in found, "a prediction logged twice"
                    found[row["prediction_id"]] = row
    finally:
        consumer.close()
    assert wanted <= found.keys(), f"{len(wanted - found.keys())} logged predictions missing"
    return found


def add_version(registry: ModelRegistry, version: str, shift: float) -> None:
    """A perturbed copy of v1 (output bias moved) registered as `version`."""
    champion = load_champion(registry, MODEL, "v1")
    model = copy.deepcopy(champion.torch_model)
    with torch.no_grad():
        model[-1].bias += torch.tensor([shift, -shift])
    card = {k: v for k, v in champion.card.items() if k not in {"onnx_sha256", "version"}}
    register_version(registry, MODEL, version, model, champion.encoder, {**card, "parent": "v1"})


def test_encoding_without_pandas_matches_the_training_encoder(workdir, trained):
    _, _, _, registry = setup_model(workdir, trained[1])
    encoder = OnnxModel.load(registry, MODEL, "v1").encoder
    rows = records(generate(200, SHIFTED, seed=5))
    rows[0]["income"], rows[1]["region"], rows[2]["plan"] = None, None, "platinum"  # unknown
    rows[3]["age"], rows[4]["tenure"] = 10**6, 3  # int values
    assert np.array_equal(encode_rows(encoder, rows), encoder.transform(pd.DataFrame(rows)))
    odd = [dict(rows[5], income="61.5", age=True, region=7)]  # pandas coercions apply
    assert np.array_equal(encode_rows(encoder, odd), encoder.transform(pd.DataFrame(odd)))


def test_predictions_match_onnx_and_every_row_is_logged(workdir, trained, kafka_cfg):
    _, _, _, registry = setup_model(workdir, trained[1], kafka_cfg.bootstrap_servers)
    reference = OnnxModel.load(registry, MODEL, "v1")
    logger = PredictionLogger(kafka_cfg, MODEL)
    frame = generate(300, SHIFTED, seed=11)
    served: dict[str, dict] = {}
    with serving(registry, logger) as server, httpx.Client(base_url=server.url) as http:
        assert http.get("/healthz").json() == {"status": "ok"}
        ready = http.get("/readyz")
        assert ready.status_code == 200 and ready.json()["version"] == "v1"
        start = 0
        for n in (1, 7, 36, 256):
            chunk = frame.iloc[start : start + n]
            start += n
            body = {"rows": records(chunk), "groups": [{"sex": s} for s in chunk["sex"]]}
            if n == 7:
                body["ids"] = [f"client-{i}" for i in range(n)]
            r = http.post("/predict", json=body)
            assert r.status_code == 200, r.text
            doc = r.json()
            assert (doc["model"], doc["version"]) == (MODEL, "v1")
            labels, probs = reference.predict(chunk)
            assert doc["predictions"] == labels
            np.testing.assert_allclose(doc["scores"], probs, rtol=0, atol=1e-6)
            assert len(set(doc["prediction_ids"])) == n
            if n == 7:
                assert doc["prediction_ids"] == body["ids"]
            for pid, row, group, label, score in zip(
                doc["prediction_ids"],
                body["rows"],
                body["groups"],
                doc["predictions"],
                doc["scores"],
                strict=True,
            ):
                served[pid] = {"row": row, "group": group, "label": label, "scores": score}
    logger.flush(30)
    assert (logger.sent, logger.failed, logger.pending) == (300, 0, 0)
    logged = consume(kafka_cfg, set(served))
    for pid, expect in served.items():
        msg = logged[pid]
        assert (msg["model"], msg["model_version"], msg["label"]) == (MODEL, "v1", None)
        assert msg["features"] == expect["row"]
        assert msg["groups"] == expect["group"]
        assert msg["prediction"] == expect["label"]
        assert msg["scores"] == expect["scores"]
    logger.close()


def test_oversized_malformed_and_unauthorized_requests(workdir, trained, monkeypatch):
    _, _, _, registry = setup_model(workdir, trained[1])
    row = records(generate(1, seed=2))[0]
    monkeypatch.setenv(TOKEN_ENV, "serve-token-0123456789")
    cfg = HttpConfig(port=0, token_env=TOKEN_ENV)
    with serving(registry, cfg=cfg, max_body_bytes=4096) as server:
        auth = {"Authorization": "Bearer serve-token-0123456789"}
        with httpx.Client(base_url=server.url, headers=auth) as http:
            assert http.post("/predict", json={"rows": [row]}).status_code == 200

            big = {"rows": [row] * 40}  # ~6 KB
            r = http.post("/predict", json=big)
            assert r.status_code == 413 and "4096" in r.json()["error"]
            chunks = (json.dumps(big).encode()[i : i + 1000] for i in range(0, 8000, 1000))
            r = http.post("/predict", content=chunks)  # chunked: no Content-Length
            assert r.status_code == 413

            def rejected(body, field: str) -> dict:
                content = body if isinstance(body, bytes) else json.dumps(body).encode()
                r = http.post("/predict", content=content)
                assert r.status_code == 422, r.text
                assert r.json()["field"] == field, r.json()
                return r.json()

            rejected(b"{not json", "body")
            rejected({"row": [row]}, "row")  # unknown field
            rejected({"groups": []}, "rows")  # missing
            rejected({"rows": {"income": 1}}, "rows")
            rejected({"rows": []}, "rows")
            rejected({"rows": [row, 3]}, "rows[1]")
            rejected({"rows": [dict(row, income=[1, 2])]}, "rows[0].income")
            rejected({"rows": [row], "groups": [{"sex": 1.5}]}, "groups[0].sex")
            rejected({"rows": [row, row], "groups": [{"sex": "F"}]}, "groups")
            rejected({"rows": [row, row], "ids": ["a", "a"]}, "ids")
            rejected({"rows": [row], "ids": [""]}, "ids[0]")
            partial = {k: v for k, v in row.items() if k not in {"age", "plan"}}
            doc = rejected({"rows": [row, partial]}, "rows[1]")
            assert doc["missing"] == ["age", "plan"] and "age" in doc["error"]

        with httpx.Client(base_url=server.url) as anonymous:
            assert anonymous.get("/healthz").status_code == 200
            assert anonymous.get("/readyz").status_code == 401
            assert anonymous.post("/predict", json={"rows": [row]}).status_code == 401
            bad = {"Authorization": "Bearer wrong"}
            assert anonymous.post("/predict", json={"rows": [row]}, headers=bad).status_code == 401


def test_not_ready_until_a_version_is_active(workdir, trained, tmp_path):
    _, _, _, registry = setup_model(workdir, trained[1])
    empty = ModelRegistry(tmp_path / "empty-registry")
    row = records(generate(1, seed=2))[0]
    with serving(empty) as server, httpx.Client(base_url=server.url) as http:
        r = http.get("/readyz")
        assert r.status_code == 503 and "no ACTIVE version" in r.json()["reason"]
        assert http.post("/predict", json={"rows": [row]}).status_code == 503
        shutil.copytree(registry.version_dir(MODEL, "v1"), empty.version_dir(MODEL, "v1"))
        empty.activate(MODEL, "v1", actor="test")
        assert wait_for(lambda: http.get("/readyz").status_code == 200, 5, 0.05)
        assert http.post("/predict", json={"rows": [row]}).json()["version"] == "v1"


@pytest.mark.slow
def test_twenty_swaps_under_load(workdir, trained, kafka_cfg):
    _, _, _, registry = setup_model(workdir, trained[1], kafka_cfg.bootstrap_servers)
    add_version(registry, "v2", shift=1.5)
    frame = generate(64, SHIFTED, seed=21)
    bodies = [{"rows": records(frame.iloc[i : i + 1 + i % 8])} for i in range(0, 56, 7)]
    expected = {  # what each version answers to each body
        v: [OnnxModel.load(registry, MODEL, v).predict(pd.DataFrame(b["rows"])) for b in bodies]
        for v in ("v1", "v2")
    }
    assert not any(  # the two versions answer differently: a mixed answer would show
        np.allclose(a[1], b[1]) for a, b in zip(expected["v1"], expected["v2"], strict=True)
    )
    logger = PredictionLogger(kafka_cfg, MODEL)
    stop = threading.Event()
    failures: list[str] = []
    answers: list[tuple[str, list[str]]] = []  # (version, prediction ids)
    lock = threading.Lock()

    def client(seed: int) -> None:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            i = seed
            while not stop.is_set():
                i += 1
                k = i % len(bodies)
                try:
                    r = http.post("/predict", json=bodies[k])
                    doc = r.json()
                    version = doc["version"]
                    labels, probs = expected[version][k]  # KeyError: an unknown version
                    assert r.status_code == 200
                    assert doc["predictions"] == labels, "answer does not match its version"
                    np.testing.assert_allclose(doc["scores"], probs, rtol=0, atol=1e-6)
                except Exception as exc:  # noqa: BLE001 - every failure is counted and shown
                    with lock:
                        failures.append(f"{type(exc).__name__}: {exc}")
                    continue
                with lock:
                    answers.append((version, doc["prediction_ids"]))

    with serving(registry, logger, refresh_s=0.05) as server:
        threads = [threading.Thread(target=client, args=(s,)) for s in range(4)]
        for thread in threads:
            thread.start()
        try:
            time.sleep(0.5)
            for swap in range(20):
                registry.activate(MODEL, "v2" if swap % 2 == 0 else "v1", actor="test")
                time.sleep(0.3)
        finally:
            stop.set()
            for thread in threads:
                thread.join(30)
        swaps = server.active.swaps
    assert failures == [], failures[:5]
    versions = [v for v, _ in answers]
    assert set(versions) == {"v1", "v2"}
    assert len(answers) > 200, len(answers)
    assert swaps >= 15, swaps  # the pointer is followed, not sampled once
    logger.flush(30)
    ids = {pid: v for v, pids in answers for pid in pids}
    assert (logger.failed, logger.sent) == (0, len(ids))
    logged = consume(kafka_cfg, set(ids))
    assert all(logged[pid]["model_version"] == v for pid, v in ids.items())
    logger.close()


@pytest.mark.slow
def test_active_model_follows_the_pointer_and_keeps_serving_through_a_bad_version(workdir, trained):
    _, _, _, registry = setup_model(workdir, trained[1])
    add_version(registry, "v2", shift=1.0)
    add_version(registry, "v3", shift=-1.0)
    active = ActiveModel(registry, MODEL, refresh_s=0.05, retry_s=0.2)  # lazy: no thread
    assert active.current().version == "v1"
    registry.activate(MODEL, "v2", actor="test")
    assert wait_for(lambda: active.current().version == "v2", 2, 0.02)
    registry.activate(MODEL, "v3", actor="test")
    registry.onnx_path(MODEL, "v3").write_bytes(b"not onnx")  # broken after activation
    time.sleep(0.3)
    assert active.current().version == "v2" and "v3" in active.last_error
    assert active.ready() == (True, "serving v2") and active.swaps == 1
    registry.activate(MODEL, "v1", actor="test")
    assert wait_for(lambda: active.current().version == "v1", 2, 0.02)
    assert active.last_error is None


@pytest.mark.slow
def test_cli_serves_logs_and_stops_on_sigterm(workdir, trained, kafka_cfg):
    config, _, _, _ = setup_model(workdir, trained[1], kafka_cfg.bootstrap_servers)
    text = config.read_text().replace(
        "[storage]", f'predictions_topic = "{kafka_cfg.predictions_topic}"\n\n[storage]', 1
    )
    config.write_text(text)
    log_path = workdir / "serve.log"
    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "watcher.cli", "serve", MODEL, "--config", str(config)]
            + ["--port", "0"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    try:

        def listening() -> dict | None:
            for line in log_path.read_text().splitlines():
                if '"serve_listening"' in line:
                    return json.loads(line)
            assert proc.poll() is None, log_path.read_text()
            return None

        assert wait_for(lambda: listening() is not None, 60), log_path.read_text()
        started = listening()
        assert started["ready"] is True
        rows = records(generate(20, seed=8))
        with httpx.Client(base_url=started["url"], timeout=10) as http:
            doc = http.post("/predict", json={"rows": rows}).json()
        assert doc["version"] == "v1" and len(doc["prediction_ids"]) == 20
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, log_path.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
    closed = [json.loads(x) for x in log_path.read_text().splitlines() if "log_closed" in x]
    assert closed and (closed[-1]["sent"], closed[-1]["failed"]) == (20, 0), closed
    logged = consume(kafka_cfg, set(doc["prediction_ids"]))
    assert {m["model_version"] for m in logged.values()} == {"v1"}


def test_logger_counts_unstorable_rows_as_failed_without_raising(kafka_cfg):
    logger = PredictionLogger(kafka_cfg, MODEL)
    scores = [[float("nan"), 1.0], [0.4, 0.6]]
    ids = logger.log("v1", [{"a": 1.0}, {"a": 2.0}], ["0", "1"], scores)
    logger.flush(30)
    assert (logger.sent, logger.failed) == (1, 1)
    assert set(consume(kafka_cfg, {ids[1]})) == {ids[1]}
    with pytest.raises(ValueError, match="predictions: 1 values for 2 rows"):
        logger.log("v1", [{"a": 1.0}, {"a": 2.0}], ["0"])
    disabled = PredictionLogger(kafka_cfg, MODEL, enabled=False)
    assert len(disabled.log("v1", [{"a": 1.0}], ["0"])) == 1 and disabled.sent == 0
    logger.close()
