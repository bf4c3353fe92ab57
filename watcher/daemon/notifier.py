"""Alerts from the daemon: sent from their own thread (a slow webhook never delays a check),
and the incident alert that says what is wrong, where, how bad, and what happens next."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from watcher.alerts.alerter import Alerter
from watcher.alerts.message import build_alert
from watcher.checks.incidents import IncidentChange, mark_alerted
from watcher.config import ModelConfig

if TYPE_CHECKING:
    from watcher.daemon.service import Daemon


class Notifier:
    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.alerter = Alerter(daemon.cfg)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="alerts")

    def send(self, alert: dict) -> None:
        self._pool.submit(self.alerter.send, alert)

    def drain(self) -> None:
        """Wait until every alert already raised has gone out (at shutdown, and in tests)."""
        self._pool.shutdown(wait=True)

    def incident(self, name: str, model: ModelConfig, change: IncidentChange) -> None:
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
        self.send(
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
                    Path(self.daemon.cfg.storage.reports) / name / f"incident-{incident.id}.html"
                ),
                flagged_samples=len(incident.flagged_ids or []),
                next_action=self.daemon.corrections.next_action(name, model, incident),
                **where,
            )
        )
        mark_alerted(self.daemon.engine, incident.id)
