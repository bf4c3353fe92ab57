"""Incident bookkeeping on a real database (SQLite and PostgreSQL): one open incident per
kind, resolved after `resolve_after` clean checks, reopened quietly within the cooldown,
re-alerted only when the severity rises."""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import Session, col, select

from storage.db import make_engine
from storage.tables import Incident, utcnow
from watcher.checks.incidents import record_outcomes
from watcher.checks.outcome import CheckOutcome
from watcher.config import ChecksConfig


def outcome(passed: bool, severity: str = "warning", kind: str = "drift") -> CheckOutcome:
    return CheckOutcome(
        kind,
        "v1",
        passed=passed,
        rows=500,
        summary="2/10 columns drifted" if not passed else "clean",
        severity=severity if not passed else "info",
        seq_range=(1, 500),
        flagged_ids=[] if passed else ["a", "b"],
        figures={"drift_share": 0.2, "tpr": float("nan"), "bin": {"high": float("inf")}},
    )


def incidents(engine) -> list[Incident]:
    with Session(engine) as session:
        return list(session.exec(select(Incident).order_by(col(Incident.id))))


def test_lifecycle_open_update_resolve_reopen_and_escalate(db_url):
    engine = make_engine(db_url)
    checks = ChecksConfig(resolve_after=2, cooldown_minutes=30)

    [opened] = record_outcomes(engine, "m", [outcome(False)], checks)
    assert opened.opened and opened.alert and opened.incident.flagged_ids == ["a", "b"]
    stored = incidents(engine)[0].figures  # NaN and inf are not JSON: stored as null
    assert stored == {"drift_share": 0.2, "tpr": None, "bin": {"high": None}}
    [same] = record_outcomes(engine, "m", [outcome(False)], checks)
    assert not same.opened and not same.alert  # updated, not duplicated, not re-alerted
    [rose] = record_outcomes(engine, "m", [outcome(False, "high")], checks)
    assert rose.escalated and rose.alert and rose.incident.severity == "high"

    assert record_outcomes(engine, "m", [outcome(True)], checks) == []
    assert incidents(engine)[0].status == "open"  # one clean check is not enough
    record_outcomes(engine, "m", [outcome(True)], checks)
    assert incidents(engine)[0].status == "resolved"

    # fails again within the cooldown: the old incident reopens, without an alert
    [again] = record_outcomes(engine, "m", [outcome(False)], checks)
    assert again.reopened and not again.alert and not again.opened
    [row] = incidents(engine)
    assert row.status == "open" and row.reopened == 1 and row.resolved_at is None

    # a skipped check changes nothing; another kind gets its own incident
    skipped = outcome(True)
    skipped.skipped_reason = "window has 10 rows < min_rows 200"
    assert record_outcomes(engine, "m", [skipped], checks) == []
    [error] = record_outcomes(engine, "m", [outcome(False, "high", kind="error")], checks)
    assert error.opened and error.alert
    assert len(incidents(engine)) == 2


def test_after_the_cooldown_a_new_incident_opens_and_alerts(db_url):
    engine = make_engine(db_url)
    checks = ChecksConfig(resolve_after=1, cooldown_minutes=5)
    record_outcomes(engine, "m", [outcome(False)], checks)
    record_outcomes(engine, "m", [outcome(True)], checks)
    with Session(engine) as session:  # resolved long ago
        row = session.exec(select(Incident)).one()
        row.resolved_at = utcnow() - timedelta(minutes=10)
        session.add(row)
        session.commit()
    [change] = record_outcomes(engine, "m", [outcome(False)], checks)
    assert change.opened and change.alert and not change.reopened
    assert [i.status for i in incidents(engine)] == ["resolved", "open"]
