"""The daemon's HTTP endpoint over real HTTP on 127.0.0.1: health, readiness, the status
document from a real database (SQLite and PostgreSQL), Prometheus metrics, bearer-token auth,
callbacks that fail, a busy port, and a clean stop."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from storage.db import make_engine
from storage.registry import ModelRegistry
from tests.watcher.cli.test_status_cli import (
    BIAS_FIGURES,
    DRIFT_FIGURES,
    QUALITY_FIGURES,
    seed_rows,
)
from watcher.config import ConfigError, HttpConfig, WardenConfig
from watcher.daemon.endpoint import DaemonEndpoint
from watcher.daemon.metrics import WardenMetrics, open_incident_counts
from watcher.daemon.status import status_document
from watcher.http_server import HttpServerError
from watcher.intake.consumer import IngestStats

TOKEN_ENV = "WARDEN_TEST_HTTP_TOKEN"
TOKEN = "s3cret-token-with-enough-entropy-0123456789"


@contextmanager
def serving(
    cfg: HttpConfig | None = None,
    *,
    status=lambda: {"models": []},
    ready=lambda: (True, "consuming"),
    metrics: WardenMetrics | None = None,
) -> Iterator[DaemonEndpoint]:
    server = DaemonEndpoint(
        cfg or HttpConfig(port=0),
        status=status,
        ready=ready,
        metrics=metrics or WardenMetrics(intake=lambda: None, incidents=dict),
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """Parsed exposition: (sample name, sorted labels) → value."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_status_ready_health_and_metrics_from_a_real_database(db_url, tmp_path):
    engine = make_engine(db_url)
    ids = seed_rows(engine)
    cfg = WardenConfig.model_validate(
        {"storage": {"url": db_url, "registry": str(tmp_path / "registry")}}
    )
    registry = ModelRegistry(cfg.storage.registry)
    stats = IngestStats()
    metrics = WardenMetrics(intake=lambda: stats, incidents=lambda: open_incident_counts(engine))
    readiness = {"ok": False, "reason": "starting: no partitions assigned yet"}

    with serving(
        status=lambda: status_document(cfg, engine, registry),
        ready=lambda: (readiness["ok"], readiness["reason"]),
        metrics=metrics,
    ) as server:
        assert server.port and server.url == f"http://127.0.0.1:{server.port}"
        with httpx.Client(base_url=server.url, timeout=10) as http:
            r = http.get("/healthz")
            assert (r.status_code, r.json()) == (200, {"status": "ok"})

            r = http.get("/readyz")
            assert r.status_code == 503
            assert r.json() == {"ready": False, "reason": "starting: no partitions assigned yet"}
            readiness.update(ok=True, reason="consuming")
            r = http.get("/readyz")
            assert (r.status_code, r.json()) == (200, {"ready": True, "reason": "consuming"})

            r = http.get("/status")
            assert r.status_code == 200 and r.headers["content-type"] == "application/json"
            doc = r.json()
            assert [i["id"] for i in doc["incidents"]] == [ids["open_drift"], ids["open_bias"]]
            assert doc["dead_letters"] == 1 and doc["daemons"][0]["state"] == "consuming"
            last = {(c["model"], c["kind"]): c["id"] for c in doc["checks"]}
            assert last["credit", "drift"] == ids["drift"]

            # nothing observed yet: the open incidents come straight from the database
            r = http.get("/metrics")
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
            got = samples(r.text)
            open_key = (("kind", "drift"), ("model", "credit"), ("severity", "high"))
            assert got["warden_open_incidents", open_key] == 1
            bias_key = (("kind", "bias"), ("model", "fraud"), ("severity", "warning"))
            assert got["warden_open_incidents", bias_key] == 1
            assert got["warden_ingested_total", (("kind", "predictions"),)] == 0
            assert got["warden_consumed_total", ()] == 0
            assert ("warden_ingest_lag", ()) not in got  # lag unknown yet: no sample

            metrics.observe_check("credit", "drift", 1.25, False, False, DRIFT_FIGURES)
            metrics.observe_check("credit", "error", 0.6, False, False, QUALITY_FIGURES)
            metrics.observe_check("credit", "error", 0.0, True, True, {})
            metrics.observe_check("fraud", "bias", 0.4, False, False, BIAS_FIGURES)
            stats.consumed, stats.predictions, stats.labels, stats.dead_letters = 1500, 1200, 290, 3
            stats.lag = 42

            got = samples(http.get("/metrics").text)
            credit = (("model", "credit"),)
            assert got["warden_drift_share", credit] == 0.5
            assert got["warden_drifted_columns", credit] == 3
            for metric in ("accuracy", "precision", "recall", "f1"):
                key = (("metric", metric), ("model", "credit"))
                assert got["warden_quality", key] == QUALITY_FIGURES[metric]
            assert not any(
                name == "warden_quality" and ("metric", "baseline_accuracy") in labels
                for name, labels in got
            )
            for gap, value in BIAS_FIGURES["gaps"]["sex"].items():
                key = (("attribute", "sex"), ("gap", gap), ("model", "fraud"))
                assert got["warden_group_gap", key] == value
            drift = (("kind", "drift"), ("model", "credit"))
            assert got["warden_check_duration_seconds_count", drift] == 1
            assert got["warden_check_duration_seconds_sum", drift] == 1.25
            error = (("kind", "error"), ("model", "credit"))
            assert got["warden_check_duration_seconds_count", error] == 1  # not the skipped one
            for kind, result in (("drift", "failed"), ("error", "failed"), ("error", "skipped")):
                key = (("kind", kind), ("model", "credit"), ("result", result))
                assert got["warden_checks_total", key] == 1
            for kind, value in (("predictions", 1200), ("labels", 290), ("dead_letters", 3)):
                assert got["warden_ingested_total", (("kind", kind),)] == value
            assert got["warden_consumed_total", ()] == 1500
            assert got["warden_ingest_lag", ()] == 42


