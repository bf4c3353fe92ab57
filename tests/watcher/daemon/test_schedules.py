"""Check schedules: kinds grouped by schedule (interval or cron), rounds of one model never
overlap, and runs missed while the daemon was down coalesce into one run at start."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

from apscheduler.triggers.cron import CronTrigger
from sqlmodel import Session

from storage.tables import CheckRun, utcnow
from tests.support.helpers import setup_model
from watcher.config import ScheduleConfig
from watcher.daemon.rounds import check_schedules, make_trigger
from watcher.daemon.service import Daemon
from watcher.demo.run import MODEL


def daemon_with(workdir, width, extra: str = "") -> Daemon:
    config, *_ = setup_model(workdir, width)
    config.write_text(config.read_text() + extra)
    return Daemon(config)


def test_kinds_are_grouped_by_schedule(workdir, trained):
    daemon = daemon_with(
        workdir,
        trained[1],
        f'\n[models.{MODEL}.checks.schedules]\nerror = {{ cron = "*/5 * * * *" }}\n',
    )
    model = daemon.cfg.models[MODEL]
    grouped = check_schedules(model)
    assert grouped == {
        ScheduleConfig(interval_seconds=model.checks.interval_seconds): ("drift", "bias"),
        ScheduleConfig(cron="*/5 * * * *"): ("error",),
    }
    assert isinstance(make_trigger(ScheduleConfig(cron="*/5 * * * *")), CronTrigger)
    daemon.engine.dispose()


def add_run(daemon: Daemon, kind: str, ago_s: float) -> None:
    with Session(daemon.engine) as session:
        session.add(
            CheckRun(
                model=MODEL,
                model_version="v1",
                kind=kind,
                rows=0,
                passed=True,
                created_at=utcnow() - timedelta(seconds=ago_s),
            )
        )
        session.commit()


def test_missed_runs_coalesce_into_one_run_now(workdir, trained):
    daemon = daemon_with(workdir, trained[1])  # every kind every 3 s (the demo's interval)
    kinds = ("drift", "error", "bias")
    trigger = make_trigger(ScheduleConfig(interval_seconds=60))
    assert daemon.rounds.catch_up(MODEL, kinds, trigger) is None  # never ran: the normal schedule
    add_run(daemon, "drift", ago_s=10)
    assert daemon.rounds.catch_up(MODEL, kinds, trigger) is None  # not due yet
    add_run(daemon, "error", ago_s=3600)  # an hour (60 runs) missed: one run, now
    due = daemon.rounds.catch_up(MODEL, ("error",), trigger)
    assert due is not None and abs((due - utcnow()).total_seconds()) < 5
    assert daemon.rounds.catch_up(MODEL, kinds, trigger) is None  # drift ran 10 s ago: not due
    cron = make_trigger(ScheduleConfig(cron="0 * * * *"))  # hourly
    assert daemon.rounds.catch_up(MODEL, ("error",), cron) is not None
    daemon.engine.dispose()


def test_rounds_of_one_model_never_overlap(workdir, trained):
    daemon = daemon_with(workdir, trained[1])
    spans: list[tuple[float, float]] = []

    class SlowChecker:
        def run(self, cfg, kinds):
            start = time.monotonic()
            time.sleep(0.3)
            spans.append((start, time.monotonic()))
            return []

    daemon.checkers[MODEL] = SlowChecker()
    threads = [
        threading.Thread(target=daemon.check_model, args=(MODEL, kinds))
        for kinds in [("drift",), ("error",), ("bias",), ("drift", "error")]
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(spans) == 4
    spans.sort()
    for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
        assert start >= end, f"two rounds of {MODEL} overlapped: {spans}"
    daemon.engine.dispose()
