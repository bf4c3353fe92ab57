"""A drifted window opens an incident with the drifted columns on top; a clean one does not."""

from pathlib import Path

import pytest
from sqlmodel import Session, select

from storage.tables import CheckRun, Incident
from tests.support.helpers import setup_model, store_frame, store_traffic
from watcher.checks.checker import ModelChecker
from watcher.checks.evidently_page import wait_for_pages
from watcher.checks.incidents import record_outcomes
from watcher.demo.credit import COVARIATE_ONLY, NORMAL, SHIFTED, generate
from watcher.demo.run import MODEL


def run_checks(cfg, engine, registry):
    checker = ModelChecker(MODEL, engine, registry, cfg.storage.reports)
    outcomes = checker.run(cfg.models[MODEL])
    return outcomes, record_outcomes(engine, MODEL, outcomes)


@pytest.mark.slow
def test_clean_window_opens_nothing(workdir, trained):
    _, cfg, engine, registry = setup_model(workdir, trained[1])
    store_traffic(engine, registry, 1500, NORMAL, seed=11)
    outcomes, changes = run_checks(cfg, engine, registry)
    assert [o.passed for o in outcomes] == [True, True, True], [o.summary for o in outcomes]
    assert changes == []
    assert not list((workdir / "reports").rglob("*.html"))


@pytest.mark.slow
def test_drifted_window_opens_one_incident_with_report(workdir, trained):
    _, cfg, engine, registry = setup_model(workdir, trained[1])
    store_traffic(engine, registry, 1500, COVARIATE_ONLY, seed=12)
    outcomes, changes = run_checks(cfg, engine, registry)
    drift = next(o for o in outcomes if o.kind == "drift")
    assert not drift.passed
    assert set(drift.figures["drifted_columns"][:2]) == {"utilization", "income"}
    assert [c.incident.kind for c in changes if c.opened] == ["drift"]
    report = changes[0].incident.report_path
    wait_for_pages()  # drawn off the check's critical path
    html = Path(report).read_text()
    assert report.endswith(".html") and "<html" in html and "utilization" in html
    # a second failing check updates the open incident instead of opening a duplicate
    _, again = run_checks(cfg, engine, registry)
    assert [c.opened for c in again] == [False]
    with Session(engine) as s:
        assert len(s.exec(select(Incident)).all()) == 1
        assert len(s.exec(select(CheckRun)).all()) == 6  # drift, error, bias × 2


def test_concept_shift_fails_the_quality_check(workdir, trained):
    _, cfg, engine, registry = setup_model(workdir, trained[1])
    store_traffic(engine, registry, 1500, SHIFTED, seed=13)
    outcomes, changes = run_checks(cfg, engine, registry)
    error = next(o for o in outcomes if o.kind == "error")
    assert not error.passed and error.figures["accuracy"] < 0.6
    assert {c.incident.kind for c in changes} == {"drift", "error"}


def with_checks(cfg, **changes):
    model = cfg.models[MODEL]
    return model.model_copy(update={"checks": model.checks.model_copy(update=changes)})


@pytest.mark.slow
def test_time_window_and_pinned_reference(workdir, trained):
    from datetime import UTC, datetime, timedelta

    from watcher.config import PinnedWindow

    _, cfg, engine, registry = setup_model(workdir, trained[1])
    old = datetime.now(UTC) - timedelta(hours=3)
    store_frame(
        engine, registry, generate(1500, COVARIATE_ONLY, seed=14), ts=old
    )  # three hours ago
    store_traffic(engine, registry, 1500, NORMAL, seed=15)  # now

    checker = ModelChecker(MODEL, engine, registry, cfg.storage.reports)
    both = checker.run(with_checks(cfg, window=3000), ("drift",))[0]
    assert not both.passed and both.rows == 3000  # the last N rows reach back to the shift

    recent = with_checks(cfg, window=3000, window_minutes=60)
    last_hour = ModelChecker(MODEL, engine, registry, cfg.storage.reports).run(recent, ("drift",))
    assert last_hour[0].passed and last_hour[0].rows == 1500, last_hour[0].summary

    pinned = with_checks(
        cfg,
        window=3000,
        window_minutes=60,
        pinned_reference=PinnedWindow(
            start=old - timedelta(minutes=1), end=old + timedelta(minutes=1)
        ),
    )
    against_old = ModelChecker(MODEL, engine, registry, cfg.storage.reports).run(pinned, ("drift",))
    drift = against_old[0]
    assert not drift.passed, drift.summary  # today's normal traffic vs the pinned shifted stretch
    assert set(drift.figures["drifted_columns"][:2]) == {"utilization", "income"}
    assert drift.figures["reference"].startswith("pinned window")

    tiny = with_checks(cfg, window=3000, window_minutes=60, min_rows=2000)
    skipped = ModelChecker(MODEL, engine, registry, cfg.storage.reports).run(tiny, ("drift",))[0]
    assert skipped.skipped_reason == "window has 1500 rows < min_rows 2000"
