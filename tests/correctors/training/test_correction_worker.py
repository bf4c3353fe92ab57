"""A correction whose training worker dies: the daemon keeps running, the candidate is marked
failed, and the incident stays open for a retry, with an alert each time; each failure counts
towards `correction.max_attempts` (the one limit on attempts per incident)."""

from __future__ import annotations

import pytest
from sqlmodel import Session, select

from storage.tables import Candidate, Event, Incident
from tests.support.helpers import setup_model, store_traffic
from watcher.daemon.service import Daemon
from watcher.demo.credit import SHIFTED
from watcher.demo.run import MODEL

MAX_ATTEMPTS = 3


@pytest.mark.slow
def test_worker_crash_leaves_the_daemon_running_and_the_incident_for_retry(workdir, trained):
    config, cfg, engine, registry = setup_model(workdir, trained[1])
    text = config.read_text().replace(
        "correctors.zoo:mlp_classifier", "tests.support.crashy:crashing_mlp"
    )
    text = text.replace("min_flagged = 300", f"min_flagged = 300\nmax_attempts = {MAX_ATTEMPTS}")
    config.write_text(text)
    # the registry's v1 was built from the demo factory; rebuild it from the crashing one
    card_path = registry.version_dir(MODEL, "v1") / "card.json"
    card_path.write_text(
        card_path.read_text().replace(
            "correctors.zoo:mlp_classifier", "tests.support.crashy:crashing_mlp"
        )
    )
    daemon = Daemon(config)
    store_traffic(engine, registry, 1500, SHIFTED, seed=61)

    for attempt in range(1, MAX_ATTEMPTS + 1):
        daemon.check_model(MODEL)  # returns: the crash happened in another process
        with Session(engine) as session:
            incidents = list(session.exec(select(Incident).where(Incident.status == "open")))
        assert incidents, "the failing checks opened incidents"
        assert all(i.candidate_id is None for i in incidents), "marked covered, not for retry"
        assert {i.correction_attempts for i in incidents} == {attempt}
        assert all("exited with code 3" in (i.correction_error or "") for i in incidents)

    daemon.check_model(MODEL)  # the limit is reached: no further attempt
    with Session(engine) as session:
        attempts = {i.correction_attempts for i in session.exec(select(Incident))}
        retries = list(session.exec(select(Event).where(Event.kind == "correction_retry")))
        failed = session.exec(select(Candidate)).all()  # one row per attempt, each its own id
    assert len({c.id for c in failed}) == len(failed) == MAX_ATTEMPTS
    assert all(
        c.status == "failed" and "exited with code 3" in c.verdict["reasons"][0] for c in failed
    )
    assert attempts == {MAX_ATTEMPTS}
    assert len(retries) == MAX_ATTEMPTS * len(incidents)
    assert registry.active(MODEL) == "v1"
    daemon.notifier.drain()
    daemon.engine.dispose()
