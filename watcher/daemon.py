"""The daemon: intake thread + APScheduler checks + corrections + config reloads + approvals.

`Daemon.run()` is what `warden run` (systemd, containers) calls: it blocks until SIGTERM or
SIGINT, then finishes the batch in hand, commits, stops the scheduler and exits cleanly.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import structlog
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from kafka.errors import KafkaError
from sqlalchemy import func
from sqlmodel import select

from correctors.champion import bootstrap
from correctors.pipeline import NothingToCorrect, TrainingFailed, train_candidate
from correctors.swap import APPROVABLE, SwapRefused, await_approval, rollback, swap
from storage.audit import record_event
from storage.db import make_engine, redact_url, session_scope
from storage.leases import acquire, release_all, renew_all
from storage.queries import recent_window
from storage.registry import ModelRegistry
from storage.retention import prune
from storage.tables import Candidate, CheckRun, DaemonHeartbeat, utcnow
from watcher.alerts import Alerter, build_alert
from watcher.config import (
    ConfigError,
    ModelConfig,
    ScheduleConfig,
    WardenConfig,
    fingerprint,
    load_config,
)
from watcher.detection import KINDS, ModelChecker
from watcher.http_api import HttpServer
from watcher.incidents import (
    MAX_CORRECTION_ATTEMPTS,
    IncidentChange,
    mark_alerted,
    mark_covered,
    mark_for_retry,
    open_incidents,
    record_outcomes,
)
from watcher.ingest import Ingestor
from watcher.kafka_io import ensure_topics, make_producer
from watcher.metrics import WardenMetrics, open_incident_counts
from watcher.status import status_document

log = structlog.get_logger("warden.daemon")
CONFIG_POLL_S = 1.0
HEARTBEAT_S = 5.0
LEASE_TTL_S = 30.0  # a dead daemon's models are taken over after this long


class Daemon:
    def __init__(self, config_path: str | Path, on_epoch: Callable | None = None) -> None:
        self.config_path = Path(config_path)
        self.cfg: WardenConfig = load_config(self.config_path)
        self._fingerprint = fingerprint(self.config_path)
        self.engine = make_engine(
            self.cfg.storage.engine_url(), lock_timeout_s=self.cfg.storage.lock_timeout_s
        )
        self.registry = ModelRegistry(self.cfg.storage.registry)
        self.stop_event = threading.Event()
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.started_at = utcnow()
        self.leases: list[str] = []
        self.on_epoch = on_epoch
        self.checkers: dict[str, ModelChecker] = {}
        self.producer = None
        self.alerter = Alerter(self.cfg)
        self._alerts = ThreadPoolExecutor(max_workers=1, thread_name_prefix="alerts")
        self._model_locks: dict[str, threading.Lock] = {}
        self.ingestor = Ingestor(self.cfg.kafka, self.engine, self.stop_event)
        self.metrics = WardenMetrics(
            intake=lambda: self.ingestor.stats, incidents=lambda: open_incident_counts(self.engine)
        )
        self.http: HttpServer | None = None
        self._ingest_thread: threading.Thread | None = None
        self.scheduler = BackgroundScheduler(
            timezone=UTC,
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 60},
        )

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        cfg = self.cfg
        log.info(
            "daemon_starting",
            config=str(self.config_path),
            storage=redact_url(cfg.storage.url),
            kafka=cfg.kafka.bootstrap_servers,
            models=list(cfg.models),
        )
        ensure_topics(
            cfg.kafka, [cfg.kafka.predictions_topic, cfg.kafka.labels_topic, cfg.kafka.alerts_topic]
        )
        if cfg.alerts.kafka:
            self.producer = make_producer(cfg.kafka)
        self.alerter = Alerter(cfg, self.producer)
        for name, model in cfg.models.items():
            if self.holds(f"model:{name}"):
                self._ensure_bootstrapped(name, model)
        self.apply_approvals()
        self._ingest_thread = threading.Thread(
            target=self._ingest_forever, name="ingest", daemon=True
        )
        self._ingest_thread.start()
        self._schedule_checks()
        self.scheduler.add_job(
            self.reload_if_changed, "interval", seconds=CONFIG_POLL_S, id="config-watch"
        )
        self.heartbeat()
        self.scheduler.add_job(self.heartbeat, "interval", seconds=HEARTBEAT_S, id="heartbeat")
        retention = cfg.storage.retention
        if retention.max_age_days or retention.max_rows_per_model:
            self.scheduler.add_job(
                self.prune_old_data,
                "interval",
                minutes=retention.interval_minutes,
                id="retention",
                next_run_time=utcnow(),
            )
        self.scheduler.start()
        if cfg.http.enabled:
            self.http = HttpServer(
                cfg.http,
                status=lambda: status_document(self.cfg, self.engine, self.registry),
                ready=self.ready,
                metrics=self.metrics,
            )
            self.http.start()
            log.info("http_listening", url=self.http.url)
        log.info("daemon_started")

    def ready(self) -> tuple[bool, str]:
        """Ready when the intake is consuming (not joining, retrying or stopped)."""
        alive = self._ingest_thread is not None and self._ingest_thread.is_alive()
        state = self.ingestor.stats.state
        return (alive and state == "consuming", state if alive else "intake not running")

    def run(self) -> int:
        """Foreground service: block until SIGTERM/SIGINT, then stop gracefully."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda signum, _frame: self._request_stop(signum))
        self.start()
        while not self.stop_event.wait(0.5):
            pass
        self.shutdown()
        return 0

    def _request_stop(self, signum: int) -> None:
        log.info("stop_requested", signal=signal.Signals(signum).name)
        self.stop_event.set()

    def shutdown(self) -> None:
        self.stop_event.set()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=True)
        self._alerts.shutdown(wait=True)  # alerts already raised still go out
        if self.http is not None:
            self.http.stop()
        if self._ingest_thread is not None:
            self._ingest_thread.join(timeout=60)
        if self.producer is not None:
            self.producer.close(timeout=5)
        try:
            release_all(self.engine, self.holder)
            self.heartbeat()
        except Exception:  # noqa: BLE001 - the store may be the reason we stop
            log.warning("final_heartbeat_failed", exc_info=True)
        self.engine.dispose()
        log.info("daemon_stopped")

    def _ingest_forever(self) -> None:
        """Keep the intake alive across broker outages, with backoff."""
        delay = 0.5
        while not self.stop_event.is_set():
            try:
                self.ingestor.run()
                return
            except (KafkaError, OSError) as exc:
                self.ingestor.stats.state = f"broker unavailable: {exc!r}"
                log.error("ingest_broker_error", error=repr(exc), retry_in_s=delay)
                self.stop_event.wait(delay)
                delay = min(delay * 2, 30)

    # -- several daemons, one store ---------------------------------------------------------
    def holds(self, lease: str) -> bool:
        """Take or keep `lease`; False while another live daemon holds it."""
        try:
            held = acquire(self.engine, lease, self.holder, LEASE_TTL_S)
        except Exception:  # noqa: BLE001 - no store, no lease: do nothing this round
            log.warning("lease_unavailable", lease=lease, exc_info=True)
            return False
        if held and lease not in self.leases:
            self.leases.append(lease)
            log.info("lease_taken", lease=lease, holder=self.holder)
        elif not held and lease in self.leases:
            self.leases.remove(lease)
            log.warning("lease_lost", lease=lease, holder=self.holder)
        return held

    def heartbeat(self) -> None:
        """Renew held leases and publish this daemon's intake state for `warden status`."""
        stats = self.ingestor.stats
        try:
            if not self.stop_event.is_set():
                self.leases = renew_all(self.engine, self.holder, LEASE_TTL_S)
            with session_scope(self.engine) as session:
                session.merge(
                    DaemonHeartbeat(
                        id=self.holder,
                        host=socket.gethostname(),
                        pid=os.getpid(),
                        started_at=self.started_at,
                        heartbeat_at=utcnow(),
                        state=stats.state,
                        consumed=stats.consumed,
                        predictions=stats.predictions,
                        labels=stats.labels,
                        dead_letters=stats.dead_letters,
                        lag=stats.lag,
                        partitions=stats.partitions,
                        leases=[] if self.stop_event.is_set() else self.leases,
                    )
                )
        except Exception:  # noqa: BLE001 - the intake keeps going; the store may be down
            log.warning("heartbeat_failed", ingest_state=stats.state, exc_info=True)

    def prune_old_data(self) -> None:
        """Retention, in one daemon at a time, in short batches that never block intake."""
        if not self.holds("retention"):
            return
        policy = self.cfg.storage.retention
        try:
            result = prune(
                self.engine,
                max_age_days=policy.max_age_days,
                max_rows=policy.max_rows_per_model,
                batch_size=policy.batch_size,
                registry=self.registry,
            )
            log.info("retention", **result.__dict__)
        except Exception:  # noqa: BLE001 - retried at the next interval
            log.exception("retention_failed")

    def _ensure_bootstrapped(self, name: str, model: ModelConfig) -> None:
        if self.registry.active(name) is None:
            version = bootstrap(self.engine, self.registry, name, model)
            log.info("model_bootstrapped", model=name, version=version)

    # -- scheduling -------------------------------------------------------------------------
    def _schedule_checks(self) -> None:
        """One job per model and schedule; kinds sharing a schedule run in one round."""
        for job in self.scheduler.get_jobs():
            if job.id.startswith("check:"):
                job.remove()
        for name, model in self.cfg.models.items():
            for schedule, kinds in check_schedules(model).items():
                trigger = make_trigger(schedule)
                catch_up = self._catch_up(name, kinds, trigger)
                self.scheduler.add_job(
                    self.check_model,
                    trigger,
                    args=[name, kinds],
                    id=f"check:{name}:{'+'.join(kinds)}",
                    # next_run_time=None would add the job paused (APScheduler 3)
                    **({"next_run_time": catch_up} if catch_up is not None else {}),
                )

    def _catch_up(self, name: str, kinds: tuple[str, ...], trigger) -> datetime | None:
        """After downtime, runs missed since the last check coalesce into one, now; otherwise
        the trigger's own next time (None lets APScheduler compute it)."""
        try:
            with session_scope(self.engine) as session:
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

    def _checker(self, name: str) -> ModelChecker:
        """One per model, kept between rounds (it caches reference-side work)."""
        if name not in self.checkers:
            reports = self.cfg.storage.reports
            self.checkers[name] = ModelChecker(name, self.engine, self.registry, reports)
        return self.checkers[name]

    def check_model(self, name: str, kinds: tuple[str, ...] = KINDS) -> None:
        """One scheduled round for a model: checks → incidents → alerts → maybe a correction.
        Rounds of one model never overlap (one lock per model), whatever their schedules."""
        model = self.cfg.models.get(name)
        if model is None or self.stop_event.is_set() or not self.holds(f"model:{name}"):
            return
        with self._model_locks.setdefault(name, threading.Lock()):
            try:
                self._ensure_bootstrapped(name, model)
                outcomes = self._checker(name).run(model, tuple(kinds))
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
                self._watch_new_champion(name, model, outcomes)
                for change in record_outcomes(self.engine, name, outcomes, model.checks):
                    if change.alert:
                        self._alert_incident(name, model, change)
                    elif change.reopened:
                        log.info("incident_reopened_quietly", model=name, id=change.incident.id)
                self.maybe_correct(name, model)
            except Exception:  # noqa: BLE001 - a failing round must not kill the schedule
                log.exception("check_failed", model=name)

    def _watch_new_champion(self, name: str, model: ModelConfig, outcomes) -> None:
        """After a swap, compare the new champion's live accuracy with what the old one had on
        the same present truth; roll back by itself (and alert) if it is worse."""
        error = next((o for o in outcomes if o.kind == "error" and not o.skipped_reason), None)
        if error is None or "accuracy" not in error.figures:
            return
        with session_scope(self.engine) as session:
            cand = session.exec(
                select(Candidate).where(
                    Candidate.model == name,
                    Candidate.version == error.version,
                    Candidate.status == "active",
                    Candidate.watch_checks_left > 0,
                )
            ).first()
            if cand is None:
                return
            old = (cand.champion_metrics or {}).get("recent_holdout_accuracy")
            live = float(error.figures["accuracy"])
            cand.watch_checks_left -= 1
            session.add(cand)
            candidate_id, left = cand.id, cand.watch_checks_left
        if old is None or live >= old - model.approval.watch_tolerance:
            log.info("post_swap_watch", model=name, live=live, old_champion=old, left=left)
            return
        current, restored = rollback(self.engine, self.registry, name, actor="daemon")
        log.warning("post_swap_rollback", model=name, live=live, old_champion=old)
        self.send_alert(
            build_alert(
                "rolled_back",
                name,
                candidate_id=candidate_id,
                severity="critical",
                summary=f"{current} served accuracy {live:.3f} on {error.labelled_rows} "
                f"labelled rows, below the previous champion's {old:.3f} "
                f"(tolerance {model.approval.watch_tolerance})",
                version=restored,
                next_action=f"serving {restored} again; the candidate {candidate_id} is "
                "marked rolled_back",
            )
        )

    def _alert_incident(self, name: str, model: ModelConfig, change: IncidentChange) -> None:
        """What is wrong, where, how bad, the report, and what happens next."""
        incident = change.incident
        figures = incident.figures
        where: dict = {}
        if incident.kind == "drift":
            where["top_drifted_columns"] = figures.get("drifted_columns", [])[:5]
            where["prediction_drift"] = figures.get("prediction_drift", False)
        elif incident.kind == "error":
            where["error_slices"] = figures.get("error_slices", [])[:5]
        elif incident.kind == "bias":
            where["group_gaps"] = figures.get("failures", [])[:5]
        self.send_alert(
            build_alert(
                "incident_escalated" if change.escalated else "incident_opened",
                name,
                incident_id=incident.id,
                kind=incident.kind,
                severity=incident.severity,
                summary=incident.summary,
                report=incident.report_path,
                flagged_samples=len(incident.flagged_ids or []),
                next_action=self._next_action(name, model),
                **where,
            )
        )
        mark_alerted(self.engine, incident.id)

    def _next_action(self, name: str, model: ModelConfig) -> str:
        if not model.correction.enabled:
            return "nothing: correction is disabled for this model"
        errors = self._labelled_errors(name, model)
        if errors >= model.correction.min_flagged:
            return f"correction started ({errors} labelled errors to learn from)"
        return (
            f"correction waits for labels: {errors} of {model.correction.min_flagged} labelled "
            "errors so far"
        )

    def _labelled_errors(self, name: str, model: ModelConfig, window=None) -> int:
        """Labelled rows the serving version got wrong (regression: |error| above twice the
        reference MAE), the material a correction learns from; reads the labelled window
        unless the caller already has it."""
        active = self.registry.active(name)
        if window is None:
            window = recent_window(self.engine, name, model.checks.window, labelled_only=True)
        served = window[window["model_version"] == active]
        if model.task == "regression":
            mae = self.registry.card(name, active).get("baseline", {}).get("mae", 0.0)
            error = pd.to_numeric(served["prediction"]) - pd.to_numeric(served["label"])
            return int((error.abs() > 2 * mae).sum())
        return int((served["prediction"].astype(str) != served["label"].astype(str)).sum())

    def send_alert(self, alert: dict) -> None:
        """Alerts go out from their own thread: a slow webhook never delays a check."""
        self._alerts.submit(self.alerter.send, alert)

    # -- correction -------------------------------------------------------------------------
    def maybe_correct(self, name: str, model: ModelConfig) -> None:
        if not model.correction.enabled:
            return
        incidents = open_incidents(self.engine, name, uncovered=True)
        if not incidents:
            return
        window = recent_window(self.engine, name, model.checks.window, labelled_only=True)
        errors = self._labelled_errors(name, model, window)
        if errors < model.correction.min_flagged:
            log.info(
                "correction_waiting",
                model=name,
                labelled_errors=errors,
                needed=model.correction.min_flagged,
            )
            return
        drifted = sorted(
            {
                c
                for i in incidents
                if i.kind == "drift"
                for c in i.figures.get("drifted_columns", [])
            }
        )
        primary = next((i for i in incidents if i.kind == "error"), incidents[0])
        log.info(
            "correction_started",
            model=name,
            incident=primary.id,
            labelled_rows=len(window),
            labelled_errors=errors,
            drifted_columns=drifted,
        )
        try:
            cand = train_candidate(
                self.engine,
                self.registry,
                name,
                model,
                model.correction,
                window,
                incident_id=primary.id,
                drifted_columns=drifted,
                on_epoch=self.on_epoch,
                flagged_ids={i for inc in incidents for i in (inc.flagged_ids or [])},
                focus_group=focus_group(incidents),
            )
        except NothingToCorrect as exc:
            log.info("correction_skipped", model=name, reason=str(exc))
            return
        except TrainingFailed as exc:  # the worker died, not us: retry at a later round
            attempts = mark_for_retry(self.engine, [i.id for i in incidents], str(exc))
            log.error("correction_failed", model=name, reason=str(exc), attempts=attempts)
            self.send_alert(
                build_alert(
                    "correction_failed",
                    name,
                    incident_id=primary.id,
                    severity="high",
                    summary=f"training failed: {exc}",
                    next_action=(
                        f"retrying at the next check round (attempt {attempts} of "
                        f"{MAX_CORRECTION_ATTEMPTS})"
                        if attempts < MAX_CORRECTION_ATTEMPTS
                        else "no more automatic retries: check correction budgets and the log"
                    ),
                )
            )
            return
        mark_covered(self.engine, [i.id for i in incidents], cand.id)
        log.info(
            "candidate_result",
            model=name,
            candidate=cand.id,
            status=cand.status,
            reasons=cand.verdict.get("reasons"),
        )
        metrics = {"champion": cand.champion_metrics, "candidate": cand.candidate_metrics}
        if cand.status != "validated":
            self.send_alert(
                build_alert(
                    "candidate_rejected",
                    name,
                    candidate_id=cand.id,
                    incident_id=primary.id,
                    reasons=cand.verdict.get("reasons"),
                    metrics=metrics,
                    next_action="nothing: the champion keeps serving",
                )
            )
        elif model.approval.mode == "auto":
            self._swap(cand.id, actor="daemon")
        else:
            await_approval(self.engine, cand.id)
            self.send_alert(
                build_alert(
                    "awaiting_approval",
                    name,
                    candidate_id=cand.id,
                    incident_id=primary.id,
                    reasons=cand.verdict.get("reasons"),
                    metrics=metrics,
                    next_action=f'add "{cand.id}" to models.{name}.approval.approved in '
                    f"{self.config_path} to swap it in",
                )
            )

    def _swap(self, candidate_id: str, *, actor: str) -> None:
        with session_scope(self.engine) as session:
            model_name = session.get(Candidate, candidate_id).model
        model = self.cfg.models.get(model_name)
        watch = model.approval.watch_checks if model is not None else 0
        cand = swap(self.engine, self.registry, candidate_id, actor=actor, watch_checks=watch)
        log.info("swapped", model=cand.model, candidate=cand.id, version=cand.version, actor=actor)
        self.send_alert(
            build_alert(
                "swapped",
                cand.model,
                candidate_id=cand.id,
                version=cand.version,
                actor=actor,
                next_action=f"serving {cand.version}; `warden rollback {cand.model}` restores the "
                "previous version",
            )
        )

    # -- config -----------------------------------------------------------------------------
    def reload_if_changed(self) -> bool:
        """Apply an edited config file; an invalid edit is refused and the last good one stays."""
        current = fingerprint(self.config_path)
        if current == self._fingerprint:
            return False
        self._fingerprint = current
        try:
            new = load_config(self.config_path)
        except ConfigError as exc:
            log.error("config_rejected", error=str(exc))
            with session_scope(self.engine) as session:
                record_event(session, "config_rejected", actor="config", error=str(exc))
            return False
        if new.kafka != self.cfg.kafka or new.storage != self.cfg.storage:
            log.warning(
                "config_restart_needed",
                reason="kafka or storage settings changed; they take effect at the next start",
            )
            new = new.model_copy(update={"kafka": self.cfg.kafka, "storage": self.cfg.storage})
        schedules_changed = {n: check_schedules(m) for n, m in new.models.items()} != {
            n: check_schedules(m) for n, m in self.cfg.models.items()
        }
        try:
            alerter = Alerter(new, self.producer)
        except ConfigError as exc:  # e.g. the webhook key's variable is not set
            log.error("config_rejected", error=str(exc))
            return False
        self.cfg = new
        self.alerter = alerter
        self.checkers.clear()  # thresholds or windows may have changed
        with session_scope(self.engine) as session:
            record_event(session, "config_reloaded", actor="config")
        log.info("config_reloaded", models=list(new.models))
        if schedules_changed and self.scheduler.running:
            self._schedule_checks()
        self.apply_approvals()
        return True

    def apply_approvals(self) -> None:
        """Swap candidates the config approves: listed ids (manual) or any waiting one (auto)."""
        with session_scope(self.engine) as session:
            waiting = list(session.exec(select(Candidate).where(Candidate.status.in_(APPROVABLE))))
        for cand in waiting:
            model = self.cfg.models.get(cand.model)
            if model is None or not self.holds(f"model:{cand.model}"):
                continue
            approved = model.approval.mode == "auto" or cand.id in model.approval.approved
            if approved and cand.status in APPROVABLE:
                try:
                    self._swap(cand.id, actor="config")
                except SwapRefused as exc:
                    log.error("approval_refused", candidate=cand.id, reason=str(exc))
        for name, model in self.cfg.models.items():
            for cid in model.approval.approved:
                if not any(c.id == cid for c in waiting):
                    self._explain_unswappable(name, cid)

    def _explain_unswappable(self, name: str, candidate_id: str) -> None:
        with session_scope(self.engine) as session:
            cand = session.get(Candidate, candidate_id)
        if cand is None:
            log.warning("approval_unknown_candidate", model=name, candidate=candidate_id)
        elif cand.status not in ("active", "retired", "rolled_back"):
            log.warning(
                "approval_not_possible",
                model=name,
                candidate=candidate_id,
                status=cand.status,
                reason="only validated candidates can be swapped in",
            )


def focus_group(incidents) -> tuple[str, str] | None:
    """The disadvantaged group of the worst open bias incident, for the corrector to target."""
    for incident in incidents:
        failures = (incident.figures or {}).get("failures") if incident.kind == "bias" else None
        if failures:
            return failures[0]["attribute"], str(failures[0]["disadvantaged"])
    return None


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


def wait_for(predicate: Callable[[], bool], timeout_s: float, step_s: float = 0.2) -> bool:
    """Poll until `predicate()` holds or the time is up (used by the demo and the tests)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step_s)
    return predicate()
