"""`warden status` and `warden incidents` (tables and --json) on a config file and a real
database (SQLite and PostgreSQL) holding incidents, check runs, daemons, dead letters and
candidates written the way the daemon writes them."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from rich.console import Console
from sqlalchemy import Engine
from sqlmodel import Session
from typer.testing import CliRunner

from storage.db import make_engine
from storage.registry import ModelRegistry
from storage.tables import Candidate, CheckRun, DaemonHeartbeat, DeadLetter, Incident, utcnow
from watcher.cli import app
from watcher.config import load_config
from watcher.daemon.status import incidents_document, render_status, status_document
from watcher.pages.terminal import figures_summary

DRIFT_FIGURES = {
    "drift_share": 0.5,
    "drift_share_threshold": 0.3,
    "drifted_columns": ["income", "debt_ratio", "age"],
    "prediction_drift": True,
    "columns": {
        "income": {"drifted": True, "score": 1e-9, "method": "K-S p_value"},
        "debt_ratio": {"drifted": True, "score": 1e-4, "method": "K-S p_value"},
        "age": {"drifted": True, "score": 0.01, "method": "K-S p_value"},
        "tenure": {"drifted": False, "score": 0.6, "method": "K-S p_value"},
    },
}
QUALITY_FIGURES = {
    "accuracy": 0.712,
    "precision": 0.69,
    "recall": 0.641,
    "f1": 0.665,
    "baseline_accuracy": 0.861,
    "accuracy_floor": 0.811,
    "misclassified": 87,
}
BIAS_FIGURES = {
    "gaps": {
        "sex": {
            "demographic_parity_difference": 0.12,
            "equal_opportunity_difference": 0.2,
            "accuracy_gap": 0.1,
        }
    },
    "max_gap": 0.2,
}


def write_config(folder: Path, db_url: str) -> Path:
    """A config with no models: enough for the read-only commands."""
    config = folder / "warden.toml"
    config.write_text(
        f"""\
[storage]
url = "{db_url}"
registry = "registry"
reports = "reports"

