"""The daemon: assembles the stages and runs them until stopped.

Each job lives in its own module: the intake thread (`intake_thread`), leases and heartbeats
(`presence`), check rounds (`rounds`), alerts (`notifier`), corrections (`corrections`),
refinements (`refinement`), what follows a candidate (`decisions`), the post-swap watch
(`post_swap`), withdrawals of healed incidents' candidates (`withdrawals`), config reloads
(`reload`) and approvals (`config_approvals`). They share a `DaemonContext` and are handed the
collaborators they call; this module builds and wires them, and no job imports it.
`Daemon.run()` is what `warden run` (systemd, containers) calls: it blocks until SIGTERM or
SIGINT, then finishes the batch in hand, commits, stops the scheduler and exits cleanly.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from datetime import UTC
from pathlib import Path

import structlog
from apscheduler.schedulers.background import BackgroundScheduler
from kafka import KafkaProducer

from storage.db import make_engine, redact_url
from storage.registry import ModelRegistry
from storage.retention import prune
from storage.tables import utcnow
from watcher.checks.checker import ModelChecker
from watcher.checks.outcome import KINDS
from watcher.config import WardenConfig, load_config
from watcher.daemon.config_approvals import ConfigApprovals
from watcher.daemon.context import DaemonContext, EpochCallback
from watcher.daemon.corrections import Corrections
from watcher.daemon.decisions import Decisions
from watcher.daemon.endpoint import DaemonEndpoint
from watcher.daemon.intake_thread import IntakeThread
from watcher.daemon.metrics import WardenMetrics, open_incident_counts
from watcher.daemon.notifier import AlertSender, IncidentNotifier
from watcher.daemon.presence import Presence
from watcher.daemon.refinement import Refinement
from watcher.daemon.reload import ConfigReloader
from watcher.daemon.rounds import CheckRounds
from watcher.daemon.status import status_document
from watcher.daemon.withdrawals import Withdrawals
from watcher.intake.consumer import Ingestor
from watcher.kafka.clients import ensure_topics, make_producer
from watcher.pages.sources import Sources

log = structlog.get_logger("warden.daemon")
CONFIG_POLL_S = 1.0
HEARTBEAT_S = 5.0


class Daemon:
    def __init__(self, config_path: str | Path, on_epoch: EpochCallback | None = None) -> None:
        self.config_path = Path(config_path)
        self.cfg: WardenConfig = load_config(self.config_path)
        self.engine = make_engine(
            self.cfg.storage.engine_url(), lock_timeout_s=self.cfg.storage.lock_timeout_s
        )
        self.registry = ModelRegistry(self.cfg.storage.registry)
        self.stop_event = threading.Event()
        self.on_epoch = on_epoch
        self.producer: KafkaProducer | None = None
        self.notifier = AlertSender(self.cfg)
        self.ingestor = Ingestor(self.cfg.kafka, self.engine, self.stop_event)
        self.intake = IntakeThread(self.ingestor, self.stop_event, alert=self.notifier.send)
        self.presence = Presence(self.engine, self.ingestor.stats, self.stop_event)
        self.metrics = WardenMetrics(
            intake=lambda: self.ingestor.stats,
            incidents=lambda: open_incident_counts(self.engine),
            store=self.engine,
        )
        self.scheduler = BackgroundScheduler(
            timezone=UTC,
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 60},
        )
        self.ctx = DaemonContext(
            engine=self.engine,
            registry=self.registry,
            config=lambda: self.cfg,
            config_path=self.config_path,
            send_alert=self.notifier.send,
            holds=self.presence.holds,
            stop_event=self.stop_event,
            on_epoch=on_epoch,
        )
        self._wire_jobs(self.ctx)
        self.http: DaemonEndpoint | None = None

    def _wire_jobs(self, ctx: DaemonContext) -> None:
        """Each job gets the context and the collaborators it calls, nothing more."""
        self.decisions = Decisions(ctx)
        self.refinement = Refinement(ctx, decide=self.decisions.decide)
        self.corrections = Corrections(
            ctx, decide=self.decisions.decide, refine=self.refinement.maybe_refine
        )
        self.sources = Sources(
            config=ctx.config,
            engine=ctx.engine,
            registry=ctx.registry,
            config_path=ctx.config_path,
            waiting_action=self.corrections.waiting_action,
        )
        self.incident_alerts = IncidentNotifier(ctx, next_action=self.corrections.next_action)
        self.withdrawals = Withdrawals(ctx)
        self.rounds = CheckRounds(
            ctx,
            scheduler=self.scheduler,
            metrics=self.metrics,
            sources=self.sources,
            on_incident=self.incident_alerts.incident,
            after_round=self.corrections.maybe_correct,
            on_healed=self.withdrawals.withdraw_healed,
        )
        self.approvals = ConfigApprovals(ctx, swap=self.decisions.swap)
        self.reloader = ConfigReloader(
            ctx,
            set_config=self._set_config,
            validators=[self.notifier.check_config],
            listeners=[self.notifier.on_config_changed, self.rounds.on_config_changed],
            after_reload=self.approvals.apply,
        )

    def _set_config(self, new: WardenConfig) -> None:
        self.cfg = new

    # -- what the stages and the tests call ------------------------------------------------
    @property
    def holder(self) -> str:
        return self.presence.holder

    @property
    def checkers(self) -> dict[str, ModelChecker]:
        return self.rounds.checkers

    def holds(self, lease: str) -> bool:
        return self.presence.holds(lease)

    def heartbeat(self) -> None:
        self.presence.heartbeat()

    def send_alert(self, alert: dict) -> None:
        """Alerts go out from their own thread: a slow webhook never delays a check."""
        self.notifier.send(alert)

    def check_model(self, name: str, kinds: tuple[str, ...] = KINDS) -> None:
        self.rounds.check_model(name, kinds)

    def reload_if_changed(self) -> bool:
        return self.reloader.reload_if_changed()

    def apply_approvals(self) -> None:
        self.approvals.apply()

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
        self.notifier.connect(cfg, self.producer)
        for name, model in cfg.models.items():
            if self.holds(f"model:{name}"):
                self.rounds.ensure_bootstrapped(name, model)
        self.apply_approvals()
        self.intake.start()
        self._schedule_jobs(cfg)
        self.scheduler.start()
        if cfg.http.enabled:
            self._serve_http(cfg)
        log.info("daemon_started")

    def _schedule_jobs(self, cfg: WardenConfig) -> None:
        """Check rounds, the config watch, the heartbeat and retention."""
        self.rounds.schedule()
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

    def _serve_http(self, cfg: WardenConfig) -> None:
        self.http = DaemonEndpoint(
            cfg.http,
            status=lambda: status_document(self.cfg, self.engine, self.registry),
            ready=self.ready,
            metrics=self.metrics,
            console=self.sources,
        )
        self.http.start()
        log.info("http_listening", url=self.http.url)

    def ready(self) -> tuple[bool, str]:
        """Ready when the intake is consuming (not joining, retrying or stopped)."""
        alive = self.intake.alive()
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
        self.intake.join(timeout_s=60)  # the batch in hand is written (and may alert)
        self.notifier.drain()  # alerts already raised still go out
        if self.http is not None:
            self.http.stop()
        if self.producer is not None:
            self.producer.close(timeout=5)
        self.presence.leave()
        self.engine.dispose()
        log.info("daemon_stopped")

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


def wait_for(predicate: Callable[[], bool], timeout_s: float, step_s: float = 0.2) -> bool:
    """Poll until `predicate()` holds or the time is up (used by the demo and the tests)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step_s)
    return predicate()
