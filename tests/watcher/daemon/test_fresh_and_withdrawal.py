"""The daemon's side of a candidate's later life: the proof on fresh rows (none right after
training: no evidence against; a real shift keeps it better), a verdict that asks for a person
parks the candidate even in auto mode, and candidates follow their incident when it heals."""

from __future__ import annotations

import json

import pytest
from sqlmodel import Session, select

from correctors.swap import SwapRefused
from correctors.validation.fresh import prove_on_fresh_rows
from storage.tables import Candidate, Event, Incident, utcnow
from tests.correctors.test_correction import correct
from tests.support.helpers import setup_model, store_traffic
from watcher.daemon.approvals import approve_in_config
from watcher.daemon.service import Daemon
from watcher.demo.credit import SHIFTED
from watcher.demo.run import MODEL


def trained_candidate(workdir, trained, mode: str):
    config, cfg, engine, registry = setup_model(workdir, trained[1], mode=mode)
    config.write_text(config.read_text().replace("[alerts]\n", '[alerts]\nfile = "alerts.jsonl"\n'))
    store_traffic(engine, registry, 1000, SHIFTED, seed=41)
    cand = correct(cfg, engine, registry, strategies=["fine_tune"])
    assert cand.status == "validated", cand.verdict["reasons"]
    return config, cfg, engine, registry, cand


def alerts(config) -> list[dict]:
    path = config.parent / "alerts.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.slow
def test_fresh_rows_none_after_training_then_a_lasting_gain(workdir, trained):
    _, cfg, engine, registry, cand = trained_candidate(workdir, trained, "auto")
    settings = cfg.models[MODEL].correction
    kw = {"alpha": settings.paired_alpha, "max_rows": settings.max_rows}
    none = prove_on_fresh_rows(engine, registry, MODEL, cand.version, **kw)
    assert none.rows == 0 and not none.significantly_worse
    assert none.since_seq == 1001 and "no fresh labelled rows" in none.sentence()

    store_traffic(engine, registry, 300, SHIFTED, seed=42)  # the shift goes on
    fresh = prove_on_fresh_rows(engine, registry, MODEL, cand.version, **kw)
    assert fresh.rows == 300 and fresh.since_seq == 1001
    assert fresh.candidate > fresh.champion and not fresh.significantly_worse
    assert fresh.paired.better > fresh.paired.worse
    assert fresh.to_dict()["metric"] == "accuracy"


@pytest.mark.slow
def test_a_verdict_that_needs_a_person_waits_even_in_auto_mode(workdir, trained):
    config, _, engine, registry, cand = trained_candidate(workdir, trained, "auto")
    asks = {
        "rule": "full_reference",
        "status": "needs_person",
        "message": "full reference accuracy 0.915 -> 0.712 with 46% excluded",
        "figures": {"full_reference_champion": 0.915, "full_reference_candidate": 0.712},
    }
    with Session(engine) as session:
        row = session.get(Candidate, cand.id)
        row.verdict = {**row.verdict, "rules": [*row.verdict["rules"], asks]}
        session.add(row)
        session.commit()
        session.refresh(row)
        session.expunge(row)
    daemon = Daemon(config)
    incident = Incident(model=MODEL, model_version="v1", kind="error", severity="high", summary="")
    daemon.decisions.decide(MODEL, daemon.cfg.models[MODEL], row, incident, 1000)
    daemon.approvals.apply()  # auto mode does not approve it by itself
    assert registry.active(MODEL) == "v1"
    with Session(engine) as session:
        assert session.get(Candidate, cand.id).status == "awaiting_approval"
    daemon.notifier.drain()
    (waiting,) = [a for a in alerts(config) if a["alert"] == "awaiting_approval"]
    assert "the gate asks for a person" in waiting["why"] and "0.915 -> 0.712" in waiting["why"]
    assert waiting["why_figures"] == [asks["figures"]]
    assert "a person decides" in waiting["next_action"]
    daemon.engine.dispose()


def test_candidates_follow_their_incident(workdir, trained):
    config, _, engine, registry, cand = trained_candidate(workdir, trained, "manual")
    with Session(engine) as session:
        error = Incident(model=MODEL, model_version="v1", kind="error", severity="high", summary="")
        drift = Incident(model=MODEL, model_version="v1", kind="drift", severity="high", summary="")
        bias = Incident(model=MODEL, model_version="v1", kind="bias", severity="high", summary="")
        for inc in (error, drift, bias):
            inc.candidate_id = cand.id
            session.add(inc)
        session.flush()
        row = session.get(Candidate, cand.id)
        row.incident_id, row.status = error.id, "awaiting_approval"
        error.status, error.resolved_at, error.clean_checks = "resolved", utcnow(), 3
        session.add_all([row, error])
        session.commit()
        ids = error.id, bias.id
    daemon = Daemon(config)
    model = daemon.cfg.models[MODEL]
    daemon.withdrawals.withdraw_healed(MODEL, model)  # the bias incident still waits on it
    with Session(engine) as session:
        assert session.get(Candidate, cand.id).status == "awaiting_approval"
        session.get(Incident, ids[1]).status = "resolved"
        session.commit()
    daemon.withdrawals.withdraw_healed(MODEL, model)  # the open drift incident does not hold it
    with Session(engine) as session:
        assert session.get(Candidate, cand.id).status == "withdrawn"
        (event,) = session.exec(select(Event).where(Event.kind == "candidate_withdrawn"))
    assert event.detail["incident_id"] == ids[0] and event.detail["previous_status"] == (
        "awaiting_approval"
    )
    with pytest.raises(SwapRefused, match="withdrawn and can no longer be approved") as exc:
        approve_in_config(config, engine, cand.id)
    assert f"incident {ids[0]} (error) resolved by itself" in str(exc.value)
    daemon.withdrawals.withdraw_healed(MODEL, model)  # once only
    daemon.notifier.drain()
    assert [a["alert"] for a in alerts(config)].count("candidate_withdrawn") == 1
    daemon.engine.dispose()
