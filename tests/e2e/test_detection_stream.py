"""Detection on real traffic: predictions and delayed labels go through the real broker and the
real intake into the database, then the real checks (Evidently, ONNX) judge the windows.

Covariate drift, a label-flip concept drift, a bias injected for one group, a clean stream over
30 checks, and a daemon whose webhook gets one alert per incident, retried after a 500.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import numpy as np
import pandas as pd
import pytest
from sqlalchemy import func, select
from sqlmodel import Session
from sqlmodel import select as sqlmodel_select

from correctors.models.runtime import OnnxModel
from storage.tables import CheckRun, Incident, Prediction
from tests.support.helpers import setup_model
from tests.watcher.alerts.test_alerts import Receiver
from watcher.checks.checker import ModelChecker
from watcher.checks.evidently_page import wait_for_pages
from watcher.checks.incidents import record_outcomes
from watcher.daemon.service import Daemon, wait_for
from watcher.demo.credit import COVARIATE_ONLY, NORMAL, Shift, generate, prediction_messages
from watcher.demo.run import MODEL
from watcher.intake.consumer import Ingestor
from watcher.kafka.clients import make_producer
from watcher.kafka.wire import encode

CONCEPT_ONLY = Shift(concept=True)  # labels flip for high utilisation; inputs unchanged


@contextmanager
def intake(kafka_cfg, engine) -> Iterator[Ingestor]:
    stop = threading.Event()
    ingestor = Ingestor(kafka_cfg, engine, stop)
    thread = threading.Thread(target=ingestor.run, daemon=True)
    thread.start()
    try:
        yield ingestor
    finally:
        stop.set()
        thread.join(30)


def labelled_count(engine) -> int:
    with engine.connect() as conn:
        query = select(func.count()).select_from(Prediction).where(Prediction.label.is_not(None))
        return conn.execute(query).scalar_one()


def stream(producer, kafka_cfg, registry, frame: pd.DataFrame) -> list[str]:
    """Serve `frame` with the ACTIVE version: prediction logs, then labels as separate, later
    messages (the delayed-label path). Returns the prediction ids."""
    version = registry.active(MODEL)
    preds, scores = OnnxModel.load(registry, MODEL, version).predict(frame)
    msgs = prediction_messages(frame, MODEL, version, preds, scores)
    for msg in msgs:
        producer.send(
            kafka_cfg.predictions_topic, key=msg["prediction_id"].encode(), value=encode(msg)
        )
    producer.flush()
    for msg, label in zip(msgs, frame["label"], strict=True):
        label_msg = {"prediction_id": msg["prediction_id"], "label": int(label)}
        producer.send(
            kafka_cfg.labels_topic, key=msg["prediction_id"].encode(), value=encode(label_msg)
        )
    producer.flush()
    return [m["prediction_id"] for m in msgs]


def stream_and_store(producer, kafka_cfg, registry, engine, frame) -> list[str]:
    before = labelled_count(engine)
    ids = stream(producer, kafka_cfg, registry, frame)
    assert wait_for(lambda: labelled_count(engine) >= before + len(frame), 60)
    return ids


@pytest.fixture()
def served(workdir, trained, kafka_cfg):
    """A bootstrapped model, a running intake and a producer on the test's own topics."""
    _, cfg, engine, registry = setup_model(workdir, trained[1])
    producer = make_producer(kafka_cfg)
    with intake(kafka_cfg, engine):
        yield cfg, engine, registry, producer
    producer.close()


def check(cfg, engine, registry, checker=None):
    checker = checker or ModelChecker(MODEL, engine, registry, cfg.storage.reports)
    outcomes = {o.kind: o for o in checker.run(cfg.models[MODEL])}
    return outcomes, record_outcomes(
        engine, MODEL, list(outcomes.values()), cfg.models[MODEL].checks
    )


@pytest.mark.slow
def test_covariate_drift_in_two_columns_is_flagged_with_them_on_top(served, kafka_cfg):
    cfg, engine, registry, producer = served
    stream_and_store(producer, kafka_cfg, registry, engine, generate(1500, COVARIATE_ONLY, seed=21))
    outcomes, changes = check(cfg, engine, registry)
    drift = outcomes["drift"]
    assert not drift.passed, drift.summary
    assert set(drift.figures["drifted_columns"][:2]) == {"utilization", "income"}, drift.figures
    assert drift.figures["thresholds"] == "calibrated"
    for col in ("utilization", "income"):  # far outside the normal range learnt on reference
        assert drift.figures["columns"][col]["sigmas"] > 10
    assert drift.flagged_ids, "the drifted region's samples are flagged for the corrector"
    opened = [c.incident for c in changes if c.opened]
    assert "drift" in [i.kind for i in opened]
    incident = next(i for i in opened if i.kind == "drift")
    assert incident.flagged_ids and incident.report_path
    assert_complete_evidently_report(incident.report_path, must_mention=["utilization", "income"])


