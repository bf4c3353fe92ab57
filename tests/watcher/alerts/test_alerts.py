"""Alert sinks against real parts: a local HTTP receiver, the embedded broker, real files."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from kafka import KafkaConsumer
from structlog.testing import capture_logs
from tenacity import wait_none

from watcher.alerts.alerter import Alerter
from watcher.alerts.message import build_alert, describe, verify_signature
from watcher.alerts.sinks import FileSink, WebhookError, WebhookSink
from watcher.config import AlertsConfig, ConfigError, KafkaConfig, WardenConfig
from watcher.kafka.broker import free_port
from watcher.kafka.clients import make_producer

KEY_ENV = "WARDEN_TEST_WEBHOOK_KEY"
KEY = "s3cret-signing-key-do-not-log"


class Receiver:
    """A real HTTP server on 127.0.0.1 that records every request and answers `fail_status`
    for the first `fail_first` requests, then 200."""

    def __init__(self, fail_first: int = 0, fail_status: int = 500) -> None:
        self.fail_first = fail_first
        self.fail_status = fail_status
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.lock:
                    n = len(receiver.requests)
                    status = receiver.fail_status if n < receiver.fail_first else 200
                    receiver.requests.append(
                        {
                            "path": self.path,
                            "headers": {k.lower(): v for k, v in self.headers.items()},
                            "body": body,
                            "status": status,
                        }
                    )
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook?token=t0ken"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def receiver():
    with Receiver() as running:
        yield running


def warden_cfg(kafka_cfg: KafkaConfig | None = None, **alerts) -> WardenConfig:
    return WardenConfig(kafka=kafka_cfg or KafkaConfig(), alerts=AlertsConfig(**alerts))


def sample_alert(**extra) -> dict:
    return build_alert(
        "incident_opened",
        "credit",
        kind="drift",
        severity="high",
        summary="4 of 12 columns drifted",
        next_action="correction starts when enough labelled errors arrive",
        **extra,
    )


def test_build_alert_and_describe():
    alert = sample_alert()
    assert (alert["alert"], alert["model"], alert["kind"]) == ("incident_opened", "credit", "drift")
    assert len(alert["alert_id"]) == 32 and int(alert["alert_id"], 16) >= 0
    assert build_alert("swapped", "m", alert_id="fixed")["alert_id"] == "fixed"
    assert sample_alert()["alert_id"] != alert["alert_id"]
    line = describe(alert)
    for part in ("credit", "incident_opened", "drift", "high", "4 of 12", "correction starts"):
        assert part in line
    assert describe({"alert": "swapped", "model": "m"}) == "model m: swapped"


def test_alert_kinds_are_the_strings_receivers_match():
    from watcher.alerts.message import AlertKind, encode_alert

    alert = build_alert(AlertKind.SWAPPED, "m", alert_id="fixed")
    assert alert["alert"] == "swapped" and type(alert["alert"]) is str
    assert b'"alert":"swapped"' in encode_alert(alert)
    assert AlertKind("incident_opened") is AlertKind.INCIDENT_OPENED


def test_webhook_retries_after_500_with_same_idempotency_key():
    alert = sample_alert()
    with Receiver(fail_first=1, fail_status=500) as rx:
        WebhookSink(rx.url, attempts=5, wait=wait_none()).send(alert)
    assert [r["status"] for r in rx.requests] == [500, 200]
    keys = {r["headers"]["idempotency-key"] for r in rx.requests}
    assert keys == {alert["alert_id"]}
    assert rx.requests[0]["body"] == rx.requests[1]["body"]
    assert json.loads(rx.requests[1]["body"]) == alert
    assert rx.requests[1]["headers"]["content-type"] == "application/json"
    assert "x-warden-signature" not in rx.requests[0]["headers"]  # no key configured


def test_webhook_429_retried_until_attempts_run_out():
    with Receiver(fail_first=99, fail_status=429) as rx:
        sink = WebhookSink(rx.url, attempts=3, wait=wait_none())
        with pytest.raises(WebhookError) as info:
            sink.send(sample_alert())
    assert info.value.status == 429
    assert len(rx.requests) == 3


def test_webhook_400_is_not_retried():
    with Receiver(fail_first=99, fail_status=400) as rx:
        sink = WebhookSink(rx.url, attempts=5, wait=wait_none())
        with pytest.raises(WebhookError) as info:
            sink.send(sample_alert())
    assert info.value.status == 400
    assert len(rx.requests) == 1
    assert "t0ken" not in str(info.value)  # the URL's query is not echoed


def test_webhook_down_logs_and_other_sinks_still_deliver(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    path = tmp_path / "alerts.jsonl"
    dead_url = f"http://127.0.0.1:{free_port()}/hook?token=t0ken"  # nothing listens there
    cfg = warden_cfg(
        log=True,
        kafka=True,  # no producer given: no Kafka sink
        file=path,
        webhook_url=dead_url,
        webhook_attempts=2,
        webhook_timeout_s=1.0,
        webhook_secret_env=KEY_ENV,
    )
    alerter = Alerter(cfg)
    assert [s.name for s in alerter.sinks] == ["log", "file", "webhook"]
    alert = sample_alert()
    started = time.monotonic()
    with capture_logs() as logs:
        alerter.send(alert)  # must not raise
    assert time.monotonic() - started < 5
    events = [e["event"] for e in logs]
    assert events.count("alert") == 1
    assert events.count("webhook_retry") == 1  # 2 attempts: one wait in between
    failed = [e for e in logs if e["event"] == "alert_sink_failed"]
    assert len(failed) == 1 and failed[0]["sink"] == "webhook"
    assert failed[0]["log_level"] == "error" and failed[0]["alert_id"] == alert["alert_id"]
    line = next(e for e in logs if e["event"] == "alert")
    assert line["log_level"] == "warning" and line["description"] == describe(alert)
    assert line["alert_id"] == alert["alert_id"]
    rendered = repr(logs)
    assert KEY not in rendered and "t0ken" not in rendered
    assert [json.loads(x) for x in path.read_text().splitlines()] == [alert]


def test_alerter_survives_a_raising_sink_and_bad_input(tmp_path):
    class Broken:
        name = "broken"

        def send(self, alert):
            raise RuntimeError("boom")

    alerter = Alerter(warden_cfg(log=False, kafka=False, file=tmp_path / "a.jsonl"))
    alerter.sinks.insert(0, Broken())
    with capture_logs() as logs:
        alerter.send({"alert": "swapped", "model": "m"})  # no alert_id: one is added
        alerter.send(None)  # type: ignore[arg-type]
    assert [e["event"] for e in logs] == ["alert_sink_failed", "alert_invalid"]
    (written,) = [json.loads(x) for x in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert written["alert_id"] == logs[0]["alert_id"]


def test_webhook_hmac_signature_verifies_and_tampering_fails(receiver, monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    alert = sample_alert(metrics={"accuracy": 0.81, "note": "ünïcode"})
    Alerter(
        warden_cfg(log=False, kafka=False, webhook_url=receiver.url, webhook_secret_env=KEY_ENV)
    ).send(alert)
    (req,) = receiver.requests
    body, headers = req["body"], req["headers"]
    ts = headers["x-warden-timestamp"]
    assert abs(int(ts) - time.time()) < 60
    assert headers["idempotency-key"] == alert["alert_id"]
    # the receiver's own check, with the key from the environment variable
    key = KEY.encode()
    expected = "sha256=" + hmac.new(key, f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["x-warden-signature"], expected)
    assert json.loads(body) == alert
    assert verify_signature(key, ts, body, headers["x-warden-signature"])
    # tampered body, wrong key, another timestamp, a stale timestamp: all rejected
    tampered = body.replace(b"0.81", b"0.99")
    assert tampered != body
    bad = "sha256=" + hmac.new(key, f"{ts}.".encode() + tampered, hashlib.sha256).hexdigest()
    assert not hmac.compare_digest(headers["x-warden-signature"], bad)
    assert not verify_signature(key, ts, tampered, headers["x-warden-signature"])
    assert not verify_signature(b"other-key", ts, body, headers["x-warden-signature"])
    assert not verify_signature(key, str(int(ts) + 1), body, headers["x-warden-signature"])
    assert not verify_signature(key, ts, body, headers["x-warden-signature"], now=int(ts) + 3600)


@pytest.mark.parametrize("value", [None, ""])
def test_missing_webhook_key_is_a_clear_error(monkeypatch, value):
    if value is None:
        monkeypatch.delenv(KEY_ENV, raising=False)
    else:
        monkeypatch.setenv(KEY_ENV, value)
    cfg = warden_cfg(webhook_url="http://127.0.0.1:9/hook", webhook_secret_env=KEY_ENV)
    with pytest.raises(ConfigError, match=r"alerts\.webhook_secret_env") as info:
        Alerter(cfg)
    assert KEY_ENV in str(info.value)


def test_kafka_sink_publishes_json_keyed_by_model(kafka_cfg):
    producer = make_producer(kafka_cfg)
    try:
        alerter = Alerter(warden_cfg(kafka_cfg, log=False, kafka=True), producer)
        assert [s.name for s in alerter.sinks] == ["kafka"]
        alerts = [sample_alert(), build_alert("swapped", "churn", version="v2")]
        with capture_logs() as logs:
            for alert in alerts:
                alerter.send(alert)
        assert not [e for e in logs if e["log_level"] == "error"]
    finally:
        producer.close()
    consumer = KafkaConsumer(
        kafka_cfg.alerts_topic,
        bootstrap_servers=kafka_cfg.bootstrap_servers,
        auto_offset_reset="earliest",
        consumer_timeout_ms=10_000,
    )
    try:
        got = {}
        for msg in consumer:
            got[msg.key] = json.loads(msg.value)
            if len(got) == len(alerts):
                break
    finally:
        consumer.close()
    assert got == {b"credit": alerts[0], b"churn": alerts[1]}


def test_file_sink_threads_never_interleave(tmp_path):
    path = tmp_path / "deep" / "er" / "alerts.jsonl"  # parents created on demand
    sink = FileSink(path)
    other = FileSink(path)  # a second sink on the same file (a reloaded Alerter) shares the lock
    padding = "x" * 5000  # long lines: interleaving would show

    def worker(t: int) -> None:
        for i in range(50):
            (sink if i % 2 else other).send(build_alert("test", f"m{t}", i=i, padding=padding))

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b""
    docs = [json.loads(line) for line in lines[:-1]]
    assert len(docs) == 400
    assert len({d["alert_id"] for d in docs}) == 400
    assert {(d["model"], d["i"]) for d in docs} == {
        (f"m{t}", i) for t in range(8) for i in range(50)
    }
