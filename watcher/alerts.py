"""Alert sinks: a structured log line, a webhook POST (retried with backoff), a JSON message on
the alerts topic. One sink failing never stops the others or the daemon."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import httpx
import structlog
from tenacity import retry, stop_after_attempt, wait_exponential

from watcher.config import WardenConfig

log = structlog.get_logger("warden.alerts")


def build_alert(kind: str, model: str, **fields: Any) -> dict[str, Any]:
    """The alert document every sink sends: what, where, how bad, the report, what happens next."""
    return {"alert": kind, "model": model, "ts": datetime.now(UTC).isoformat(), **fields}


class Alerter:
    def __init__(self, cfg: WardenConfig, producer=None) -> None:
        self.cfg = cfg
        self.producer = producer if cfg.alerts.kafka else None

    def send(self, alert: dict[str, Any]) -> None:
        if self.cfg.alerts.log:
            log.warning("alert", **alert)
        if self.cfg.alerts.webhook_url:
            try:
                self._post(alert)
            except Exception as exc:  # noqa: BLE001 - report, keep going
                log.error("webhook_failed", error=repr(exc), alert=alert["alert"])
        if self.producer is not None:
            try:
                payload = json.dumps(alert, default=str).encode()
                self.producer.send(
                    self.cfg.kafka.alerts_topic, key=alert["model"].encode(), value=payload
                ).get(timeout=10)
            except Exception as exc:  # noqa: BLE001
                log.error("alert_topic_failed", error=repr(exc), alert=alert["alert"])

    @retry(stop=stop_after_attempt(4), wait=wait_exponential(multiplier=0.5, max=8), reraise=True)
    def _post(self, alert: dict[str, Any]) -> None:
        response = httpx.post(
            self.cfg.alerts.webhook_url, json=alert, timeout=self.cfg.alerts.webhook_timeout_s
        )
        response.raise_for_status()
