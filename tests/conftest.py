"""Real parts only: the embedded Kafka-compatible broker, SQLite files and PostgreSQL."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from rich.console import Console

from watcher.config import KafkaConfig
from watcher.kafka.broker import EmbeddedBroker
from watcher.kafka.clients import ensure_topics

PG_URL = os.environ.get("WARDEN_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@pytest.fixture(scope="session")
def broker(tmp_path_factory) -> EmbeddedBroker:
    log = tmp_path_factory.mktemp("broker") / "broker.log"
    with EmbeddedBroker(log_path=log) as running:
        yield running


@pytest.fixture()
def kafka_cfg(broker) -> KafkaConfig:
    """Fresh topics and group per test, so tests never see each other's messages."""
    tag = uuid.uuid4().hex[:8]
    cfg = KafkaConfig(
        bootstrap_servers=broker.bootstrap,
        group_id=f"g-{tag}",
        predictions_topic=f"predictions-{tag}",
        labels_topic=f"labels-{tag}",
        alerts_topic=f"alerts-{tag}",
        max_poll_records=500,
        poll_timeout_ms=200,
    )
    ensure_topics(cfg, [cfg.predictions_topic, cfg.labels_topic, cfg.alerts_topic])
    return cfg


def _postgres_schema_url() -> tuple[str, str]:
    import sqlalchemy as sa

    schema = f"t_{uuid.uuid4().hex[:10]}"
    try:
        engine = sa.create_engine(PG_URL, connect_args={"connect_timeout": 3})
        with engine.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        engine.dispose()
    except Exception as exc:  # noqa: BLE001
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL at {PG_URL} is required when CI is set: {exc}")
        pytest.skip(f"PostgreSQL unreachable at {PG_URL}: {exc}")
    return f"{PG_URL}?options=-csearch_path%3D{schema}", schema


def _drop_schema(schema: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(PG_URL)
    with engine.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> str:
    """Every storage test runs against both stores."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'warden.db'}"
        return
    url, schema = _postgres_schema_url()
    yield url
    _drop_schema(schema)


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> tuple[Path, int]:
    """The demo's reference set and initial weights, trained once per session."""
    from watcher.demo.run import train_initial_model

    folder = tmp_path_factory.mktemp("model")
    width = train_initial_model(folder, Console(quiet=True))
    return folder, width


@pytest.fixture()
def workdir(tmp_path, trained) -> Path:
    """A folder holding reference.csv and initial-weights.pt, ready for a config file."""
    folder, _ = trained
    for name in ("reference.csv", "initial-weights.pt"):
        (tmp_path / name).write_bytes((folder / name).read_bytes())
    return tmp_path
