"""A drifted window opens an incident with the drifted columns on top; a clean one does not."""

from pathlib import Path

from sqlmodel import Session, select

from storage.tables import CheckRun, Incident
from tests.helpers import setup_model, store_traffic
from watcher.demo import MODEL
from watcher.detection import ModelChecker
from watcher.incidents import record_outcomes
from watcher.simulation import COVARIATE_ONLY, NORMAL, SHIFTED


def run_checks(cfg, engine, registry):
    checker = ModelChecker(MODEL, engine, registry, cfg.storage.reports)
    outcomes = checker.run(cfg.models[MODEL])
    return outcomes, record_outcomes(engine, MODEL, outcomes)


def test_clean_window_opens_nothing(workdir, trained):
    _, cfg, engine, registry = setup_model(workdir, trained[1])
    store_traffic(engine, registry, 1500, NORMAL, seed=11)
    outcomes, changes = run_checks(cfg, engine, registry)
    assert [o.passed for o in outcomes] == [True, True, True], [o.summary for o in outcomes]
    assert changes == []
    assert not list((workdir / "reports").rglob("*.html"))


def test_drifted_window_opens_one_incident_with_report(workdir, trained):
    _, cfg, engine, registry = setup_model(workdir, trained[1])
    store_traffic(engine, registry, 1500, COVARIATE_ONLY, seed=12)
    outcomes, changes = run_checks(cfg, engine, registry)
    drift = next(o for o in outcomes if o.kind == "drift")
    assert not drift.passed
    assert set(drift.figures["drifted_columns"][:2]) == {"utilization", "income"}
    assert [c.incident.kind for c in changes if c.opened] == ["drift"]
    report = changes[0].incident.report_path
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
