"""The pages in a real browser: a real daemon (real broker, intake, checks, alerts) opens drift
and error incidents on shifted traffic; headless Chromium then opens the incident files and
the console the daemon serves, with every request off this machine refused, and reads what a
person would read: the alert's verdict, the drifted columns, the charts drawn, Evidently's
widgets agreeing with the verdict (no "NOT detected" on a drift incident).

Run alone with `pytest -m browser`. Without Chromium these are skipped with the reason,
except under CI (`.ci/run` installs it), where its absence fails. With
`WARDEN_SCREENSHOTS=DIR` the screenshots are written there (docs/ holds the ones
docs/operating.md shows)."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import httpx
import pytest
from sqlmodel import Session, select

from storage.tables import CheckRun, Incident
from tests.e2e.test_detection_stream import stream
from tests.support.helpers import setup_model
from tests.watcher.daemon.test_grafana_prometheus import assert_named_metrics_exist
from watcher.daemon.service import Daemon, wait_for
from watcher.demo.credit import SHIFTED, generate
from watcher.kafka.clients import make_producer

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(480)]
CHROMIUM = os.environ.get("WARDEN_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WINDOW = 1500  # the demo config's window: checks judge only once all of it has arrived


def chromium() -> str:
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        if os.environ.get("CI"):
            pytest.fail(f"Chromium is required under CI ({CHROMIUM}; .ci/run installs it)")
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium chromium-driver)")
    return CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")


def daemon_config(workdir: Path, width: int, kafka_cfg) -> Path:
    config, *_ = setup_model(workdir, width, kafka_cfg.bootstrap_servers)
    text = config.read_text()
    for old, new in (
        ('group_id = "warden-demo"', f'group_id = "{kafka_cfg.group_id}"'),
        (
            "[kafka]\n",
            f'[kafka]\npredictions_topic = "{kafka_cfg.predictions_topic}"\n'
            f'labels_topic = "{kafka_cfg.labels_topic}"\n'
            f'alerts_topic = "{kafka_cfg.alerts_topic}"\n',
        ),
        ("[alerts]\n", '[alerts]\nfile = "alerts.jsonl"\n'),
        (
            "[models.credit.correction]\nenabled = true",
            "[models.credit.correction]\nenabled = false",
        ),
        ("interval_seconds = 3", "interval_seconds = 1"),
        ("min_rows = 300", f"min_rows = {WINDOW}"),
        ("min_labelled = 200", f"min_labelled = {WINDOW}"),
    ):
        assert old in text, old
        text = text.replace(old, new)
    config.write_text(text)
    return config


@pytest.fixture(scope="module")
def daemon_after_incidents(tmp_path_factory, trained, broker):
    """A running daemon with a drift and an error incident, their alerts and their pages."""
    import uuid

    from watcher.config import KafkaConfig
    from watcher.kafka.clients import ensure_topics

    tag = uuid.uuid4().hex[:8]
    kafka_cfg = KafkaConfig(
        bootstrap_servers=broker.bootstrap,
        group_id=f"g-{tag}",
        predictions_topic=f"predictions-{tag}",
        labels_topic=f"labels-{tag}",
        alerts_topic=f"alerts-{tag}",
    )
    ensure_topics(kafka_cfg, [kafka_cfg.predictions_topic, kafka_cfg.labels_topic])
    folder, width = trained
    work = tmp_path_factory.mktemp("browser")
    for name in ("reference.csv", "initial-weights.pt"):
        (work / name).write_bytes((folder / name).read_bytes())
    daemon = Daemon(daemon_config(work, width, kafka_cfg))
    producer = make_producer(kafka_cfg)
    try:
        daemon.start()
        stream(producer, kafka_cfg, daemon.registry, generate(WINDOW, SHIFTED, seed=61))
        alerts = work / "alerts.jsonl"

        def ready() -> bool:
            found = opened(daemon)
            pages = [daemon.cfg.storage.reports / "credit" / f"incident-{i}.html" for i in found]
            return {"drift", "error"} <= set(found.values()) and all(p.exists() for p in pages)

        assert wait_for(ready, 240), opened(daemon)
        assert wait_for(lambda: len(latest_alerts(alerts)) >= 2, 30)
        # a few more rounds: the pages are rewritten as the incidents go on failing
        assert wait_for(lambda: judged(daemon, "drift") >= 4, 120)
        yield daemon, alerts
    finally:
        producer.close()
        daemon.shutdown()


def judged(daemon: Daemon, kind: str) -> int:
    with Session(daemon.engine) as session:
        runs = session.exec(
            select(CheckRun).where(CheckRun.kind == kind, CheckRun.skipped_reason.is_(None))
        )
        return len(runs.all())


def opened(daemon: Daemon) -> dict[int, str]:
    with Session(daemon.engine) as session:
        return {i.id: i.kind for i in session.exec(select(Incident))}


def latest_alerts(path: Path) -> dict[int, dict]:
    """The last alert each incident sent (opened, or escalated), by incident id."""
    out: dict[int, dict] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            alert = json.loads(line)
            if alert.get("incident_id") is not None and "summary" in alert:
                out[int(alert["incident_id"])] = alert
    return out


@pytest.fixture(scope="module")
def browser():
    path = chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        running = p.chromium.launch(executable_path=path, args=ARGS)
        yield running
        running.close()


def open_page(browser, url: str, allowed: str):
    """A page that refuses every request off this machine (and records it)."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    refused: list[str] = []
    errors: list[str] = []

    def guard(route):
        if route.request.url.startswith((allowed, "data:", "about:", "blob:")):
            route.continue_()
        else:
            refused.append(route.request.url)
            route.abort()

    page.route("**/*", guard)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(url)
    page.wait_for_load_state("load")
    return page, refused, errors


