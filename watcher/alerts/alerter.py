"""The Alerter: hands every alert to every configured sink; one failing sink never stops the
others and never raises into the daemon."""

from __future__ import annotations

import uuid
from typing import Any

import structlog

from watcher.alerts.sinks import Sink, build_sinks
from watcher.config import WardenConfig

log = structlog.get_logger("warden.alerts")


class Alerter:
    """Sends each alert to every configured sink; `send` never raises.

    Construction raises `ConfigError` when `alerts.webhook_secret_env` names an unset variable."""

    def __init__(self, cfg: WardenConfig, producer=None) -> None:
        self.cfg = cfg
        self.producer = producer if cfg.alerts.kafka else None
        self.sinks: list[Sink] = build_sinks(cfg.alerts, cfg.kafka.alerts_topic, self.producer)

    def send(self, alert: dict[str, Any]) -> None:
        try:
            alert = dict(alert)
            if not alert.get("alert_id"):
                alert["alert_id"] = uuid.uuid4().hex
        except Exception as exc:  # noqa: BLE001 - not even a mapping: report, never raise
            log.error("alert_invalid", error=f"{type(exc).__name__}: {exc}")
            return
        for sink in self.sinks:
            try:
                sink.send(alert)
            except Exception as exc:  # noqa: BLE001 - one sink failing never stops the others
                # no exc_info: a rendered traceback (with locals) could show the signing key
                log.error(
                    "alert_sink_failed",
                    sink=getattr(sink, "name", type(sink).__name__),
                    alert=alert.get("alert"),
                    model=alert.get("model"),
                    alert_id=alert.get("alert_id"),
                    error=f"{type(exc).__name__}: {exc}",
                )
