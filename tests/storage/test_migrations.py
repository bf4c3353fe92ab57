"""Schema migrations (Alembic) against SQLite and PostgreSQL: from an empty database, from the
previous schema (0001, commit 0ca2bfa) with rows in it, from databases `create_all` made before
migrations existed, through `warden db upgrade`; the migrated schema never drifts from the
SQLModel tables."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlmodel import Session, SQLModel, select
from typer.testing import CliRunner

from storage import migrate
from storage.db import make_engine
from storage.tables import Candidate, Incident, Prediction
from watcher.cli import app

HEAD = migrate.head()
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def schema_diff(engine: sa.Engine) -> list:
    """What autogenerate would change to make the database match storage/tables.py."""
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return compare_metadata(context, SQLModel.metadata)


def drop_version_table(engine: sa.Engine) -> None:
    """What a database made by `create_all` before migrations existed looks like."""
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE alembic_version"))


def insert_previous_rows(engine: sa.Engine) -> None:
    """A prediction, an incident and a candidate written into the 0001 tables, as the code of
    commit 0ca2bfa wrote them (no column of 0002 exists yet)."""
    old = migrate.revision_module("0001").schema().tables
    with engine.begin() as conn:
        conn.execute(
            old["predictions"].insert(),
            {
                "prediction_id": "p-1",
                "model": "credit",
                "model_version": "v1",
                "ts": T0,
                "ingested_at": T0 + timedelta(seconds=2),
                "features": {"income": 52000.0, "region": "north", "age": 41},
                "prediction": "1",
                "scores": [0.2, 0.8],
                "groups": {"sex": "F"},
                "label": "0",
                "labelled_at": T0 + timedelta(hours=3),
            },
        )
        conn.execute(
            old["incidents"].insert(),
            {
                "model": "credit",
                "model_version": "v1",
                "kind": "drift",
                "severity": "high",
                "status": "open",
                "summary": "drift in 4 of 9 columns (income, region, age, debt_ratio)",
                "figures": {"drift_share": 0.44, "columns": {"income": 0.001}},
                "check_run_id": 7,
                "window_start_seq": 1,
                "window_end_seq": 500,
                "report_path": "reports/credit-drift-7.html",
                "candidate_id": "credit-v2",
                "clean_checks": 1,
                "opened_at": T0,
                "updated_at": T0 + timedelta(minutes=5),
                "resolved_at": None,
            },
        )
        conn.execute(
            old["candidates"].insert(),
            {
                "id": "credit-v2",
                "model": "credit",
                "version": "v2",
                "parent_version": "v1",
                "incident_id": 1,
                "status": "validated",
                "training": {"epochs": 8, "flagged": 120},
                "champion_metrics": {"accuracy": 0.61},
                "candidate_metrics": {"accuracy": 0.86},
                "verdict": {"passed": True, "reasons": []},
                "onnx_path": "registry/credit/v2/model.onnx",
                "onnx_sha256": "ab" * 32,
                "created_at": T0 + timedelta(minutes=6),
                "updated_at": T0 + timedelta(minutes=9),
            },
        )


def assert_previous_rows_survived(engine: sa.Engine) -> None:
    with Session(engine) as session:
        prediction = session.exec(select(Prediction)).one()
        incident = session.exec(select(Incident)).one()
        candidate = session.exec(select(Candidate)).one()
    assert (prediction.prediction_id, prediction.label) == ("p-1", "0")
    assert prediction.features == {"income": 52000.0, "region": "north", "age": 41}
    assert prediction.scores == [0.2, 0.8] and prediction.ts == T0
    assert (incident.summary, incident.clean_checks, incident.candidate_id) == (
        "drift in 4 of 9 columns (income, region, age, debt_ratio)",
        1,
        "credit-v2",
    )
    assert incident.figures["drift_share"] == 0.44
    assert incident.updated_at == T0 + timedelta(minutes=5)
    # the columns of 0002, filled by their server defaults
    assert incident.flagged_ids == []
    assert (incident.reopened, incident.correction_attempts) == (0, 0)
    assert (incident.correction_error, incident.alerted_at) == (None, None)
    assert (candidate.status, candidate.watch_checks_left) == ("validated", 0)
    assert candidate.candidate_metrics == {"accuracy": 0.86}


def test_empty_database_to_head_matches_the_tables(db_url):
    engine = make_engine(db_url, create=False)
    assert migrate.current(engine) is None
    assert migrate.upgrade(engine) == HEAD == "0003"
    assert migrate.current(engine) == HEAD
    assert schema_diff(engine) == []
    # and make_engine (what the daemon and every command use) gets there on its own
    engine.dispose()
    engine = make_engine(db_url)
    assert migrate.current(engine) == HEAD
    with Session(engine) as session:  # the app writes and reads through the migrated schema
        session.add(
            Incident(
                model="m",
                model_version="v1",
                kind="error",
                severity="low",
                summary="s",
                flagged_ids=["a", "b"],
            )
        )
        session.commit()
        assert session.exec(select(Incident.flagged_ids)).one() == ["a", "b"]


def test_previous_schema_with_rows_upgrades_to_head(db_url):
    engine = make_engine(db_url, create=False)
    assert migrate.upgrade(engine, "0001") == "0001"
    with engine.connect() as conn:
        columns = {c["name"] for c in sa.inspect(conn).get_columns("incidents")}
    assert "clean_checks" in columns and "flagged_ids" not in columns
    insert_previous_rows(engine)
    assert migrate.upgrade(engine) == HEAD
    assert schema_diff(engine) == []
    assert_previous_rows_survived(engine)


def test_downgrade_to_previous_schema_and_back(db_url):
    engine = make_engine(db_url)
    assert migrate.downgrade(engine, "0001") == "0001"
    with engine.connect() as conn:
        columns = {c["name"] for c in sa.inspect(conn).get_columns("candidates")}
    assert "watch_checks_left" not in columns
    assert migrate.upgrade(engine) == HEAD
    assert schema_diff(engine) == []


def test_unversioned_previous_schema_is_detected_and_upgraded(db_url):
    engine = make_engine(db_url, create=False)
    migrate.upgrade(engine, "0001")
    drop_version_table(engine)
    insert_previous_rows(engine)
    assert migrate.current(engine) is None
    with engine.connect() as conn:
        assert migrate.unversioned_revision(conn) == "0001"
    engine.dispose()
    engine = make_engine(db_url)  # what a daemon start does
    assert migrate.current(engine) == HEAD
    assert schema_diff(engine) == []
    assert_previous_rows_survived(engine)


def test_unversioned_schema_between_revisions_gets_only_the_missing_columns(db_url):
    """Made by create_all at b0b5e1b: three of 0002's incident columns exist already."""
    engine = make_engine(db_url, create=False)
    migrate.upgrade(engine, "0001")
    drop_version_table(engine)
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE incidents ADD COLUMN flagged_ids JSON"))
        conn.execute(sa.text("ALTER TABLE incidents ADD COLUMN reopened INTEGER"))
        conn.execute(sa.text("ALTER TABLE incidents ADD COLUMN alerted_at TIMESTAMP"))
    with engine.connect() as conn:
        assert migrate.unversioned_revision(conn) == "0001"
    assert migrate.upgrade(engine) == HEAD
    with engine.connect() as conn:
        incident_columns = {c["name"] for c in sa.inspect(conn).get_columns("incidents")}
        candidate_columns = {c["name"] for c in sa.inspect(conn).get_columns("candidates")}
    assert {"correction_attempts", "correction_error"} <= incident_columns
    assert "watch_checks_left" in candidate_columns


