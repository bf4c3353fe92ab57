"""The read-only web console over real HTTP on 127.0.0.1, from a real database (SQLite and
PostgreSQL): the page, the live incident pages, Evidently's page of an incident, plotly.js
from the installed package, the same bearer-token rule as the rest of the endpoint, and no
write action anywhere."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from sqlmodel import Session

from storage.db import make_engine
from storage.registry import ModelRegistry
from storage.tables import Incident
from tests.watcher.cli.test_status_cli import seed_rows
from tests.watcher.daemon.test_http_api import TOKEN, TOKEN_ENV
from watcher.config import HttpConfig, WardenConfig
from watcher.daemon.endpoint import DaemonEndpoint
from watcher.daemon.metrics import WardenMetrics
from watcher.daemon.status import status_document
from watcher.pages.sources import Sources


@contextmanager
def console(db_url: str, folder: Path, http: HttpConfig | None = None) -> Iterator[tuple]:
    engine = make_engine(db_url)
    ids = seed_rows(engine)
    cfg = WardenConfig.model_validate(
        {
            "storage": {
                "url": db_url,
                "registry": str(folder / "registry"),
                "reports": str(folder / "reports"),
            }
        }
    )
    registry = ModelRegistry(cfg.storage.registry)
    src = Sources(lambda: cfg, engine, registry, folder / "warden.toml")
    server = DaemonEndpoint(
        http or HttpConfig(port=0),
        status=lambda: status_document(cfg, engine, registry),
        ready=lambda: (True, "consuming"),
        metrics=WardenMetrics(intake=lambda: None, incidents=dict),
        console=src,
    )
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            yield client, ids, engine
    finally:
        server.stop()
        engine.dispose()


def test_console_shows_incidents_and_candidates_and_serves_their_pages(db_url, tmp_path):
    with console(db_url, tmp_path) as (http, ids, _):
        r = http.get("/")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        assert "default-src 'none'" in r.headers["content-security-policy"]
        page = r.text
        assert '<script src="assets/plotly.min.js"></script>' in page  # no CDN
        for key in ("open_drift", "resolved", "open_bias"):  # every incident, with its page
            assert f'<a href="incidents/{ids[key]}">#{ids[key]}</a>' in page
        assert "3/8 columns drifted" in page and "sex: equal_opportunity_difference" in page
        # a validated candidate: the gate's figures, its reasons and how to approve it
        assert "credit-v2-abc" in page and "recent accuracy +0.12" in page
        assert f"warden approve credit-v2-abc --config {tmp_path / 'warden.toml'}" in page
        assert "0.710" in page and "0.830" in page

        r = http.get(f"/incidents/{ids['open_drift']}")
        assert r.status_code == 200
        assert "3/8 columns drifted (share 0.50, threshold 0.3)" in r.text
        assert '<script src="../assets/plotly.min.js"></script>' in r.text
        assert 'id="chart-drift-columns"' in r.text and '<a href="../">' in r.text
        assert f'src="{ids["open_drift"]}/evidently"' in r.text

        js = http.get("/assets/plotly.min.js")
        assert js.status_code == 200 and js.headers["content-type"].startswith(
            "application/javascript"
        )
        assert len(js.content) > 1_000_000 and b"plotly" in js.content[:2000].lower()

        assert http.get("/incidents/999999").status_code == 404
        assert http.get("/incidents/not-a-number").status_code == 422


def test_the_console_has_no_write_action(tmp_path):
    with console(f"sqlite:///{tmp_path / 'w.db'}", tmp_path) as (http, ids, _):
        for method in ("POST", "PUT", "PATCH", "DELETE"):
            for path in ("/", f"/incidents/{ids['open_drift']}", "/assets/plotly.min.js"):
                assert http.request(method, path).status_code == 405, (method, path)
        page = http.get("/").text
        assert "<form" not in page and "<button" not in page


def test_the_console_needs_the_token_off_localhost(tmp_path, monkeypatch):
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    http_cfg = HttpConfig(port=0, token_env=TOKEN_ENV)
    with console(f"sqlite:///{tmp_path / 'w.db'}", tmp_path, http_cfg) as (http, ids, _):
        paths = ("/", f"/incidents/{ids['open_drift']}", "/assets/plotly.min.js")
        for path in (*paths, f"/incidents/{ids['open_drift']}/evidently"):
            assert http.get(path).status_code == 401, path
            bad = http.get(path, headers={"Authorization": "Bearer wrong"})
            assert bad.status_code == 401, path
        auth = {"Authorization": f"Bearer {TOKEN}"}
        for path in paths:
            assert http.get(path, headers=auth).status_code == 200, path
        assert http.get("/healthz").status_code == 200  # the liveness probe stays open


def test_evidently_pages_are_served_only_from_the_reports_folder(tmp_path):
    with console(f"sqlite:///{tmp_path / 'w.db'}", tmp_path) as (http, ids, engine):
        drift = ids["open_drift"]
        # seeded with /reports/…: outside this config's reports folder, so never served
        assert http.get(f"/incidents/{drift}/evidently").status_code == 404
        outside = tmp_path / "secret.html"
        outside.write_text("<html>not a report</html>")
        report = tmp_path / "reports" / "credit" / "20260101T000000Z-drift.html"
        report.parent.mkdir(parents=True)
        report.write_text("<!DOCTYPE html><html><body>an Evidently page</body></html>")
        for path, status in ((outside, 404), (report, 200)):
            with Session(engine) as session:
                incident = session.get(Incident, drift)
                incident.report_path = str(path)
                session.add(incident)
                session.commit()
            r = http.get(f"/incidents/{drift}/evidently")
            assert r.status_code == status, path
        assert "an Evidently page" in r.text and "frame-ancestors 'self'" in str(r.headers)


def test_an_endpoint_without_console_sources_serves_no_console():
    server = DaemonEndpoint(
        HttpConfig(port=0),
        status=lambda: {"models": []},
        ready=lambda: (True, "ok"),
        metrics=WardenMetrics(intake=lambda: None, incidents=dict),
    )
    with server, httpx.Client(base_url=server.url, timeout=10) as http:
        assert http.get("/").status_code == 404
        assert http.get("/healthz").status_code == 200


@pytest.fixture(autouse=True)
def _no_token(monkeypatch):
    monkeypatch.delenv(TOKEN_ENV, raising=False)