[http]
port = 0
""",
        encoding="utf-8",
    )
    return config


def seed_rows(engine: Engine) -> dict[str, int]:
    """Incidents (open, resolved, two models), check runs (two drift runs, a skipped quality
    run, a bias run), one daemon heartbeat, one dead letter and one candidate."""
    now = utcnow()
    with Session(engine) as session:
        old_drift = CheckRun(
            model="credit",
            model_version="v1",
            kind="drift",
            rows=500,
            passed=True,
            figures={**DRIFT_FIGURES, "drift_share": 0.1, "drifted_columns": []},
            duration_s=0.8,
            created_at=now - timedelta(minutes=10),
        )
        session.add(old_drift)
        session.flush()
        drift = CheckRun(
            model="credit",
            model_version="v1",
            kind="drift",
            rows=500,
            passed=False,
            figures=DRIFT_FIGURES,
            report_path="/reports/20260101T000000Z-drift.html",
            duration_s=1.25,
            created_at=now - timedelta(minutes=1),
        )
        quality = CheckRun(
            model="credit",
            model_version="v1",
            kind="error",
            rows=500,
            labelled_rows=12,
            passed=True,
            skipped_reason="12 labelled rows served by v1 < min_labelled 200",
            duration_s=0.0,
        )
        bias = CheckRun(
            model="fraud",
            model_version="v3",
            kind="bias",
            rows=800,
            labelled_rows=800,
            passed=False,
            figures=BIAS_FIGURES,
            duration_s=0.4,
        )
        session.add_all([drift, quality, bias])
        session.flush()
        open_drift = Incident(
            model="credit",
            model_version="v1",
            kind="drift",
            severity="high",
            summary="3/8 columns drifted (share 0.50, threshold 0.3): income, debt_ratio, age",
            figures=DRIFT_FIGURES,
            check_run_id=drift.id,
            report_path="/reports/20260101T000000Z-drift.html",
            candidate_id="credit-v2-abc",
            opened_at=now - timedelta(minutes=5),
        )
        resolved = Incident(
            model="credit",
            model_version="v1",
            kind="error",
            severity="critical",
            status="resolved",
            summary="accuracy 0.612 on 400 labelled rows vs baseline 0.861 (floor 0.811)",
            opened_at=now - timedelta(hours=3),
            resolved_at=now - timedelta(hours=1),
        )
        open_bias = Incident(
            model="fraud",
            model_version="v3",
            kind="bias",
            severity="warning",
            summary="sex: equal_opportunity_difference 0.20 > 0.1",
            figures=BIAS_FIGURES,
            check_run_id=bias.id,
        )
        session.add_all([open_drift, resolved, open_bias])
        session.add(
            DaemonHeartbeat(
                id="host-a:4242:abcd",
                host="host-a",
                pid=4242,
                state="consuming",
                consumed=1500,
                predictions=1200,
                labels=290,
                dead_letters=1,
                lag=7,
                partitions=["predictions-0", "labels-0"],
                leases=["checks:credit"],
            )
        )
        session.add(
            DeadLetter(
                fingerprint="f" * 64,
                topic="predictions",
                partition=0,
                offset=17,
                reason="not JSON",
                payload="{oops",
            )
        )
        session.add(
            Candidate(
                id="credit-v2-abc",
                model="credit",
                version="v2",
                parent_version="v1",
                status="validated",
                champion_metrics={
                    "recent_holdout_accuracy": 0.71,
                    "reference_guarded_accuracy": 0.86,
                },
                candidate_metrics={
                    "recent_holdout_accuracy": 0.83,
                    "reference_guarded_accuracy": float("nan"),
                },
                verdict={"reasons": ["recent accuracy +0.12", "reference guarded"]},
            )
        )
        session.commit()
        return {
            "old_drift": old_drift.id,
            "drift": drift.id,
            "quality": quality.id,
            "bias": bias.id,
            "open_drift": open_drift.id,
            "resolved": resolved.id,
            "open_bias": open_bias.id,
        }


def invoke(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, (result.output, result.exception)
    return result.stdout


def test_incidents_json_filters_open_and_model(db_url, tmp_path):
    config = write_config(tmp_path, db_url)
    ids = seed_rows(make_engine(load_config(config).storage.url))

    rows = json.loads(invoke("incidents", "--config", str(config), "--open", "--json"))
    assert [r["id"] for r in rows] == [ids["open_drift"], ids["open_bias"]]
    drift = rows[0]
    assert drift["model"] == "credit" and drift["kind"] == "drift"
    assert drift["severity"] == "high" and drift["status"] == "open"
    assert drift["report_path"].endswith("-drift.html")
    assert drift["candidate_id"] == "credit-v2-abc"
    assert drift["resolved_at"] is None
    assert drift["opened_at"].endswith("+00:00")

    rows = json.loads(invoke("incidents", "-c", str(config), "--model", "credit", "--json"))
    assert [r["id"] for r in rows] == [ids["open_drift"], ids["resolved"]]
    assert rows[1]["status"] == "resolved" and rows[1]["resolved_at"].endswith("+00:00")

    rows = json.loads(
        invoke("incidents", "-c", str(config), "--open", "--model", "fraud", "--json")
    )
    assert [(r["id"], r["kind"]) for r in rows] == [(ids["open_bias"], "bias")]
    assert json.loads(invoke("incidents", "-c", str(config), "--model", "nope", "--json")) == []

    text = invoke("incidents", "--config", str(config))  # a table (80 columns here: folded)
    assert "Incidents" in text


def test_status_json_document(db_url, tmp_path):
    config = write_config(tmp_path, db_url)
    ids = seed_rows(make_engine(load_config(config).storage.url))

    doc = json.loads(invoke("status", "--config", str(config), "--json"))
    assert doc["models"] == []  # none configured
    assert doc["dead_letters"] == 1

    checks = {(c["model"], c["kind"]): c for c in doc["checks"]}
    assert set(checks) == {("credit", "drift"), ("credit", "error"), ("fraud", "bias")}
    drift = checks["credit", "drift"]
    assert drift["id"] == ids["drift"]  # the last run of the kind, not the older one
    assert drift["passed"] is False and drift["skipped"] is False
    assert drift["duration_s"] == 1.25
    assert drift["figures"]["drift_share"] == 0.5
    assert drift["figures"]["drifted_columns"] == ["income", "debt_ratio", "age"]
    assert "columns" not in drift["figures"]  # per-column details stay in the database
    error = checks["credit", "error"]
    assert error["skipped"] is True and "min_labelled" in error["skipped_reason"]
    gaps = checks["fraud", "bias"]["figures"]["gaps"]
    assert gaps["sex"]["equal_opportunity_difference"] == 0.2

    [daemon] = doc["daemons"]
    assert daemon["id"] == "host-a:4242:abcd" and daemon["state"] == "consuming"
    assert daemon["alive"] is True and daemon["lag"] == 7
    assert (daemon["consumed"], daemon["predictions"], daemon["labels"]) == (1500, 1200, 290)
    assert daemon["leases"] == ["checks:credit"]
    assert daemon["heartbeat_at"].endswith("+00:00")

    assert [i["id"] for i in doc["incidents"]] == [ids["open_drift"], ids["open_bias"]]
    [cand] = doc["candidates"]
    assert cand["id"] == "credit-v2-abc" and cand["status"] == "validated"
    assert cand["candidate_metrics"]["recent_holdout_accuracy"] == 0.83
    assert cand["candidate_metrics"]["reference_guarded_accuracy"] is None  # NaN is not JSON
    assert cand["reasons"] == ["recent accuracy +0.12", "reference guarded"]


def test_status_tables_keep_their_columns(db_url, tmp_path):
    config = write_config(tmp_path, db_url)
    cfg = load_config(config)
    engine = make_engine(cfg.storage.url)
    seed_rows(engine)
    registry = ModelRegistry(cfg.storage.registry)
    console = Console(record=True, width=250)
    render_status(cfg, engine, registry, console)
    text = console.export_text()
    for expected in (
        "Models",
        "dead letters: 1",
        "Daemons",
        "intake state",
        "consuming",
        "host-a:4242:abcd",
        "Last checks",
        "skipped: 12 labelled rows",
        "drift share 0.500, drifted: income, debt_ratio, age; predictions drifted",
        "Open incidents",
        "income, debt_ratio, age",
        "Candidates",
        "recent acc 0.710 → 0.830",
        "(champion → candidate)",
    ):
        assert expected in text, (expected, text)
    assert "accuracy 0.612" not in text  # resolved incidents are not listed

    assert invoke("status", "--config", str(config))  # the CLI prints the same tables
    assert (
        incidents_document(engine, open_only=True)
        == status_document(cfg, engine, registry)["incidents"]
    )


def test_bad_config_exits_2(tmp_path):
    config = tmp_path / "warden.toml"
    config.write_text("[storage]\nurl = 3\n", encoding="utf-8")
    for command in ("status", "incidents"):
        result = CliRunner().invoke(app, [command, "--config", str(config), "--json"])
        assert result.exit_code == 2
        assert "storage.url" in result.output


def test_status_and_incidents_stay_readable_at_80_columns(db_url, tmp_path):
    """People read these in narrow terminals and logs: no line wider than 80, no trailing
    blanks, each summary on a line or two (not a column folded one word per line), the
    figures summarised per row and the details one command away."""
    config = write_config(tmp_path, db_url)
    cfg = load_config(config)
    engine = make_engine(cfg.storage.url)
    ids = seed_rows(engine)
    console = Console(record=True, width=80)
    render_status(cfg, engine, ModelRegistry(cfg.storage.registry), console)
    narrow = console.export_text()
    piped = invoke("status", "--config", str(config))  # not a terminal: rich's 80 columns
    listed = invoke("incidents", "--config", str(config))
    for text in (narrow, piped, listed):
        lines = text.splitlines()
        assert max(len(line) for line in lines) <= 80, text
        assert all(line == line.rstrip() for line in lines), [x for x in lines if x != x.rstrip()]
        summary = "3/8 columns drifted (share 0.50, threshold 0.3): income, debt_ratio, age"
        spans = [i for i, line in enumerate(lines) if line.strip() and line.strip() in summary]
        assert 1 <= len(spans) <= 2, (spans, text)
        assert summary in " ".join(line.strip() for line in lines)
        assert "details: warden incidents ID (or --json)" in text
    assert "drift share 0.500, drifted: income, debt_ratio, age; predictions drifted" in narrow
    quality = figures_summary("error", QUALITY_FIGURES)  # the old figures' names too
    assert quality == "accuracy 0.712 (bound 0.811, reference 0.861)"
    assert "widest group gap: sex equal_opportunity_difference 0.200" in narrow
    assert f"#{ids['resolved']} credit error critical resolved" in listed

    text = invoke("incidents", str(ids["open_drift"]), "--config", str(config))
    prose = [line for line in text.splitlines() if not line.startswith("    $ ")]
    assert max(len(line) for line in prose) <= 80  # commands stay whole, to copy and paste
    assert f"    $ warden approve credit-v2-abc --config {config}" in text.splitlines()
    flat = " ".join(text.split())
    assert "credit v1 drift high open" in flat
    assert "window: 500 rows" in flat and "3/8 columns drifted" in flat
    assert "candidate credit-v2-abc validated" in flat and "- recent accuracy +0.12" in flat
    assert f"warden approve credit-v2-abc --config {config}" in flat  # the next action
    assert "Evidently report: /reports/20260101T000000Z-drift.html" in flat
    doc = json.loads(invoke("incidents", str(ids["open_drift"]), "-c", str(config), "--json"))
    assert doc["incident"]["id"] == ids["open_drift"] and doc["window"]["rows"] == 500
    assert doc["next_action"].startswith("credit-v2-abc passed the gate")
    assert doc["candidates"][0]["reasons"] == ["recent accuracy +0.12", "reference guarded"]
    missing = CliRunner().invoke(app, ["incidents", "999999", "--config", str(config)])
    assert missing.exit_code == 1 and "no incident #999999" in missing.output


def _gate_verdict():
    """A real gate verdict that fails two rules: no real gain, and no better than no skill."""
    import numpy as np

    from correctors.settings import CorrectionConfig
    from correctors.validation.gate import judge
    from correctors.validation.paired import PairedLoss, PairedSets
    from correctors.validation.scores import Scores, SetScore

    champ = np.array([True] * 30 + [False] * 70)
    cand = champ.copy()
    cand[30] = True  # one row fixed of 100: 0.30 -> 0.31, the no-skill answer is 0.70
    pair = PairedLoss.of(1.0 - champ, 1.0 - cand)

    def scores(value: float) -> Scores:
        return Scores("accuracy", {"recent_holdout": SetScore(100, value, 0.70)})

    paired = PairedSets(sets={"recent_holdout": pair})
    return judge(scores(0.30), scores(0.31), 0.0, {}, CorrectionConfig(), paired)


def test_candidates_json_lists_failed_rules_by_name_whatever_the_wording(db_url, tmp_path):
    """Rewording every gate message leaves `warden candidates --json`'s failed rules as they
    are: they come from the rule results, never from the sentences."""
    from dataclasses import replace

    from torch import nn

    from correctors.training.strategies import Trained
    from correctors.validation.compare import Judged
    from storage.tables import CandidateStatus

    config = write_config(tmp_path, db_url)
    engine = make_engine(load_config(config).storage.url)
    verdict = _gate_verdict()
    reworded = replace(
        verdict,
        rules=[replace(r, message=f"reworded: {r.rule} said otherwise") for r in verdict.rules],
    )
    with Session(engine) as session:
        for name, v in (("plain", verdict), ("reworded", reworded)):
            judged = Judged(Trained("fine_tune", nn.Identity()), _scores(), v)
            session.add(
                Candidate(
                    id=f"credit-{name}",
                    model="credit",
                    version=name,
                    parent_version="v1",
                    status=CandidateStatus.REJECTED.value,
                    training={"strategies": [judged.row("accuracy")]},
                    verdict=v.to_dict(),
                )
            )
        session.commit()
    rows = {r["id"]: r for r in json.loads(invoke("candidates", "-c", str(config), "--json"))}
    plain, other = rows["credit-plain"], rows["credit-reworded"]
    assert plain["failed_rules"] == ["present", "no_skill"]
    assert other["failed_rules"] == plain["failed_rules"]
    assert other["strategies"][0]["failed_rules"] == ["present", "no_skill"]
    assert plain["strategies"][0]["failed_rules"] == ["present", "no_skill"]
    assert other["reasons"] != plain["reasons"]  # the sentences did change
    assert [r["status"] for r in plain["rules"]][:3] == ["passed", "failed", "failed"]


def _scores():
    from correctors.validation.scores import Scores, SetScore

    return Scores("accuracy", {"recent_holdout": SetScore(100, 0.31, 0.70)})


def test_candidates_json_reads_a_verdict_stored_without_rules(db_url, tmp_path):
    config = write_config(tmp_path, db_url)
    seed_rows(make_engine(load_config(config).storage.url))
    [cand] = json.loads(invoke("candidates", "-c", str(config), "--json"))
    assert cand["reasons"] == ["recent accuracy +0.12", "reference guarded"]
    assert cand["rules"] == [] and cand["failed_rules"] == []
