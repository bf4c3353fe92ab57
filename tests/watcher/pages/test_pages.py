"""Incident pages written after real checks (Evidently, ONNX) on stored traffic: one
self-contained file per incident that tells the alert's story, charts what decided it, never
contradicts the verdict (Evidently's widgets included), shows the exact next action as the
candidate moves on, and is rewritten as the incident evolves."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest
from sqlmodel import Session, select

from storage.tables import Candidate, Incident, utcnow
from tests.support.helpers import setup_model, store_traffic
from watcher.checks.checker import ModelChecker
from watcher.checks.evidently_page import wait_for_pages
from watcher.checks.incidents import record_outcomes
from watcher.demo.credit import NORMAL, SHIFTED
from watcher.demo.run import MODEL
from watcher.pages.incident_page import page_paths, publish_pages
from watcher.pages.sources import Sources
from watcher.pages.story import load_story


@pytest.fixture(scope="module")
def incidents(tmp_path_factory, trained):
    """A model that saw clean traffic, then three windows of covariate + concept shift: a drift
    and an error incident (and their history of checks), opened the way the daemon opens them."""
    folder, width = trained
    work = tmp_path_factory.mktemp("pages")
    for name in ("reference.csv", "initial-weights.pt"):
        (work / name).write_bytes((folder / name).read_bytes())
    config, cfg, engine, registry = setup_model(work, width)
    checker = ModelChecker(MODEL, engine, registry, cfg.storage.reports)
    store_traffic(engine, registry, 1500, NORMAL, seed=11)
    for i in range(2):
        record_outcomes(engine, MODEL, checker.run(cfg.models[MODEL]), cfg.models[MODEL].checks)
        store_traffic(engine, registry, 300, NORMAL, seed=20 + i)
    for i in range(2):
        store_traffic(engine, registry, 750, SHIFTED, seed=40 + i)
        outcomes = checker.run(cfg.models[MODEL])
        record_outcomes(engine, MODEL, outcomes, cfg.models[MODEL].checks)
    wait_for_pages()  # as the daemon's round does before publishing the incident pages
    src = Sources(lambda: cfg, engine, registry, config)
    with Session(engine) as session:
        found = {i.kind: i for i in session.exec(select(Incident))}
    assert {"drift", "error"} <= set(found), found
    return src, found


def page_text(path: Path) -> tuple[str, str]:
    """The page's own HTML and the Evidently page framed in it (unescaped)."""
    page = path.read_text(encoding="utf-8")
    framed = re.search(r'srcdoc="([^"]*)"', page)
    return page, html.unescape(framed.group(1)) if framed else ""


def test_every_incident_gets_one_self_contained_page(incidents):
    src, found = incidents
    written = publish_pages(src, MODEL)
    assert sorted(written) == sorted(src.page_path(MODEL, i.id) for i in found.values())
    assert page_paths(src, MODEL) == sorted(written, key=lambda p: int(p.stem.split("-")[1]))
    for path in written:
        page, framed = page_text(path)
        assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
        assert "window.Plotly" in page or "Plotly.newPlot" in page
        assert not re.search(r"<script[^>]+src=", page), "the page depends on a download"
        assert not re.search(r"<link[^>]+href=.https?:", page)
        assert "window.drawDashboard(" in framed, "Evidently's widgets are missing"
        assert not re.search(r"<script[^>]+src=", framed)


def test_the_drift_page_tells_the_alerts_story_and_never_contradicts_it(incidents):
    src, found = incidents
    drift = found["drift"]
    path = src.page_path(MODEL, drift.id)
    publish_pages(src, MODEL)
    page, framed = page_text(path)
    story = load_story(src, drift.id)
    # the header: model, version, incident, kind, severity, status, window and reference
    assert f"incident #{drift.id}" in page and f"{MODEL} {drift.model_version}" in page
    assert f"{story.window.rows} rows" in page and f"seq {story.window.start_seq}" in page
    assert story.window.start_ts is not None and story.window.end_ts is not None
    assert "reference set reference.csv" in page
    # the verdict in the alert's words (the incident's summary is what the alert sends)
    assert html.escape(drift.summary, quote=False) in page
    for column in ("utilization", "income"):
        assert column in story.where[0] + story.where[1]
        assert f"<li>{column}:" in page
    assert "sd above normal" in page
    # what decided it: each column against its normal range, and its history
    assert 'id="chart-drift-columns"' in page and 'id="chart-drift-history"' in page
    assert len(story.history) >= 4  # the clean checks before, the failing ones after
    # nothing contradicts the verdict: no preset headline, each column at warden's threshold
    for text in (page, framed):
        assert "NOT detected" not in text and "Dataset Drift" not in text
    assert "warden's verdict" in framed and "utilization" in framed
    report = Path(drift.report_path).read_text(encoding="utf-8")
    assert "Dataset Drift" not in report and "warden's verdict" in report


