"""The running daemon with the real broker: approval by config edit, rollback, and the whole
loop (`warden demo`) end to end."""

import threading

import pytest
from sqlmodel import Session, select
from typer.testing import CliRunner

from correctors.swap import await_approval
from storage.tables import Candidate, Event
from tests.correctors.test_correction import correct
from tests.support.helpers import setup_model, store_traffic
from watcher.cli import app
from watcher.daemon.service import Daemon, wait_for
from watcher.demo.credit import SHIFTED
from watcher.demo.run import MODEL, run_demo


@pytest.mark.slow
def test_manual_approval_by_config_edit_swaps_the_named_candidate(workdir, trained, broker):
    config, cfg, engine, registry = setup_model(
        workdir, trained[1], broker.bootstrap, mode="manual", interval=60, group_id="approve"
    )
    store_traffic(engine, registry, 2000, SHIFTED, seed=31)
    cand = correct(cfg, engine, registry)
    assert cand.status == "validated", cand.verdict["reasons"]
    await_approval(engine, cand.id)

    daemon = Daemon(config)
    daemon.start()
    try:
        assert registry.active(MODEL) == "v1", "manual mode must not swap by itself"
        text = config.read_text().replace("approved = []", f'approved = ["{cand.id}"]')
        config.write_text(text)
        assert wait_for(lambda: registry.active(MODEL) == cand.version, 30)
    finally:
        daemon.shutdown()
    with Session(engine) as s:
        assert s.get(Candidate, cand.id).status == "active"
        swapped = s.exec(select(Event).where(Event.kind == "swapped")).all()
    assert [(e.subject, e.actor) for e in swapped] == [(cand.id, "config")]

    # rollback is one command, and it restores the previous version
    result = CliRunner().invoke(app, ["rollback", MODEL, "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert registry.active(MODEL) == "v1"
    with Session(engine) as s:
        assert s.get(Candidate, cand.id).status == "rolled_back"


def test_invalid_config_edit_is_refused_and_last_good_config_stays(workdir, trained, broker):
    config, cfg, engine, registry = setup_model(
        workdir, trained[1], broker.bootstrap, mode="manual", interval=60, group_id="bad-edit"
    )
    daemon = Daemon(config)
    daemon.start()
    try:
        config.write_text(config.read_text().replace("window = 1500", "window = -1"))
        assert wait_for(
            lambda: (
                daemon.reloader.fingerprint != ""
                and not daemon.reload_if_changed()
                and daemon.cfg.models[MODEL].checks.window == 1500
            ),
            10,
        )
    finally:
        daemon.shutdown()
    with Session(engine) as s:
        rejected = s.exec(select(Event).where(Event.kind == "config_rejected")).all()
    assert rejected and "models.credit.checks.window" in rejected[0].detail["error"]


@pytest.mark.slow
def test_demo_closes_the_loop(tmp_path):
    from rich.console import Console

    console = Console(record=True, width=120)
    code = run_demo(tmp_path / "demo", rate=400, normal_rows=2000, timeout_s=120, console=console)
    output = console.export_text()
    assert code == 0, output[-3000:]
    assert "loop closed" in output and "swapped v1 → v2" in output
    assert threading.active_count() < 50
