"""Outages with real parts only: a frozen broker (SIGSTOP), every broker connection cut (TCP
proxy), PostgreSQL unreachable (TCP proxy), SQLite locked by another writer, and what the
daemon's heartbeat row and `warden status` say meanwhile.

Each test produces predictions with known ids before, (sometimes) during and after an outage
and then checks that every id is stored exactly once: nothing lost, nothing twice.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest
from rich.console import Console
from sqlalchemy import Engine, func, select
from sqlalchemy.engine import make_url
from sqlmodel import Session

from storage.db import make_engine
from storage.registry import ModelRegistry
from storage.tables import DaemonHeartbeat, Prediction
from tests.conftest import _drop_schema, _postgres_schema_url
from tests.support.tcp_proxy import TcpProxy
from tests.watcher.intake.test_ingest import prediction
from watcher.config import KafkaConfig
from watcher.daemon.service import Daemon, wait_for
from watcher.daemon.status import render_status
from watcher.intake.consumer import Ingestor
from watcher.kafka.broker import EmbeddedBroker, free_port
from watcher.kafka.clients import ensure_topics, make_producer
from watcher.kafka.wire import encode

BROKER_DOWN = "broker un"  # "broker unreachable or …" (Ingestor) / "broker unavailable: …" (Daemon)
DB_DOWN = "database unavailable, retrying"
SESSION_TIMEOUT_MS = 6000
FREEZE_S = SESSION_TIMEOUT_MS / 1000 + 5
CUT_S = 8.0


# -- helpers ----------------------------------------------------------------------------------
def outage_cfg(bootstrap: str) -> KafkaConfig:
    """Fresh topics and group on `bootstrap`, with the short timeouts the outage tests need."""
    tag = uuid.uuid4().hex[:8]
    cfg = KafkaConfig(
        bootstrap_servers=bootstrap,
        group_id=f"outage-{tag}",
        predictions_topic=f"predictions-{tag}",
        labels_topic=f"labels-{tag}",
        alerts_topic=f"alerts-{tag}",
        max_poll_records=500,
        poll_timeout_ms=200,
        session_timeout_ms=SESSION_TIMEOUT_MS,
        heartbeat_interval_ms=1000,
    )
    ensure_topics(cfg, [cfg.predictions_topic, cfg.labels_topic, cfg.alerts_topic])
    return cfg


def produce(producer, cfg: KafkaConfig, n: int, tag: str) -> list[str]:
    """Send `n` predictions with fresh ids, wait until the broker has acknowledged every one."""
    ids = [f"{tag}-{uuid.uuid4().hex}" for _ in range(n)]
    futures = [
        producer.send(cfg.predictions_topic, key=pid.encode(), value=encode(prediction(pid)))
        for pid in ids
    ]
    producer.flush(timeout=60)
    for fut in futures:
        fut.get(timeout=30)  # raises if the broker did not take it: the test would be wrong
    return ids


def stored_counts(engine: Engine) -> tuple[int, int]:
    """(rows, distinct prediction ids) in the predictions table."""
    with engine.connect() as conn:
        total = conn.execute(select(func.count()).select_from(Prediction)).scalar_one()
        distinct = conn.execute(
            select(func.count(func.distinct(Prediction.prediction_id)))
        ).scalar_one()
    return total, distinct


def stored_total(engine: Engine) -> int:
    return stored_counts(engine)[0]


def assert_exactly_once(engine: Engine, ids: list[str], ingestor: Ingestor) -> None:
    """Every produced id is stored once, nothing else is stored, and intake counted each once."""
    total, distinct = stored_counts(engine)
    assert total == distinct, f"{total - distinct} prediction ids stored twice"
    with engine.connect() as conn:
        got = set(conn.execute(select(Prediction.prediction_id)).scalars())
    missing, extra = set(ids) - got, got - set(ids)
    assert not missing, f"{len(missing)} of {len(ids)} predictions lost, e.g. {sorted(missing)[:3]}"
    assert not extra, f"{len(extra)} unexpected predictions stored"
    assert total == len(ids)
    # redelivery is allowed (at-least-once), but only as harmless re-reads of stored rows
    assert ingestor.stats.predictions == len(ids), ingestor.stats
    assert ingestor.stats.consumed >= len(ids)
    assert ingestor.stats.dead_letters == 0


class StateLog:
    """Samples a changing state string every 10 ms, so short-lived states are not missed."""

    def __init__(self, read: Callable[[], str]) -> None:
        self.read = read
        self.t0 = time.monotonic()
        self.changes: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="state-log", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            state = self.read()
            if not self.changes or self.changes[-1][1] != state:
                self.changes.append((time.monotonic() - self.t0, state))
            self._stop.wait(0.01)

    def now(self) -> float:
        return time.monotonic() - self.t0

    def seen(self, needle: str, since: float = 0.0, until: float | None = None) -> bool:
        """Whether a state containing `needle` held at any moment in [since, until]."""
        until = self.now() if until is None else until
        for i, (t, state) in enumerate(self.changes):
            ends = self.changes[i + 1][0] if i + 1 < len(self.changes) else self.now()
            if needle in state and t <= until and ends >= since:
                return True
        return False

    def __str__(self) -> str:
        return "; ".join(f"{t:.2f}s {s!r}" for t, s in self.changes)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


@contextmanager
def running_ingestor(cfg: KafkaConfig, engine: Engine) -> Iterator[tuple[Ingestor, StateLog]]:
    """An Ingestor in its own thread, with its state sampled; stopped and joined on exit."""
    stop = threading.Event()
    ingestor = Ingestor(cfg, engine, stop)
    thread = threading.Thread(target=ingestor.run, name="ingest", daemon=True)
    thread.start()
    states = StateLog(lambda: ingestor.stats.state)
    try:
        yield ingestor, states
    finally:
        stop.set()
        thread.join(60)
        states.stop()
        print(f"intake states: {states}")  # shown with -rA / -s, and on failure
    assert not thread.is_alive(), "intake did not stop"
    assert ingestor.stats.state == "stopped"


@contextmanager
def dedicated_broker(tmp_path: Path, **kw) -> Iterator[EmbeddedBroker]:
    """A broker of this test's own (never the session one, which other tests share): frozen or
    cut without side effects. Always resumed before it is stopped."""
    broker = EmbeddedBroker(log_path=tmp_path / "broker.log", **kw).start()
    try:
        yield broker
    finally:
        if broker.process is not None:
            with suppress(ProcessLookupError):
                os.kill(broker.process.pid, signal.SIGCONT)
        broker.stop()


@contextmanager
def frozen(broker: EmbeddedBroker) -> Iterator[None]:
    """The broker process stops answering (connections stay open, nothing is read or sent)."""
    assert broker.process is not None
    os.kill(broker.process.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(broker.process.pid, signal.SIGCONT)


def sleep_until(deadline: float) -> None:
    time.sleep(max(0.0, deadline - time.monotonic()))


def reported_unreachable(states: StateLog, since: float, until: float) -> bool:
    return states.seen(BROKER_DOWN, since, until)


def survive_broker_outage(cfg: KafkaConfig, engine: Engine, outage, seconds: float) -> None:
    """Produce, break the broker with `outage` (a context manager) for `seconds`, produce more:
    every id is stored exactly once, and the intake state said the broker was unreachable."""
    producer = make_producer(cfg)
    try:
        with running_ingestor(cfg, engine) as (ingestor, states):
            ids = produce(producer, cfg, 3000, "before")
            assert wait_for(lambda: stored_total(engine) > 0, 30), states
            start = states.now()
            with outage:
                until = time.monotonic() + seconds
                # the state is sampled all along; watch for it, but keep the outage the full time
                wait_for(lambda: reported_unreachable(states, start, states.now()), seconds)
                sleep_until(until)
                end = states.now()
                total, distinct = stored_counts(engine)
                assert total == distinct <= len(ids)
            ids += produce(producer, cfg, 2000, "after")
            assert wait_for(lambda: stored_total(engine) >= len(ids), 60), (
                f"stored {stored_counts(engine)} of {len(ids)}; states: {states}"
            )
            assert wait_for(lambda: ingestor.stats.state == "consuming", 30), states
            assert wait_for(lambda: ingestor.stats.predictions == len(ids), 30)
        assert_exactly_once(engine, ids, ingestor)
    finally:
        producer.close(timeout=5)
        engine.dispose()
    assert reported_unreachable(states, start, end), f"outage not reported; states: {states}"


@contextmanager
def cut(proxy: TcpProxy) -> Iterator[None]:
    """Every connection through the proxy closed, and new ones refused, until restored."""
    assert proxy.connections > 0
    proxy.cut()
    try:
        assert proxy.connections == 0
        yield
    finally:
        proxy.restore()


# -- 1. broker frozen ------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.timeout(120)
def test_frozen_broker_loses_nothing_and_stores_nothing_twice(tmp_path, db_url):
    with dedicated_broker(tmp_path) as broker:
        cfg = outage_cfg(broker.bootstrap)
        survive_broker_outage(cfg, make_engine(db_url), frozen(broker), FREEZE_S)


# -- 2. every broker connection cut ------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.timeout(120)
def test_cut_broker_connections_lose_nothing_and_store_nothing_twice(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'warden.db'}")
    broker_port = free_port()
    # the broker advertises the proxy: every client connection, reconnects too, goes through it
    with (
        TcpProxy("127.0.0.1", broker_port) as proxy,
        dedicated_broker(tmp_path, port=broker_port, advertised_port=proxy.port) as broker,
    ):
        assert broker.bootstrap == f"127.0.0.1:{proxy.port}"
        survive_broker_outage(outage_cfg(broker.bootstrap), engine, cut(proxy), CUT_S)


def survive_database_outage(cfg: KafkaConfig, engine: Engine, outage, seconds: float) -> None:
    """Store, make the database unusable with `outage` for `seconds` while more arrives, then
    more again: the intake waits and retries (nothing counted, nothing committed meanwhile),
    says so in its state, and in the end every id is stored exactly once."""
    producer = make_producer(cfg)
    try:
        with running_ingestor(cfg, engine) as (ingestor, states):
            ids = produce(producer, cfg, 2000, "before")
            assert wait_for(lambda: stored_total(engine) >= len(ids), 30), states
            with outage:
                until = time.monotonic() + seconds
                ids += produce(producer, cfg, 2000, "during")  # arrives, cannot be written
                assert wait_for(lambda: ingestor.stats.state == DB_DOWN, seconds), states
                sleep_until(until)  # retrying all along: no batch may be given up
                assert ingestor.stats.state == DB_DOWN, states
                assert ingestor.stats.predictions == 2000
            ids += produce(producer, cfg, 1000, "after")
            assert wait_for(lambda: ingestor.stats.predictions >= len(ids), 60), (
                f"counted {ingestor.stats.predictions} of {len(ids)}; states: {states}"
            )
            assert wait_for(lambda: ingestor.stats.state == "consuming", 10), states
        assert_exactly_once(engine, ids, ingestor)
    finally:
        producer.close(timeout=5)
        engine.dispose()


@contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Another connection holds SQLite's write lock until the block ends."""
    other = sqlite3.connect(path, isolation_level=None, timeout=10)
    other.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        other.execute("COMMIT")
        other.close()


