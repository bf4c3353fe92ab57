"""Check rounds: one APScheduler job per model and schedule (kinds sharing a schedule run in one
round), missed runs coalesced after downtime, and the round itself: checks → incidents →
alerts → post-swap watch → withdrawals of healed incidents' candidates → maybe a correction.
Rounds of one model never overlap."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime

import structlog
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import func
from sqlmodel import col, select

from correctors.models.champion import bootstrap
from storage.db import session_scope
from storage.tables import CheckRun, utcnow
from watcher.checks.checker import ModelChecker
from watcher.checks.evidently_page import wait_for_pages
from watcher.checks.incidents import IncidentChange, record_outcomes
from watcher.checks.outcome import KINDS, CheckOutcome
from watcher.config import ModelConfig, WardenConfig
from watcher.daemon.context import DaemonContext
from watcher.daemon.metrics import WardenMetrics
from watcher.daemon.post_swap import watch_new_champion
from watcher.daemon.schedules import Trigger, check_schedules, make_trigger
from watcher.pages.incident_page import publish_pages
from watcher.pages.sources import Sources

log = structlog.get_logger("warden.daemon")
OnIncident = Callable[[str, ModelConfig, IncidentChange], None]  # alert an opened incident
AfterRound = Callable[[str, ModelConfig], None]  # e.g. maybe correct
Healed = Callable[[str, ModelConfig], None]  # withdraw the candidates of healed incidents


class CheckRounds:
    def __init__(
        self,
        ctx: DaemonContext,
        *,
        scheduler: BaseScheduler,
        metrics: WardenMetrics,
        sources: Sources,
        on_incident: OnIncident,
        after_round: AfterRound,
        on_healed: Healed | None = None,
    ) -> None:
        self.ctx, self.scheduler, self.metrics, self.sources = ctx, scheduler, metrics, sources
        self.on_incident, self.after_round, self.on_healed = on_incident, after_round, on_healed
        self.checkers: dict[str, ModelChecker] = {}
        self._model_locks: dict[str, threading.Lock] = {}
        self._schedules = self._current_schedules(ctx.config())

    # -- scheduling -------------------------------------------------------------------------
    def schedule(self) -> None:
        """(Re)create the check jobs from the current config."""
        for job in self.scheduler.get_jobs():
            if job.id.startswith("check:"):
                job.remove()
        cfg = self.ctx.config()
        self._schedules = self._current_schedules(cfg)
        for name, model in cfg.models.items():
            for schedule, kinds in check_schedules(model).items():
                trigger = make_trigger(schedule)
                catch_up = self.catch_up(name, kinds, trigger)
                self.scheduler.add_job(
                    self.check_model,
                    trigger,
                    args=[name, kinds],
                    id=f"check:{name}:{'+'.join(kinds)}",
                    # next_run_time=None would add the job paused (APScheduler 3)
                    **({"next_run_time": catch_up} if catch_up is not None else {}),
                )

    def on_config_changed(self, new: WardenConfig) -> None:
        """Thresholds or windows may have changed: checkers are rebuilt; changed schedules
        are applied at once."""
        self.checkers.clear()
        if self._current_schedules(new) != self._schedules and self.scheduler.running:
            self.schedule()

    @staticmethod
    def _current_schedules(cfg: WardenConfig) -> dict:
        return {name: check_schedules(model) for name, model in cfg.models.items()}

    def catch_up(self, name: str, kinds: tuple[str, ...], trigger: Trigger) -> datetime | None:
        """After downtime, runs missed since the last check coalesce into one, now; otherwise
        the trigger's own next time (None lets APScheduler compute it)."""
        try:
            with session_scope(self.ctx.engine) as session:
                last = session.exec(
                    select(func.max(CheckRun.created_at)).where(
                        CheckRun.model == name, col(CheckRun.kind).in_(kinds)
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
        ctx = self.ctx
        if ctx.registry.active(name) is None:
            version = bootstrap(ctx.engine, ctx.registry, name, model)
            log.info("model_bootstrapped", model=name, version=version)

    def checker(self, name: str) -> ModelChecker:
        """One per model, kept between rounds (it caches reference-side work)."""
        if name not in self.checkers:
            ctx = self.ctx
            reports = ctx.config().storage.reports
            self.checkers[name] = ModelChecker(name, ctx.engine, ctx.registry, reports)
        return self.checkers[name]

    def check_model(self, name: str, kinds: tuple[str, ...] = KINDS) -> None:
        """One scheduled round for a model: checks → incidents → alerts → maybe a correction."""
        ctx = self.ctx
        model = ctx.config().models.get(name)
        if model is None or ctx.stop_event.is_set() or not ctx.holds(f"model:{name}"):
            return
        with self._model_locks.setdefault(name, threading.Lock()):
            try:
                self.ensure_bootstrapped(name, model)
                outcomes = self.checker(name).run(model, tuple(kinds))
                self.observe(name, outcomes)
                watch_new_champion(ctx, name, model, outcomes)
                for change in record_outcomes(ctx.engine, name, outcomes, model.checks):
                    if change.alert:
                        self.on_incident(name, model, change)
                    elif change.reopened:
                        log.info("incident_reopened_quietly", model=name, id=change.incident.id)
                if self.on_healed is not None:
                    self.on_healed(name, model)
                wait_for_pages()  # the Evidently pages, drawn while the alerts went out
                publish_pages(self.sources, name)  # incident pages, in the alerts' words
                self.after_round(name, model)
            except Exception:  # noqa: BLE001 - a failing round must not kill the schedule
                log.exception("check_failed", model=name)

    def observe(self, name: str, outcomes: list[CheckOutcome]) -> None:
        """Each check's outcome to the log and the metrics."""
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
            self.metrics.observe_check(
                name,
                out.kind,
                out.duration_s,
                out.passed,
                out.skipped_reason is not None,
                out.figures,
            )
