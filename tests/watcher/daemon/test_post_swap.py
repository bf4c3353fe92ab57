"""After a swap: the daemon watches the new champion on live labelled traffic and rolls back
by itself when it is worse than the champion it replaced; operators approve and reject from
the command line (the approval is written into the config file, like a hand edit)."""

from __future__ import annotations

import copy
import json

import torch
from sqlmodel import Session, select
from typer.testing import CliRunner

from correctors.models.champion import load_champion, register_version
from storage.tables import Candidate, Event
from tests.support.helpers import setup_model, store_traffic
from watcher.cli import app
from watcher.config import load_config
from watcher.daemon.service import Daemon
from watcher.demo.credit import NORMAL
from watcher.demo.run import MODEL


def add_candidate(engine, registry, *, invert: bool, champion_recent: float = 0.9) -> str:
    """Register v2 (the champion's weights, or with the output layer's sign flipped: a model
    that gets almost everything wrong) as a validated candidate."""
    champion = load_champion(registry, MODEL, "v1")
    model = copy.deepcopy(champion.torch_model)
    if invert:
        last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
        with torch.no_grad():
            last.weight.mul_(-1)
            last.bias.mul_(-1)
    card = {k: v for k, v in champion.card.items() if k not in ("model", "version")}
    register_version(registry, MODEL, "v2", model, champion.encoder, card)
    with Session(engine) as session:
        session.add(
            Candidate(
                id=f"{MODEL}-v2",
                model=MODEL,
                version="v2",
                parent_version="v1",
                status="validated",
                champion_metrics={"recent_holdout_accuracy": champion_recent},
                candidate_metrics={"recent_holdout_accuracy": champion_recent + 0.05},
                verdict={"passed": True, "reasons": ["test"]},
            )
        )
        session.commit()
    return f"{MODEL}-v2"


def events(engine, kind: str) -> list[Event]:
    with Session(engine) as session:
        return list(session.exec(select(Event).where(Event.kind == kind)))


def test_a_bad_new_champion_is_rolled_back_by_the_watch(workdir, trained):
    config, cfg, engine, registry = setup_model(workdir, trained[1])
    daemon = Daemon(config)
    candidate_id = add_candidate(engine, registry, invert=True)
    daemon.decisions.swap(candidate_id, actor="operator")
    assert registry.active(MODEL) == "v2"
    store_traffic(engine, registry, 600, NORMAL, seed=41)  # served (badly) by v2, labelled
    daemon.check_model(MODEL, ("error",))
    assert registry.active(MODEL) == "v1", "the watch did not roll back"
    with Session(engine) as session:
        assert session.get(Candidate, candidate_id).status == "rolled_back"
    [event] = events(engine, "rolled_back")
    assert event.actor == "daemon" and event.subject == "v2"
    daemon.notifier.drain()
    daemon.engine.dispose()


def test_a_good_new_champion_survives_the_watch(workdir, trained):
    config, cfg, engine, registry = setup_model(workdir, trained[1])
    daemon = Daemon(config)
    candidate_id = add_candidate(engine, registry, invert=False, champion_recent=0.8)
    daemon.decisions.swap(candidate_id, actor="operator")
    watch = cfg.models[MODEL].approval.watch_checks
    for i in range(watch + 1):
        store_traffic(engine, registry, 300, NORMAL, seed=50 + i)
        daemon.check_model(MODEL, ("error",))
    assert registry.active(MODEL) == "v2"
    with Session(engine) as session:
        cand = session.get(Candidate, candidate_id)
        assert cand.status == "active" and cand.watch_checks_left == 0
    assert events(engine, "rolled_back") == []
    daemon.notifier.drain()
    daemon.engine.dispose()


def test_approve_writes_the_config_and_reject_records_the_operator(workdir, trained):
    config, cfg, engine, registry = setup_model(workdir, trained[1], mode="manual")
    candidate_id = add_candidate(engine, registry, invert=False)
    before = config.read_text()
    runner = CliRunner()

    listed = runner.invoke(app, ["candidates", "--config", str(config), "--json"])
    assert listed.exit_code == 0, listed.output
    assert [c["id"] for c in json.loads(listed.output)] == [candidate_id]

    done = runner.invoke(app, ["approve", candidate_id, "--config", str(config)])
    assert done.exit_code == 0, done.output
    assert load_config(config).models[MODEL].approval.approved == [candidate_id]
    after = config.read_text()
    assert "# Written by `warden demo`" in after  # comments and layout kept
    assert len(after.splitlines()) == len(before.splitlines())
    again = runner.invoke(app, ["approve", candidate_id, "--config", str(config)])
    assert again.exit_code == 0 and "already approved" in again.output

    daemon = Daemon(config)  # the daemon applies what the file says
    daemon.apply_approvals()
    assert registry.active(MODEL) == "v2"
    daemon.notifier.drain()

    unknown = runner.invoke(app, ["approve", "nope", "--config", str(config)])
    assert unknown.exit_code == 1 and "no candidate" in unknown.output
    late = runner.invoke(app, ["reject", candidate_id, "--config", str(config)])
    assert late.exit_code == 1 and "active" in late.output  # live already: roll back instead


def test_reject_takes_a_waiting_candidate_out(workdir, trained):
    config, cfg, engine, registry = setup_model(workdir, trained[1], mode="manual")
    candidate_id = add_candidate(engine, registry, invert=False)
    runner = CliRunner()
    assert runner.invoke(app, ["approve", candidate_id, "--config", str(config)]).exit_code == 0
    result = runner.invoke(
        app, ["reject", candidate_id, "--config", str(config), "--reason", "bad timing"]
    )
    assert result.exit_code == 0, result.output
    assert load_config(config).models[MODEL].approval.approved == []
    with Session(engine) as session:
        assert session.get(Candidate, candidate_id).status == "rejected"
    [event] = [e for e in events(engine, "candidate_rejected") if e.actor == "operator"]
    assert event.detail["reasons"] == ["bad timing"]
    assert registry.active(MODEL) == "v1"


def test_approve_keeps_the_config_files_permissions(workdir, trained):
    config, cfg, engine, registry = setup_model(workdir, trained[1], mode="manual")
    candidate_id = add_candidate(engine, registry, invert=False)
    config.chmod(0o644)
    result = CliRunner().invoke(app, ["approve", candidate_id, "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert config.stat().st_mode & 0o777 == 0o644  # still readable by the daemon's user