def test_bias_gaps_no_longer_reported_are_dropped():
    metrics = WardenMetrics()
    metrics.observe_check("fraud", "bias", 0.4, False, False, BIAS_FIGURES)
    age = {"gaps": {"age_band": {"demographic_parity_difference": 0.05}}}
    metrics.observe_check("fraud", "bias", 0.3, True, False, age)
    gaps = {labels for name, labels in samples(metrics.exposition()[0].decode()) if "gap" in name}
    assert gaps == {
        (("attribute", "age_band"), ("gap", "demographic_parity_difference"), ("model", "fraud"))
    }


def test_two_metrics_objects_do_not_share_series():
    a, b = WardenMetrics(), WardenMetrics()
    a.observe_check("credit", "drift", 1.0, True, False, {"drift_share": 0.1})
    assert "warden_drift_share" in a.exposition()[0].decode()
    assert 'warden_drift_share{model="credit"}' not in b.exposition()[0].decode()


def test_bearer_token_guards_everything_but_healthz(monkeypatch):
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    with (
        serving(HttpConfig(port=0, token_env=TOKEN_ENV)) as server,
        httpx.Client(base_url=server.url, timeout=10) as http,
    ):
        assert http.get("/healthz").status_code == 200  # liveness needs no token
        for path in ("/status", "/metrics", "/readyz"):
            for headers in (
                {},
                {"Authorization": "Bearer wrong-token"},
                {"Authorization": f"Bearer {TOKEN}x"},
                {"Authorization": f"Basic {TOKEN}"},
                {"Authorization": "Bearer"},
            ):
                r = http.get(path, headers=headers)
                assert r.status_code == 401, (path, headers)
                assert r.headers["www-authenticate"] == "Bearer"
                assert TOKEN not in r.text
            r = http.get(path, headers={"Authorization": f"Bearer {TOKEN}"})
            assert r.status_code == 200, path
        r = http.get("/status", headers={"Authorization": f"bearer {TOKEN}"})
        assert r.json() == {"models": []}


@pytest.mark.parametrize("value", [None, "", "   "])
def test_missing_token_is_a_clear_error(monkeypatch, value):
    if value is None:
        monkeypatch.delenv(TOKEN_ENV, raising=False)
    else:
        monkeypatch.setenv(TOKEN_ENV, value)
    server = DaemonEndpoint(
        HttpConfig(port=0, token_env=TOKEN_ENV),
        status=dict,
        ready=lambda: (True, "ok"),
        metrics=WardenMetrics(),
    )
    with pytest.raises(HttpServerError, match=f"http.token_env: .*{TOKEN_ENV}") as err:
        server.start()
    assert isinstance(err.value, ConfigError)
    assert server.port is None


def test_failing_callbacks_do_not_break_the_scrape():
    def broken():
        raise RuntimeError("database unavailable")

    metrics = WardenMetrics(intake=broken, incidents=broken)
    metrics.observe_check("credit", "drift", 0.9, True, False, {"drift_share": 0.2})
    with (
        serving(status=broken, ready=broken, metrics=metrics) as server,
        httpx.Client(base_url=server.url, timeout=10) as http,
    ):
        r = http.get("/metrics")
        assert r.status_code == 200
        got = samples(r.text)
        assert got["warden_drift_share", (("model", "credit"),)] == 0.2
        assert not any(name.startswith("warden_ingested") for name, _ in got)
        r = http.get("/readyz")
        assert r.status_code == 503 and r.json()["ready"] is False
        assert "RuntimeError" in r.json()["reason"]
        r = http.get("/status")
        assert r.status_code == 503 and "RuntimeError" in r.json()["error"]
        assert http.get("/healthz").status_code == 200  # the server itself is fine

    # one callback failing leaves the other's series in place
    metrics = WardenMetrics(intake=lambda: IngestStats(consumed=5, predictions=5), incidents=broken)
    got = samples(metrics.exposition()[0].decode())
    assert got["warden_consumed_total", ()] == 5
    assert not any(name == "warden_open_incidents" for name, _ in got)


def test_port_in_use_is_a_clear_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = DaemonEndpoint(
            HttpConfig(port=port), status=dict, ready=lambda: (True, ""), metrics=WardenMetrics()
        )
        with pytest.raises(HttpServerError, match=f"http.port: cannot listen on 127.0.0.1:{port}"):
            server.start()
    # and a second warden on a running one's port
    with serving() as first:
        second = DaemonEndpoint(
            HttpConfig(port=first.port),
            status=dict,
            ready=lambda: (True, ""),
            metrics=WardenMetrics(),
        )
        with pytest.raises(HttpServerError, match="http.port"):
            second.start()
        assert httpx.get(f"{first.url}/healthz", timeout=10).status_code == 200


def test_stop_frees_the_port_and_joins_the_thread():
    with serving() as server:
        port, thread = server.port, server._thread
        with httpx.Client(base_url=server.url, timeout=10) as http:  # a keep-alive connection
            assert http.get("/healthz").status_code == 200
            server.stop()
            assert not thread.is_alive()
            with pytest.raises(httpx.TransportError):
                http.get("/healthz")
    # the same port serves again right away (a restarted daemon)
    with serving(HttpConfig(port=port)) as again:
        assert again.port == port
        assert httpx.get(f"{again.url}/healthz", timeout=10).status_code == 200