@pytest.mark.slow
def test_label_flip_is_caught_by_the_error_check_not_the_drift_check(served, kafka_cfg):
    cfg, engine, registry, producer = served
    stream_and_store(producer, kafka_cfg, registry, engine, generate(1500, CONCEPT_ONLY, seed=22))
    outcomes, changes = check(cfg, engine, registry)
    assert outcomes["drift"].passed, outcomes["drift"].summary  # the inputs did not move
    assert not outcomes["drift"].figures["drifted_columns"]
    error = outcomes["error"]
    assert not error.passed, error.summary
    assert error.figures["accuracy"] < error.figures["bound"]
    # where the errors concentrate: high utilisation, where the labelling rule flipped
    top = error.figures["error_slices"][0]
    assert top["column"] == "utilization" and top["lift"] > 1.5, error.figures["error_slices"]
    assert [c.incident.kind for c in changes if c.opened] == ["error"]
    misclassified = error.figures["errors"]
    assert len(error.flagged_ids) >= misclassified  # the errors and their slices


@pytest.mark.slow
def test_bias_against_one_group_is_caught_with_the_group_and_the_gap(served, kafka_cfg):
    cfg, engine, registry, producer = served
    frame = generate(1500, NORMAL, seed=23)
    # double the error rate for sex=F: flip the labels of as many F rows as it already gets wrong
    model = OnnxModel.load(registry, MODEL, registry.active(MODEL))
    preds = np.asarray(model.predict(frame)[0]).astype(int)
    female = (frame["sex"] == "F").to_numpy()
    wrong = preds != frame["label"].to_numpy()
    right_f = np.flatnonzero(female & ~wrong)
    rng = np.random.default_rng(5)
    flip = rng.choice(right_f, size=int((female & wrong).sum()), replace=False)
    frame.loc[flip, "label"] = 1 - frame.loc[flip, "label"]
    stream_and_store(producer, kafka_cfg, registry, engine, frame)

    outcomes, changes = check(cfg, engine, registry)
    bias = outcomes["bias"]
    assert not bias.passed, bias.summary
    worst = bias.figures["failures"][0]
    assert worst["attribute"] == "sex" and worst["disadvantaged"] == "F", bias.figures["failures"]
    assert "groups.sex" in bias.summary and "F disadvantaged" in bias.summary
    # the figures agree with a direct computation from the stored rows
    groups = bias.figures["attributes"]["sex"]["groups"]
    stored = stored_frame(engine)
    for sex in ("F", "M"):
        part = stored[stored["sex"] == sex]
        correct = part["prediction"] == part["label"]
        positive = part["label"] == "1"
        assert groups[sex]["rows"] == len(part)
        assert groups[sex]["accuracy"] == pytest.approx(correct.mean(), abs=1e-9)
        assert groups[sex]["tpr"] == pytest.approx(correct[positive].mean(), abs=1e-9)
        assert groups[sex]["selection_rate"] == pytest.approx((part["prediction"] == "1").mean())
    gap = bias.figures["attributes"]["sex"]["gaps"]["accuracy_gap"]["value"]
    assert gap == pytest.approx(abs(groups["M"]["accuracy"] - groups["F"]["accuracy"]), abs=1e-9)
    assert (
        gap > worst["bound"] if worst["gap"] == "accuracy_gap" else worst["value"] > worst["bound"]
    )
    # the error rate of F doubled; M is untouched
    assert 1 - groups["F"]["accuracy"] > 1.6 * (1 - groups["M"]["accuracy"])
    incident = next(c.incident for c in changes if c.opened and c.incident.kind == "bias")
    assert incident.flagged_ids and set(incident.flagged_ids) <= set(stored["prediction_id"])
    assert_complete_evidently_report(incident.report_path, must_mention=["Accuracy"])


def stored_frame(engine) -> pd.DataFrame:
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                Prediction.prediction_id, Prediction.prediction, Prediction.label, Prediction.groups
            )
        ).all()
    return pd.DataFrame(
        [(r.prediction_id, r.prediction, r.label, r.groups["sex"]) for r in rows],
        columns=["prediction_id", "prediction", "label", "sex"],
    )


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_a_clean_stream_raises_nothing_in_30_consecutive_checks(served, kafka_cfg):
    cfg, engine, registry, producer = served
    stream_and_store(producer, kafka_cfg, registry, engine, generate(1500, NORMAL, seed=100))
    checker = ModelChecker(MODEL, engine, registry, cfg.storage.reports)
    judged = {"drift": 0, "error": 0, "bias": 0}
    for i in range(30):
        stream_and_store(producer, kafka_cfg, registry, engine, generate(300, NORMAL, seed=200 + i))
        outcomes, changes = check(cfg, engine, registry, checker)
        for kind, out in outcomes.items():
            assert out.passed, f"check {i}: {kind} failed on clean traffic: {out.summary}"
            judged[kind] += out.skipped_reason is None
        assert changes == [], f"check {i} opened {[c.incident.kind for c in changes]}"
    assert judged == {"drift": 30, "error": 30, "bias": 30}  # every check judged, none skipped
    assert count(engine, Incident) == 0


