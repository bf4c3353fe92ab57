"""Corrections that converge: the data since the change, attempts until fixed, drift that does
not hurt left alone, and every strategy able to win. Real daemon, SQLite, torch and ONNX;
traffic stored through the intake path."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sqlmodel import Session, select

from correctors.pipeline import Attempt, train_candidate
from storage.queries import recent_window
from storage.tables import Candidate, Event, Incident
from tests.support.helpers import setup_model, store_frame, store_traffic
from watcher.daemon.attempts import request_retry
from watcher.daemon.service import Daemon
from watcher.demo.credit import CONCEPT_SEEN, COVARIATE_ONLY, NORMAL, SHIFTED, generate
from watcher.demo.run import MODEL


def configure(config, **replace) -> None:
    """Edit the demo config the tests start from; alerts also go to alerts.jsonl."""
    text = config.read_text().replace("[alerts]\n", '[alerts]\nfile = "alerts.jsonl"\n')
    for old, new in replace.items():
        text = text.replace(old, new)
    config.write_text(text)


def configure_small(config, **correction: object) -> None:
    """Small windows (100 rows, 40 labelled errors start a correction), plus `correction`
    keys for the model's correction table."""
    extra = "".join(f"\n{key} = {value}" for key, value in correction.items())
    configure(
        config,
        **{
            "min_rows = 300": "min_rows = 100",
            "min_labelled = 200": "min_labelled = 100",
            "min_flagged = 300": "min_flagged = 40" + extra,
        },
    )


def daemon_after_normal_traffic(workdir, trained, seed: int, small: bool = True, **correction):
    """A daemon for the demo model, its config edited (`configure_small` with `correction`
    keys, or plain `configure`), after 600 labelled rows of the old concept."""
    config, _, engine, registry = setup_model(workdir, trained[1])
    if small:
        configure_small(config, **correction)
    else:
        configure(config)
    daemon = Daemon(config)
    store_traffic(engine, registry, 600, NORMAL, seed=seed)
    return config, engine, registry, daemon


def alerts(config) -> list[dict]:
    path = config.parent / "alerts.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def candidates(engine) -> list[Candidate]:
    with Session(engine) as session:
        return list(session.exec(select(Candidate).order_by(Candidate.created_at)))


@pytest.mark.slow
def test_an_attempt_short_of_post_change_labels_fails_and_a_later_one_succeeds(workdir, trained):
    # the bar: beat the champion by 0.5 on the rows since the change; 150 rows of the new
    # concept are too few to learn it that well, 1,150 are enough (with issue 20's guard,
    # counted over the whole reference, retrain reached a 0.45 bar on 150 rows already)
    config, engine, registry, daemon = daemon_after_normal_traffic(
        workdir, trained, 71, min_improvement=0.5
    )
    store_traffic(engine, registry, 150, SHIFTED, seed=72)
    daemon.check_model(MODEL)
    first = candidates(engine)
    assert [c.status for c in first] == ["rejected"], [c.verdict for c in first]
    change = first[0].training["change"]
    assert change["method"] == "change point" and 590 <= change["seq"] <= 620, change
    assert first[0].training["window_labelled_rows"] <= 165  # the rows since the change only
    daemon.notifier.drain()
    rejected = [a for a in alerts(config) if a["alert"] == "candidate_rejected"]
    assert len(rejected) == 1
    assert "attempt 2 of 5 once 225 labelled rows since the change" in rejected[0]["next_action"]
    assert "warden retry" in rejected[0]["next_action"]

    daemon.presence.leave()  # hand the model's lease to the next daemon at once
    daemon = Daemon(config)
    daemon.check_model(MODEL)  # nothing new: no second attempt yet
    assert len(candidates(engine)) == 1
    store_traffic(engine, registry, 1000, SHIFTED, seed=73)
    daemon.check_model(MODEL)
    second = candidates(engine)[-1]
    assert second.id != first[0].id and second.training["window_labelled_rows"] >= 225
    assert second.status == "active", second.verdict["reasons"]
    assert registry.active(MODEL) == second.version
    daemon.notifier.drain()
    assert [a["alert"] for a in alerts(config)].count("swapped") == 1
    daemon.engine.dispose()