# -- 3a. PostgreSQL unreachable --------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.timeout(120)
def test_postgres_unreachable_loses_nothing_and_stores_nothing_twice(kafka_cfg):
    url, schema = _postgres_schema_url()
    pg = make_url(url)
    proxy = TcpProxy(pg.host or "127.0.0.1", pg.port or 5432).start()
    proxied = pg.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    try:
        engine = make_engine(proxied, lock_timeout_s=2)
        survive_database_outage(kafka_cfg, engine, cut(proxy), CUT_S)
    finally:
        proxy.stop()
        _drop_schema(schema)


# -- 3b. SQLite locked by another writer -----------------------------------------------------
@pytest.mark.slow
@pytest.mark.timeout(120)
def test_sqlite_locked_loses_nothing_and_stores_nothing_twice(kafka_cfg, tmp_path):
    path = tmp_path / "warden.db"
    engine = make_engine(f"sqlite:///{path}", lock_timeout_s=0.5)  # waits 0.5 s per attempt
    survive_database_outage(kafka_cfg, engine, exclusive_lock(path), 5.0)


# -- 4. what the daemon reports --------------------------------------------------------------
def write_daemon_config(folder: Path, cfg: KafkaConfig) -> Path:
    """A config with no models: intake only."""
    config = folder / "warden.toml"
    config.write_text(
        f"""\
[kafka]
bootstrap_servers = "{cfg.bootstrap_servers}"
group_id = "{cfg.group_id}"
predictions_topic = "{cfg.predictions_topic}"
labels_topic = "{cfg.labels_topic}"
alerts_topic = "{cfg.alerts_topic}"
max_poll_records = {cfg.max_poll_records}
poll_timeout_ms = {cfg.poll_timeout_ms}
session_timeout_ms = {cfg.session_timeout_ms}
heartbeat_interval_ms = {cfg.heartbeat_interval_ms}

[storage]
url = "sqlite:///warden.db"
registry = "registry"
reports = "reports"

[http]
port = 0
""",
        encoding="utf-8",
    )
    return config