def test_the_error_page_shows_the_bound_the_reference_and_the_slice(incidents):
    src, found = incidents
    error = found["error"]
    publish_pages(src, MODEL)
    page, framed = page_text(src.page_path(MODEL, error.id))
    figures = error.figures
    assert figures["bound"] < figures["baseline_accuracy"]
    assert f"bound {figures['bound']:.3f}" in page  # quality against its bound
    for chart in ("quality", "quality-history", "error-slices"):
        assert f'id="chart-{chart}"' in page
    top = figures["error_slices"][0]
    assert top["column"] == "utilization" and top["high"] is None
    assert f"utilization ≥ {top['low']:.4g}: {top['error_rate']:.0%} errors" in page
    # Evidently's widgets compare current with reference, tested at warden's bound only
    assert "Accuracy metric (reference)" in framed
    assert f"Greater or Equal {figures['bound']:.3f}" in framed
    assert framed.count("Confusion Matrix") == 1, "one confusion matrix, not one per metric"
    assert "± 0." not in framed  # none of Evidently's default ±20 % tests


def test_the_next_action_follows_the_candidate(incidents):
    src, found = incidents
    error = found["error"]
    cand_id = f"{MODEL}-v2-pages"
    with Session(src.engine) as session:
        session.add(
            Candidate(
                id=cand_id,
                model=MODEL,
                version="v2",
                parent_version="v1",
                incident_id=error.id,
                status="awaiting_approval",
                champion_metrics={"recent_holdout_accuracy": 0.41},
                candidate_metrics={"recent_holdout_accuracy": 0.88},
                verdict={"reasons": ["recent holdout accuracy 0.410 -> 0.880"]},
            )
        )
        incident = session.get(Incident, error.id)
        incident.candidate_id, incident.updated_at = cand_id, utcnow()
        session.add(incident)
        session.commit()
    publish_pages(src, MODEL)
    page, _ = page_text(src.page_path(MODEL, error.id))
    config = src.config_path
    # the awaiting_approval alert's words, and exactly what to type (approval stays in config)
    assert f"add &#34;{cand_id}&#34; to models.{MODEL}.approval.approved in {config}" in page
    assert f"warden approve {cand_id} --config {config}" in page
    assert "recent holdout accuracy 0.410 -&gt; 0.880" in page
    markup = re.sub(r'<script\b.*?</script>|srcdoc="[^"]*"', "", page, flags=re.S)
    assert not re.search(r"<form|<button|method=", markup, re.I)  # nothing to click
    with Session(src.engine) as session:
        cand = session.get(Candidate, cand_id)
        cand.status, cand.updated_at = "active", utcnow()
        incident = session.get(Incident, error.id)
        incident.status, incident.resolved_at, incident.updated_at = "corrected", utcnow(), utcnow()
        session.add_all([cand, incident])
        session.commit()
    before = src.page_path(MODEL, error.id).stat().st_mtime_ns
    assert src.page_path(MODEL, error.id) in publish_pages(src, MODEL)  # it changed: rewritten
    page, _ = page_text(src.page_path(MODEL, error.id))
    assert f"serving v2; `warden rollback {MODEL}` restores the previous version" in page
    assert src.page_path(MODEL, error.id).stat().st_mtime_ns > before
    assert src.page_path(MODEL, error.id) not in publish_pages(src, MODEL)  # settled: left alone


def test_verdict_lines_mark_each_rule_by_its_status_and_read_old_verdicts():
    from watcher.pages.render import verdict_lines

    verdict = {
        "passed": False,
        "reasons": ["strategy fine_tune chosen of 3 tried", "ONNX parity ok", "gain too small"],
        "rules": [
            {"rule": "parity", "status": "passed", "message": "ONNX parity ok", "figures": {}},
            {"rule": "present", "status": "failed", "message": "gain too small", "figures": {}},
        ],
    }
    assert verdict_lines(verdict) == [
        ("", "strategy fine_tune chosen of 3 tried"),
        ("passed", "ONNX parity ok"),
        ("failed", "gain too small"),
    ]
    # a verdict stored before rule results: its reasons, unmarked
    assert verdict_lines({"reasons": ["recent accuracy +0.12"]}) == [("", "recent accuracy +0.12")]
    assert verdict_lines(None) == []