def test_unversioned_database_at_head_is_only_stamped(db_url):
    engine = make_engine(db_url, create=False)
    SQLModel.metadata.create_all(engine)  # what make_engine did before migrations
    statements: list[str] = []
    sa.event.listen(engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    assert migrate.upgrade(engine) == HEAD
    ddl = [s for s in statements if s.lstrip().upper().startswith(("ALTER", "DROP"))]
    assert ddl == []
    assert schema_diff(engine) == []


def test_unrecognised_unversioned_schema_is_left_alone(db_url):
    engine = make_engine(db_url, create=False)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE predictions (seq INTEGER PRIMARY KEY, model TEXT)"))
    with pytest.raises(migrate.MigrationError, match="predictions.prediction_id"):
        migrate.upgrade(engine)
    assert migrate.current(engine) is None
    with engine.connect() as conn:
        assert sa.inspect(conn).get_table_names() == ["predictions"]


def test_upgrade_at_head_is_a_noop(db_url):
    engine = make_engine(db_url)
    statements: list[str] = []
    sa.event.listen(engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    assert migrate.upgrade(engine) == HEAD
    assert migrate.upgrade(db_url) == HEAD  # by URL too (its own engine, disposed)
    assert statements, "the version is read"
    assert all(s.lstrip().upper().startswith(("SELECT", "PRAGMA")) for s in statements), statements
    assert schema_diff(engine) == []


def test_concurrent_upgrades_of_an_empty_database(db_url):
    engines = [make_engine(db_url, create=False) for _ in range(3)]
    results, errors = [], []

    def run(engine):
        try:
            results.append(migrate.upgrade(engine))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(e,)) for e in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == [] and results == [HEAD] * 3
    assert schema_diff(engines[0]) == []


def write_config(folder, db_url: str):
    config = folder / "warden.toml"
    config.write_text(
        f'[storage]\nurl = "{db_url}"\nregistry = "registry"\nreports = "reports"\n',
        encoding="utf-8",
    )
    return config


def test_warden_db_upgrade_and_current(db_url, tmp_path):
    engine = make_engine(db_url, create=False)
    migrate.upgrade(engine, "0001")
    insert_previous_rows(engine)
    config = write_config(tmp_path, db_url)
    runner = CliRunner()

    result = runner.invoke(app, ["db", "current", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "0001" in result.stdout and "warden db upgrade" in result.stdout

    result = runner.invoke(app, ["db", "upgrade", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert f"0001 -> {HEAD}" in result.stdout
    assert_previous_rows_survived(engine)

    result = runner.invoke(app, ["db", "upgrade", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert f"{HEAD} -> {HEAD} (already at head)" in result.stdout

    result = runner.invoke(app, ["db", "current", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert f"{HEAD} (at head)" in result.stdout


def test_warden_db_upgrade_refuses_an_unrecognised_schema(db_url, tmp_path):
    engine = make_engine(db_url, create=False)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE incidents (id INTEGER PRIMARY KEY)"))
    result = CliRunner().invoke(
        app, ["db", "upgrade", "--config", str(write_config(tmp_path, db_url))]
    )
    assert result.exit_code == 1
    assert "not migrating it" in result.stdout


def test_migrations_ship_with_the_package():
    """The revisions are modules of the storage.migrations package, found by setuptools."""
    from setuptools import find_packages

    packages = find_packages(include=["storage*"])
    assert {"storage.migrations", "storage.migrations.versions"} <= set(packages)
    versions = migrate.MIGRATIONS_DIR / "versions"
    assert sorted(p.name for p in versions.glob("0*.py")) == [
        "0001_initial.py",
        "0002_detection_correction.py",
        "0003_dead_letter_ranges.py",
    ]