def heartbeat_state(engine: Engine, holder: str) -> str | None:
    with Session(engine) as session:
        row = session.get(DaemonHeartbeat, holder)
        return None if row is None else row.state


def status_text(daemon: Daemon) -> str:
    console = Console(record=True, width=200)
    render_status(daemon.cfg, daemon.engine, ModelRegistry(daemon.cfg.storage.registry), console)
    return console.export_text()


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_daemon_heartbeat_and_status_report_a_frozen_broker(tmp_path):
    with dedicated_broker(tmp_path) as broker:
        cfg = outage_cfg(broker.bootstrap)
        daemon = Daemon(write_daemon_config(tmp_path, cfg))
        producer = make_producer(cfg)
        engine = daemon.engine
        rows: StateLog | None = None
        try:
            daemon.start()
            rows = StateLog(lambda: heartbeat_state(engine, daemon.holder) or "-")
            ids = produce(producer, cfg, 1000, "before")
            assert wait_for(lambda: stored_total(engine) >= len(ids), 30)
            assert wait_for(lambda: heartbeat_state(engine, daemon.holder) == "consuming", 15)
            assert "consuming" in status_text(daemon)
            reported = ""
            with frozen(broker):
                start = rows.now()
                frozen_until = time.monotonic() + FREEZE_S
                # the heartbeat row is written every 5 s from the daemon's scheduler thread
                if wait_for(lambda: rows.seen(BROKER_DOWN, start), FREEZE_S):
                    reported = status_text(daemon)
                sleep_until(frozen_until)
                end = rows.now()
            ids += produce(producer, cfg, 1000, "after")
            assert wait_for(lambda: stored_total(engine) >= len(ids), 60), rows
            assert wait_for(lambda: heartbeat_state(engine, daemon.holder) == "consuming", 30)
            assert_exactly_once(engine, ids, daemon.ingestor)
        finally:
            if rows is not None:
                rows.stop()
            producer.close(timeout=5)
            daemon.shutdown()
        assert heartbeat_state(engine, daemon.holder) == "stopped"
    assert rows.seen(BROKER_DOWN, start, end), f"freeze not in the heartbeat row: {rows}"
    assert BROKER_DOWN in reported, reported
