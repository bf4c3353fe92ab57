"""Prometheus metrics of one daemon, served on `/metrics` by `watcher.http_server`.

Each `WardenMetrics` owns its own `CollectorRegistry` (never the process-global one), so
several daemons can live in one process (tests) without their series colliding.

Two sources:
- pushed by the daemon after each check: `observe_check` (durations, results, drift share,
  quality figures, group gaps);
- read at scrape time through callbacks: the intake's cumulative counters and lag, and the open
  incidents by (model, kind, severity). A callback that raises is logged and its series are
  left out of that scrape; the rest of the scrape is served.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator
from contextlib import suppress
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import exposition as _exposition
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine, func, select

from storage.tables import Incident

log = structlog.get_logger("warden.metrics")

QUALITY_METRICS = ("accuracy", "precision", "recall", "f1", "mae", "rmse", "r2")
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
INTAKE_KINDS = ("predictions", "labels", "dead_letters")
# what `generate_latest` writes; newer clients call CONTENT_TYPE_LATEST the 1.0.0 text format
CONTENT_TYPE = getattr(_exposition, "CONTENT_TYPE_PLAIN_0_0_4", _exposition.CONTENT_TYPE_LATEST)

IntakeCallback = Callable[[], Any]  # returns an IngestStats-like object, or None
IncidentsCallback = Callable[[], dict[tuple[str, str, str], int]]


def _number(value: Any) -> float | None:
    """A finite float from an int/float figure; None for anything else (bool, str, NaN)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


class _IntakeCollector(Collector):
    """`warden_ingested_total{kind}`, `warden_consumed_total`, `warden_ingest_lag`."""

    def __init__(self, source: IntakeCallback) -> None:
        self.source = source

    def collect(self) -> Iterator[Metric]:
        try:
            stats = self.source()
        except Exception as exc:  # noqa: BLE001 - a broken callback must not break the scrape
            log.warning("metrics_callback_failed", callback="intake", error=repr(exc))
            return
        if stats is None:
            return
        ingested = CounterMetricFamily(
            "warden_ingested",
            "Messages stored by the intake since the daemon started, by kind.",
            labels=["kind"],
        )
        for kind in INTAKE_KINDS:
            value = getattr(stats, kind, None)
            if value is not None:
                ingested.add_metric([kind], float(value))
        yield ingested
        consumed = getattr(stats, "consumed", None)
        if consumed is not None:
            yield CounterMetricFamily(
                "warden_consumed",
                "Kafka records consumed by the intake since the daemon started.",
                value=float(consumed),
            )
        lag = getattr(stats, "lag", None)
        if lag is not None:
            yield GaugeMetricFamily(
                "warden_ingest_lag",
                "Records behind the end of the assigned partitions at the last check.",
                value=float(lag),
            )


class _IncidentsCollector(Collector):
    """`warden_open_incidents{model,kind,severity}`."""

    def __init__(self, source: IncidentsCallback) -> None:
        self.source = source

    def collect(self) -> Iterator[Metric]:
        try:
            counts = self.source()
        except Exception as exc:  # noqa: BLE001 - a broken callback must not break the scrape
            log.warning("metrics_callback_failed", callback="incidents", error=repr(exc))
            return
        family = GaugeMetricFamily(
            "warden_open_incidents",
            "Open incidents by model, kind and severity.",
            labels=["model", "kind", "severity"],
        )
        for (model, kind, severity), count in sorted((counts or {}).items()):
            family.add_metric([model, kind, severity], float(count))
        yield family


class WardenMetrics:
    """One daemon's metrics, in a registry of its own."""

    def __init__(
        self,
        intake: IntakeCallback | None = None,
        incidents: IncidentsCallback | None = None,
    ) -> None:
        self.registry = CollectorRegistry()
        self._lock = threading.Lock()
        self._gap_labels: dict[str, set[tuple[str, str]]] = {}
        r = self.registry
        self.check_duration = Histogram(
            "warden_check_duration_seconds",
            "Time a check took (checks that ran, not skipped ones).",
            ["model", "kind"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.checks = Counter(
            "warden_checks",
            "Checks by result: passed, failed or skipped.",
            ["model", "kind", "result"],
            registry=r,
        )
        self.drift_share = Gauge(
            "warden_drift_share",
            "Share of drifted columns at the last drift check.",
            ["model"],
            registry=r,
        )
        self.drifted_columns = Gauge(
            "warden_drifted_columns",
            "Drifted columns at the last drift check.",
            ["model"],
            registry=r,
        )
        self.quality = Gauge(
            "warden_quality",
            "Quality figures at the last quality check (accuracy, precision, recall, f1, mae, "
            "rmse, r2).",
            ["model", "metric"],
            registry=r,
        )
        self.group_gap = Gauge(
            "warden_group_gap",
            "Gaps between groups of a protected attribute at the last bias check.",
            ["model", "attribute", "gap"],
            registry=r,
        )
        if intake is not None:
            r.register(_IntakeCollector(intake))
        if incidents is not None:
            r.register(_IncidentsCollector(incidents))

    def observe_check(
        self,
        model: str,
        kind: str,
        duration_s: float,
        passed: bool,
        skipped: bool,
        figures: dict | None,
    ) -> None:
        """Record one check run; gauges are set from the figures it carries, when present."""
        result = "skipped" if skipped else "passed" if passed else "failed"
        self.checks.labels(model, kind, result).inc()
        if skipped:
            return
        duration = _number(duration_s)
        if duration is not None:
            self.check_duration.labels(model, kind).observe(max(0.0, duration))
        figures = figures or {}
        share = _number(figures.get("drift_share"))
        if share is not None:
            self.drift_share.labels(model).set(share)
        drifted = figures.get("drifted_columns")
        if isinstance(drifted, list | tuple):
            self.drifted_columns.labels(model).set(len(drifted))
        for metric in QUALITY_METRICS:
            value = _number(figures.get(metric))
            if value is not None:
                self.quality.labels(model, metric).set(value)
        gaps = figures.get("gaps")
        if isinstance(gaps, dict):
            self._set_gaps(model, gaps)

    def _set_gaps(self, model: str, gaps: dict) -> None:
        """Set this check's gaps and drop the series of (attribute, gap) it no longer reports."""
        seen: set[tuple[str, str]] = set()
        for attribute, values in gaps.items():
            if not isinstance(values, dict):
                continue
            for gap, raw in values.items():
                value = _number(raw)
                if value is not None:
                    self.group_gap.labels(model, str(attribute), str(gap)).set(value)
                    seen.add((str(attribute), str(gap)))
        with self._lock:
            for attribute, gap in self._gap_labels.get(model, set()) - seen:
                with suppress(KeyError):
                    self.group_gap.remove(model, attribute, gap)
            self._gap_labels[model] = seen

    def exposition(self) -> tuple[bytes, str]:
        """The Prometheus text exposition of this registry, and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE


def open_incident_counts(engine: Engine) -> dict[tuple[str, str, str], int]:
    """Open incidents counted by (model, kind, severity)."""
    query = (
        select(Incident.model, Incident.kind, Incident.severity, func.count())
        .where(Incident.status == "open")
        .group_by(Incident.model, Incident.kind, Incident.severity)
    )
    with engine.connect() as conn:
        return {(m, k, s): int(n) for m, k, s, n in conn.execute(query)}
