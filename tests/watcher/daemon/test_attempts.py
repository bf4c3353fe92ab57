"""The attempt plan (watcher/daemon/attempts.py): one limit, `correction.max_attempts`, counts
every attempt for an incident, those the gate rejected and those whose training failed."""

from __future__ import annotations

from correctors.settings import CorrectionConfig
from storage.db import make_engine, session_scope
from storage.tables import Candidate, Incident
from watcher.daemon.attempts import plan


def incident_with(engine, *, rejected: int, failed: int) -> Incident:
    with session_scope(engine) as session:
        incident = Incident(
            model="m",
            model_version="v1",
            kind="error",
            severity="high",
            summary="accuracy fell",
            correction_attempts=failed,
        )
        session.add(incident)
        session.flush()
        for n in range(rejected):
            training = {"window_labelled_rows": 100}
            session.add(
                Candidate(
                    id=f"c{incident.id}-{n}",
                    model="m",
                    version=f"v{n + 2}",
                    parent_version="v1",
                    incident_id=incident.id,
                    status="rejected",
                    training=training,
                )
            )
        session.flush()
        session.expunge(incident)
    return incident


def test_training_failures_count_towards_max_attempts(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'w.db'}")
    settings = CorrectionConfig(max_attempts=3)
    one_each = plan(engine, incident_with(engine, rejected=1, failed=1), 1000, settings)
    assert one_each.due and one_each.attempt == 3
    spent = plan(engine, incident_with(engine, rejected=1, failed=2), 1000, settings)
    assert not spent.due and spent.exhausted and spent.attempt == 4
    assert spent.reason == (
        "3 of 3 attempts used, 2 of them failed in training: a person is needed "
        "(check the correction budgets and the log)"
    )
    failed_only = plan(engine, incident_with(engine, rejected=0, failed=3), 1000, settings)
    assert failed_only.exhausted
    rejected_only = plan(engine, incident_with(engine, rejected=3, failed=0), 1000, settings)
    assert rejected_only.reason == "3 of 3 attempts rejected: a person is needed"
    engine.dispose()