def test_attempts_stop_at_the_limit_and_an_operator_can_push(workdir, trained):
    # a bar no candidate reaches, one attempt allowed, one kind of candidate (fast)
    config, engine, registry, daemon = daemon_after_normal_traffic(
        workdir,
        trained,
        81,
        min_improvement=0.99,
        max_attempts=1,
        strategies='["fine_tune"]',
        epochs=5,
    )
    store_traffic(engine, registry, 200, SHIFTED, seed=82)
    daemon.check_model(MODEL)
    assert [c.status for c in candidates(engine)] == ["rejected"]
    daemon.notifier.drain()
    (rejected,) = [a for a in alerts(config) if a["alert"] == "candidate_rejected"]
    assert (
        "no more automatic attempts (1 of 1 attempts rejected: a person is needed)"
        in (rejected["next_action"])
    )
    store_traffic(engine, registry, 400, SHIFTED, seed=83)  # growth alone does not retry now
    daemon.check_model(MODEL)
    assert len(candidates(engine)) == 1
    with Session(engine) as session:
        incident = session.exec(select(Incident).where(Incident.kind == "error")).one()
    assert incident.status == "open"
    request_retry(engine, incident.id, "new labels arrived")
    daemon.check_model(MODEL)
    assert len(candidates(engine)) == 2
    with Session(engine) as session:
        (asked,) = session.exec(select(Event).where(Event.kind == "correction_retry_requested"))
    assert asked.actor == "operator" and asked.subject == str(incident.id)
    daemon.notifier.drain()
    daemon.engine.dispose()


@pytest.mark.slow
def test_drift_with_stable_quality_never_starts_a_correction_and_alerts_once(workdir, trained):
    config, engine, registry, daemon = daemon_after_normal_traffic(
        workdir, trained, 91, small=False
    )
    for round_ in range(3):
        store_traffic(engine, registry, 500, COVARIATE_ONLY, seed=92 + round_)
        daemon.check_model(MODEL)
    daemon.notifier.drain()
    with Session(engine) as session:
        incidents = list(session.exec(select(Incident)))
    assert [(i.kind, i.severity, i.status) for i in incidents] == [("drift", "warning", "open")]
    assert candidates(engine) == []
    sent = [a for a in alerts(config) if a["alert"].startswith("incident_")]
    assert len(sent) == 1 and sent[0]["kind"] == "drift"
    assert "watched, not corrected" in sent[0]["next_action"]
    daemon.engine.dispose()


GAP = "issue 20, open: "


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["fine_tune", "interpolate", "retrain"])
def test_each_strategy_can_win(workdir, trained, strategy):
    _, cfg, engine, registry = setup_model(workdir, trained[1])
    # the rule changes where the traffic moved: recent rows reach all of the changed region
    # (with SHIFTED traffic, income also falls, and the changed customers with high incomes lie
    # where recent rows never go: they stay guarded, and the guard rejects a candidate that
    # carries the new rule there, test_correction.py)
    store_traffic(engine, registry, 1200, CONCEPT_SEEN, seed=101)
    model = cfg.models[MODEL]
    window = recent_window(engine, MODEL, 1200, labelled_only=True)
    settings = model.correction.model_copy(update={"strategies": [strategy]})
    cand = train_candidate(engine, registry, Attempt(MODEL, model, settings, window))
    assert cand.status == "validated", cand.verdict["reasons"]
    assert cand.training["strategy"].startswith(strategy)
    assert cand.verdict["reasons"][0].startswith(f"strategy {strategy}")
    tried = [row["strategy"] for row in cand.training["strategies"]]
    assert all(t.startswith(strategy) for t in tried)
    if strategy == "interpolate":  # every α judged; the largest that passes is kept
        assert len(tried) == 4 and cand.training["strategy"] == max(
            (r["strategy"] for r in cand.training["strategies"] if r["passed"]),
            key=lambda s: float(s.split("=")[1]),
        )


def ramp(n: int, seed: int):
    """Rows of a gradual drift: row i follows the new concept with probability i / n."""
    old, new = generate(n, NORMAL, seed=seed), generate(n, CONCEPT_SEEN, seed=seed + 1000)
    take_new = np.random.default_rng(seed).random(n) < np.linspace(0, 1, n)
    return pd.concat([old[~take_new], new[take_new]]).sort_index(kind="stable")


@pytest.mark.slow
@pytest.mark.xfail(
    strict=False,  # the rows an attempt sees depend on when it runs
    reason=GAP + "on 700 ramp rows the regions are coarse: over half of the reference leaves "
    "the guard, recent rows reach 88 % of it, and the first candidate waits for a person",
)
def test_a_refinement_asks_again_where_a_gradual_change_began(workdir, trained):
    config, engine, registry, daemon = daemon_after_normal_traffic(workdir, trained, 111)
    store_frame(engine, registry, ramp(1000, seed=112))  # the new rule takes over slowly
    daemon.check_model(MODEL)
    [first] = candidates(engine)
    assert first.status == "active", first.verdict["reasons"]
    early = first.training["change"]["seq"]  # the first sign of the new rule

    store_traffic(engine, registry, 2000, CONCEPT_SEEN, seed=113)  # the change now seen whole
    daemon.check_model(MODEL)
    refined = candidates(engine)[-1]
    change = refined.training["change"]
    assert refined.id != first.id and change["refinement"], change
    assert change["scored_by"] == "v1" and change["scheduled_from_seq"] == early, change
    assert change["seq"] > early, change  # later: rows before it mixed the old rule in
    since = recent_window(engine, MODEL, 10**6, labelled_only=True, start_seq=change["seq"])
    assert refined.training["window_labelled_rows"] == len(since)
    daemon.engine.dispose()