def screenshot(page, name: str) -> None:
    folder = os.environ.get("WARDEN_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / name), full_page=True)


def incident_id(daemon: Daemon, kind: str) -> int:
    return next(i for i, k in opened(daemon).items() if k == kind)


def test_the_drift_page_shows_the_alerts_verdict_in_chromium(browser, daemon_after_incidents):
    daemon, alerts = daemon_after_incidents
    drift = incident_id(daemon, "drift")
    alert = latest_alerts(alerts)[drift]
    path = daemon.cfg.storage.reports / "credit" / f"incident-{drift}.html"
    page, refused, errors = open_page(browser, path.as_uri(), "file://")
    page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length >= 2")
    assert page.inner_text("#summary") == alert["summary"]
    assert page.inner_text("#next-action") == alert["next_action"]
    where = page.inner_text("#where")
    for column in alert["top_drifted_columns"]:
        assert f"{column}:" in where
    assert {"utilization", "income"} <= set(alert["top_drifted_columns"])
    assert page.locator("#chart-drift-columns .main-svg").count() >= 1
    assert page.locator("#chart-drift-history .scatterlayer .trace").count() >= 2
    # rewritten while the incident went on: its history holds the later checks too
    history = page.evaluate("document.getElementById('chart-drift-history').data[0].x")
    assert len(history) >= 3, history
    header = page.inner_text("#header")
    assert f"incident #{drift}" in header and "credit v1" in header and "rows" in header
    # Evidently's widgets, framed in the page: drawn, and agreeing with the verdict
    frame = page.frame_locator("iframe.evidently")
    frame.get_by_text("Drift in column 'utilization'").first.wait_for(timeout=30_000)
    evidently = frame.locator("body").inner_text()
    assert "warden's verdict" in evidently and "Data drift detected" in evidently
    for text in (page.locator("body").inner_text(), evidently):
        assert "NOT detected" not in text and "Dataset Drift" not in text
    assert not refused, f"the page asked the network for {refused}"
    assert not errors, errors
    screenshot(page, "incident-drift.png")
    page.close()


def test_the_error_page_shows_the_bound_and_the_slice_in_chromium(browser, daemon_after_incidents):
    daemon, alerts = daemon_after_incidents
    error = incident_id(daemon, "error")
    alert = latest_alerts(alerts)[error]
    path = daemon.cfg.storage.reports / "credit" / f"incident-{error}.html"
    page, refused, errors = open_page(browser, path.as_uri(), "file://")
    page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length >= 3")
    assert page.inner_text("#summary") == alert["summary"]
    top = alert["error_slices"][0]
    assert top["column"] == "utilization"
    assert f"utilization ≥ {top['low']:.4g}: {top['error_rate']:.0%} errors" in page.inner_text(
        "#where"
    )
    assert page.locator("#chart-quality .indicatorlayer").count() == 1
    assert page.locator("#chart-error-slices .bars").count() >= 1
    frame = page.frame_locator("iframe.evidently")
    frame.get_by_text("Accuracy metric (reference)").first.wait_for(timeout=30_000)
    assert not refused and not errors, (refused, errors)
    screenshot(page, "incident-error.png")
    page.close()


def test_the_console_shows_models_timeline_incidents_and_their_pages(
    browser, daemon_after_incidents
):
    daemon, alerts = daemon_after_incidents
    url = daemon.http.url
    page, refused, errors = open_page(browser, f"{url}/", url)
    page.wait_for_function("document.querySelectorAll('#timeline-credit .js-plotly-plot').length")
    row = page.locator('tr.model[data-model="credit"]')
    assert row.locator(".serving").inner_text().startswith("v1")
    assert "open incidents: " in row.locator(".state").inner_text()
    timeline = page.locator("#timeline-credit")
    assert timeline.locator(".scatterlayer .trace").count() >= 4  # quality, bound, drift, events
    assert "incident opened" in timeline.inner_text()
    drift = incident_id(daemon, "drift")
    incident_row = page.locator(f'tr.incident[data-incident="{drift}"]')
    assert latest_alerts(alerts)[drift]["summary"] in incident_row.inner_text()
    assert not refused and not errors, (refused, errors)
    screenshot(page, "console.png")
    # its page, served live by the daemon: the same verdict, plotly.js from the daemon
    incident_row.locator("a").first.click()
    page.wait_for_url(f"{url}/incidents/{drift}")
    page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length >= 2")
    assert page.inner_text("#summary") == latest_alerts(alerts)[drift]["summary"]
    frame = page.frame_locator("iframe.evidently")
    frame.get_by_text("Drift in column 'utilization'").first.wait_for(timeout=30_000)
    assert not refused and not errors, (refused, errors)
    page.close()
    # the dashboard's and the rules' metrics, from this daemon after a real incident
    metrics = httpx.get(f"{url}/metrics", timeout=10).text
    assert_named_metrics_exist(metrics)
    assert 'warden_quality_bound{metric="accuracy",model="credit"}' in metrics


def opening_alerts(log: Path) -> dict[int, dict]:
    """The `incident_opened` alerts of the daemon's JSON log, by incident id."""
    out = {}
    for line in log.read_text().splitlines():
        if '"alert"' not in line:
            continue
        entry = json.loads(line)
        if entry.get("event") == "alert" and entry.get("alert") == "incident_opened":
            out[int(entry["incident_id"])] = entry
    return out


def test_after_the_demo_its_closing_lines_lead_to_the_alerts_verdicts(tmp_path, browser):
    from rich.console import Console

    from watcher.demo.run import run_demo

    console = Console(record=True, width=250)
    code = run_demo(tmp_path / "demo", rate=400, normal_rows=2000, timeout_s=120, console=console)
    output = console.export_text()
    assert code == 0, output[-3000:]
    closing = output[output.rindex("incident pages") :]
    assert re.search(r"console: http://127\.0\.0\.1:\d+/ \(read-only; up while", closing), closing
    pages = [Path(line.strip()) for line in closing.splitlines() if line.startswith("  /")]
    alerts = opening_alerts(tmp_path / "demo" / "warden.log")
    # every incident listed alerted when it opened (the daemon runs on until the demo ends,
    # so a later round may open one more after the closing lines)
    assert pages and {int(p.stem.split("-")[1]) for p in pages} <= set(alerts)
    corrected = 0
    for path in pages:
        alert = alerts[int(path.stem.split("-")[1])]
        page, refused, errors = open_page(browser, path.as_uri(), "file://")
        page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length >= 2")
        # what the opening alert said, word for word, and how the incident ended
        assert f"incident opened ({alert['severity']}): “{alert['summary']}”" in page.inner_text(
            "#story"
        )
        assert page.inner_text("#summary")
        text = page.locator("body").inner_text()
        if alert["kind"] == "drift":
            assert "NOT detected" not in text
        if "corrected" in page.inner_text("#header"):  # the candidate that corrected it
            corrected += 1
            assert "swapped" in page.inner_text("#story") and "v1 → v2" in page.inner_text("#story")
            next_action = page.inner_text("#next-action")
            assert "serving v2; `warden rollback credit` restores" in next_action
        assert not refused and not errors, (refused, errors)
        page.close()
    assert corrected, "the swap corrected the incidents open at the time"