def assert_complete_evidently_report(path: str, must_mention: list[str]) -> None:
    """A whole, self-contained Evidently report (no headless browser on these machines): the
    document, Evidently's bundled renderer, the data it renders and the call that draws it
    into its root element, all in one file that opens offline."""
    wait_for_pages()  # drawn off the check's critical path, as the daemon waits before pages
    with open(path, encoding="utf-8") as handle:
        html = handle.read()
    assert html.lstrip().lower().startswith("<!doctype html")
    assert html.rstrip().endswith("</html>")
    match = re.search(r'<div id="root_(metric_[0-9a-f]+)">', html)
    assert match, "no root element for the dashboard"
    data = match.group(1)
    assert f"var {data} = " in html, "the report's data is missing"
    assert "window.drawDashboard=" in html, "Evidently's renderer bundle is missing"
    assert f"window.drawDashboard({data}," in html, "nothing draws the dashboard"
    assert "<script src=" not in html, "the report depends on a download"
    for word in must_mention:
        assert word in html, word


# -- a daemon with a webhook -------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_webhook_gets_exactly_one_alert_per_incident_and_retries_after_500(
    workdir, trained, kafka_cfg
):
    config, cfg, engine, registry = setup_model(workdir, trained[1], kafka_cfg.bootstrap_servers)
    with Receiver(fail_first=1, fail_status=500) as receiver:
        text = config.read_text()
        text = text.replace('group_id = "warden-demo"', f'group_id = "{kafka_cfg.group_id}"')
        text = text.replace(
            "[kafka]\n",
            f'[kafka]\npredictions_topic = "{kafka_cfg.predictions_topic}"\n'
            f'labels_topic = "{kafka_cfg.labels_topic}"\n'
            f'alerts_topic = "{kafka_cfg.alerts_topic}"\n',
        )
        text = text.replace("[alerts]\n", f'[alerts]\nwebhook_url = "{receiver.url}"\n')
        text = text.replace(
            "[models.credit.correction]\nenabled = true",
            "[models.credit.correction]\nenabled = false",
        )
        text = text.replace("interval_seconds = 3", "interval_seconds = 1")
        config.write_text(text)
        daemon = Daemon(config)
        producer = make_producer(kafka_cfg)
        try:
            daemon.start()
            stream(producer, kafka_cfg, registry, generate(1500, COVARIATE_ONLY, seed=31))
            assert wait_for(lambda: open_count(engine) > 0, 120)
            # let several more rounds fail on the same traffic: they update, never re-alert
            rounds = checks_run(engine)
            assert wait_for(lambda: checks_run(engine) >= rounds + 9, 60)
            assert wait_for(lambda: delivered(receiver) == open_count(engine), 30)
            # the daemon's own endpoint tells the same story
            metrics = httpx.get(f"{daemon.http.url}/metrics", timeout=10).text
            assert f'warden_drift_share{{model="{MODEL}"}}' in metrics
            assert f'warden_checks_total{{kind="drift",model="{MODEL}",result="failed"}}' in metrics
            assert "warden_open_incidents{" in metrics and "warden_ingested_total{" in metrics
            assert httpx.get(f"{daemon.http.url}/readyz", timeout=10).status_code == 200
            status = httpx.get(f"{daemon.http.url}/status", timeout=10).json()
            assert {i["kind"] for i in status["incidents"]} >= {"drift"}
            assert status["models"][0]["open_incidents"] == open_count(engine)
        finally:
            producer.close()
            daemon.shutdown()
        with Session(engine) as session:
            incidents = list(session.exec(sqlmodel_select(Incident)))
        first = receiver.requests[0]
        assert first["status"] == 500
        ok = [r for r in receiver.requests if r["status"] == 200]
        bodies = [json.loads(r["body"]) for r in ok]
        assert sorted(b["incident_id"] for b in bodies) == sorted(i.id for i in incidents)
        assert len({b["incident_id"] for b in bodies}) == len(bodies), "an incident alerted twice"
        retried = [
            r for r in ok if r["headers"]["idempotency-key"] == first["headers"]["idempotency-key"]
        ]
        assert len(retried) == 1, "the alert that met a 500 was delivered by a retry"
        drift = next(b for b in bodies if b["kind"] == "drift")
        assert set(drift["top_drifted_columns"][:2]) == {"utilization", "income"}
        assert drift["report"].endswith(".html") and drift["next_action"]
        assert drift["model"] == MODEL and drift["severity"] in {"warning", "high", "critical"}


def count(engine, table, *where) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one()


def open_count(engine) -> int:
    return count(engine, Incident, Incident.status == "open")


def checks_run(engine) -> int:
    return count(engine, CheckRun)


def delivered(receiver: Receiver) -> int:
    return sum(1 for r in receiver.requests if r["status"] == 200)
