"""Alerts from the daemon: sent from their own thread (a slow webhook never delays a check),
and the incident alert that says what is wrong, where, how bad, and what happens next."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from kafka import KafkaProducer

from storage.tables import Incident
from watcher.alerts.alerter import Alerter
from watcher.alerts.message import build_alert
from watcher.checks.incidents import IncidentChange, mark_alerted
from watcher.config import ModelConfig, WardenConfig
from watcher.daemon.context import DaemonContext

# next_action(model name, model config, incident): what the incident's alert says comes next
NextAction = Callable[[str, ModelConfig, Incident], str]


class AlertSender:
    """Holds the alerter for the current config and sends through it from one thread."""

    def __init__(self, cfg: WardenConfig) -> None:
        self.producer: KafkaProducer | None = None  # for the alerts topic, once started
        self.alerter = Alerter(cfg)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="alerts")

    def connect(self, cfg: WardenConfig, producer: KafkaProducer | None) -> None:
        """At start: alerts may go to Kafka too."""
        self.producer = producer
        self.alerter = Alerter(cfg, producer)

    def check_config(self, new: WardenConfig) -> None:
        """Raises ConfigError when `new`'s sinks cannot be built (a secret's variable unset)."""
        Alerter(new, self.producer)

    def on_config_changed(self, new: WardenConfig) -> None:
        self.alerter = Alerter(new, self.producer)

    def send(self, alert: dict) -> None:
        self._pool.submit(self.alerter.send, alert)

    def drain(self) -> None:
        """Wait until every alert already raised has gone out (at shutdown, and in tests)."""
        self._pool.shutdown(wait=True)


class IncidentNotifier:
    """The alert of an opened or escalated incident."""

    def __init__(self, ctx: DaemonContext, next_action: NextAction) -> None:
        self.ctx, self.next_action = ctx, next_action

    def incident(self, name: str, model: ModelConfig, change: IncidentChange) -> None:
        incident = change.incident
        self.ctx.send_alert(
            build_alert(
                "incident_escalated" if change.escalated else "incident_opened",
                name,
                incident_id=incident.id,
                kind=incident.kind,
                severity=incident.severity,
                summary=incident.summary,
                report=incident.report_path,
                # the incident's own page (watcher.pages), rewritten as the incident evolves
                page=str(
                    Path(self.ctx.config().storage.reports) / name / f"incident-{incident.id}.html"
                ),
                flagged_samples=len(incident.flagged_ids or []),
                next_action=self.next_action(name, model, incident),
                **where(incident.kind, incident.figures),
            )
        )
        if incident.id is not None:
            mark_alerted(self.ctx.engine, incident.id)


def where(kind: str, figures: dict) -> dict:
    """Where the incident is: the columns, slices or groups that fail, worst first."""
    if kind == "drift":
        return {
            "top_drifted_columns": figures.get("drifted_columns", [])[:5],
            "prediction_drift": figures.get("prediction_drift", False),
        }
    if kind == "error":
        return {"error_slices": figures.get("error_slices", [])[:5]}
    if kind == "bias":
        return {"group_gaps": figures.get("failures", [])[:5]}
    return {}
