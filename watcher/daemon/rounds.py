"""Check rounds: one APScheduler job per model and schedule (kinds sharing a schedule run in one
round), missed runs coalesced after downtime, and the round itself: checks → incidents →
alerts → post-swap watch → maybe a correction. Rounds of one model never overlap."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import structlog
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import func
from sqlmodel import select

from correctors.models.champion import bootstrap
from storage.db import session_scope
from storage.tables import CheckRun, utcnow
from watcher.checks.checker import ModelChecker
from watcher.checks.incidents import record_outcomes
from watcher.checks.outcome import KINDS
from watcher.config import ModelConfig, ScheduleConfig
from watcher.daemon.post_swap import watch_new_champion
from watcher.pages.incident_page import publish_pages
from watcher.pages.sources import Sources

if TYPE_CHECKING:
    from watcher.daemon.service import Daemon

log = structlog.get_logger("warden.daemon")


class CheckRounds:
    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.checkers: dict[str, ModelChecker] = {}
        self._model_locks: dict[str, threading.Lock] = {}

    # -- scheduling -------------------------------------------------------------------------
    def schedule(self) -> None:
        """(Re)create the check jobs from the current config."""
        scheduler = self.daemon.scheduler
        for job in scheduler.get_jobs():
            if job.id.startswith("check:"):
                job.remove()
        for name, model in self.daemon.cfg.models.items():
            for schedule, kinds in check_schedules(model).items():
                trigger = make_trigger(schedule)
                catch_up = self.catch_up(name, kinds, trigger)
                scheduler.add_job(
                    self.check_model,
                    trigger,
                    args=[name, kinds],
                    id=f"check:{name}:{'+'.join(kinds)}",
                    # next_run_time=None would add the job paused (APScheduler 3)
                    **({"next_run_time": catch_up} if catch_up is not None else {}),
                )

    def catch_up(self, name: str, kinds: tuple[str, ...], trigger) -> datetime | None:
        """After downtime, runs missed since the last check coalesce into one, now; otherwise
        the trigger's own next time (None lets APScheduler compute it)."""
        try:
            with session_scope(self.daemon.engine) as session:
                last = session.exec(
                    select(func.max(CheckRun.created_at)).where(
                        CheckRun.model == name, CheckRun.kind.in_(kinds)
                    )
                ).one()
        except Exception:  # noqa: BLE001 - no store yet: schedule normally
            return None
        if last is None:
            return None
        last = last if last.tzinfo else last.replace(tzinfo=UTC)
        if isinstance(trigger, IntervalTrigger):  # its first fire time counts from creation
            due = last + trigger.interval
        else:
            due = trigger.get_next_fire_time(None, last)
        if due is not None and due <= utcnow():
            log.info("missed_checks_coalesced", model=name, kinds=list(kinds), last=str(last))
            return utcnow()
        return None

    # -- the round --------------------------------------------------------------------------
    def ensure_bootstrapped(self, name: str, model: ModelConfig) -> None:
        d = self.daemon
        if d.registry.active(name) is None:
            version = bootstrap(d.engine, d.registry, name, model)
            log.info("model_bootstrapped", model=name, version=version)

    def checker(self, name: str) -> ModelChecker:
        """One per model, kept between rounds (it caches reference-side work)."""
        if name not in self.checkers:
            d = self.daemon
            self.checkers[name] = ModelChecker(name, d.engine, d.registry, d.cfg.storage.reports)
        return self.checkers[name]

    def check_model(self, name: str, kinds: tuple[str, ...] = KINDS) -> None:
        """One scheduled round for a model: checks → incidents → alerts → maybe a correction."""
        d = self.daemon
        model = d.cfg.models.get(name)
        if model is None or d.stop_event.is_set() or not d.holds(f"model:{name}"):
            return
        with self._model_locks.setdefault(name, threading.Lock()):
            try:
                self.ensure_bootstrapped(name, model)
                outcomes = self.checker(name).run(model, tuple(kinds))
                for out in outcomes:
                    log.info(
                        "check",
                        model=name,
                        kind=out.kind,
                        passed=out.passed,
                        skipped=out.skipped_reason,
                        summary=out.summary,
                        seconds=round(out.duration_s, 3),
                    )
                    d.metrics.observe_check(
                        name,
                        out.kind,
                        out.duration_s,
                        out.passed,
                        out.skipped_reason is not None,
                        out.figures,
                    )
                watch_new_champion(d, name, model, outcomes)
                for change in record_outcomes(d.engine, name, outcomes, model.checks):
                    if change.alert:
                        d.notifier.incident(name, model, change)
                    elif change.reopened:
                        log.info("incident_reopened_quietly", model=name, id=change.incident.id)
                publish_pages(Sources.of(d), name)  # incident pages, in the alerts' words
                d.corrections.maybe_correct(name, model)
            except Exception:  # noqa: BLE001 - a failing round must not kill the schedule
                log.exception("check_failed", model=name)


def check_schedules(model: ModelConfig) -> dict[ScheduleConfig, tuple[str, ...]]:
    """Check kinds grouped by schedule (a kind without one runs every interval_seconds)."""
    default = ScheduleConfig(interval_seconds=model.checks.interval_seconds)
    grouped: dict[ScheduleConfig, tuple[str, ...]] = {}
    for kind in KINDS:
        schedule = getattr(model.checks.schedules, kind) or default
        grouped[schedule] = (*grouped.get(schedule, ()), kind)
    return grouped


def make_trigger(schedule: ScheduleConfig):
    if schedule.cron is not None:
        return CronTrigger.from_crontab(schedule.cron, timezone=UTC)
    return IntervalTrigger(seconds=schedule.interval_seconds, timezone=UTC)
