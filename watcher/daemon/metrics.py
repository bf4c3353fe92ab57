"""Prometheus metrics of one daemon, served on `/metrics` by `watcher.http_server`.

Each `WardenMetrics` owns its own `CollectorRegistry` (never the process-global one), so
several daemons can live in one process (tests) without their series colliding.

Three sources:
- pushed by the daemon after each check: `observe_check` (durations, results, drift share,
  quality figures and their bound, group gaps);
- read at scrape time through callbacks: the intake's cumulative counters, lag and whether it
  is consuming, and the open incidents by (model, kind, severity);
- read at scrape time from the store (`store=`): swaps and rollbacks from the audit log, and the
  heartbeat age of every daemon sharing it (so one daemon reports another gone quiet).
A callback that raises is logged and its series are left out of that scrape; the rest of the
scrape is served. `deploy/grafana/warden.json` and `deploy/prometheus/alerts.yml` use these
names (a test checks each against a real scrape).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator
from contextlib import suppress
from datetime import timedelta
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import exposition as _exposition
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine, func, select
from sqlmodel import col

from storage.tables import DaemonHeartbeat, Event, Incident, utcnow

log = structlog.get_logger("warden.metrics")

QUALITY_METRICS = ("accuracy", "precision", "recall", "f1", "mae", "rmse", "r2")
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
INTAKE_KINDS = ("predictions", "labels", "dead_letters")
HEARTBEATS_SINCE = timedelta(days=1)  # a daemon that died without stopping is reported a day
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
        state = getattr(stats, "state", None)
        if state is not None:
            yield GaugeMetricFamily(
                "warden_intake_consuming",
                "1 while the intake is consuming; 0 while it joins, retries or is stopped.",
                value=1.0 if state == "consuming" else 0.0,
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


class _StoreCollector(Collector):
    """`warden_swaps_total{model}`, `warden_rollbacks_total{model}` (from the audit log) and
    `warden_daemon_heartbeat_age_seconds{daemon}` (every daemon not cleanly stopped)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[Metric]:
        try:
            counts, ages = store_figures(self.engine)
        except Exception as exc:  # noqa: BLE001 - a store that is down must not break the scrape
            log.warning("metrics_callback_failed", callback="store", error=repr(exc))
            return
        for kind, name, text in (
            ("swapped", "warden_swaps", "Candidates swapped in, by model (audit log)."),
            ("rolled_back", "warden_rollbacks", "Rollbacks, by model (audit log)."),
        ):
            family = CounterMetricFamily(name, text, labels=["model"])
            for model, count in sorted(counts.get(kind, {}).items()):
                family.add_metric([model], float(count))
            yield family
        gauge = GaugeMetricFamily(
            "warden_daemon_heartbeat_age_seconds",
            "Seconds since each running daemon's last heartbeat row (written every 5 s).",
            labels=["daemon"],
        )
        for daemon, age in sorted(ages.items()):
            gauge.add_metric([daemon], age)
        yield gauge


class WardenMetrics:
    """One daemon's metrics, in a registry of its own."""

    def __init__(
        self,
        intake: IntakeCallback | None = None,
        incidents: IncidentsCallback | None = None,
        store: Engine | None = None,
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
        self.quality_bound = Gauge(
            "warden_quality_bound",
            "The worst headline quality still normal at the last quality check (calibrated, "
            "fixed or the configured floor): below it (above it for mae) the check fails.",
            ["model", "metric"],
            registry=r,
        )
        self.group_gap = Gauge(
            "warden_group_gap",
            "Gaps between groups of a protected attribute at the last bias check.",
            ["model", "attribute", "gap"],
            registry=r,
        )
        self._collect_on_scrape(intake, incidents, store)

    def _collect_on_scrape(
        self,
        intake: IntakeCallback | None,
        incidents: IncidentsCallback | None,
        store: Engine | None,
    ) -> None:
        """Figures read when Prometheus scrapes (intake counters, open incidents, the store)."""
        if intake is not None:
            self.registry.register(_IntakeCollector(intake))
        if incidents is not None:
            self.registry.register(_IncidentsCollector(incidents))
        if store is not None:
            self.registry.register(_StoreCollector(store))

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
        headline, bound = figures.get("headline"), _number(figures.get("bound"))
        if headline in QUALITY_METRICS and bound is not None:
            self.quality_bound.labels(model, headline).set(bound)
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
        select(col(Incident.model), col(Incident.kind), col(Incident.severity), func.count())
        .where(col(Incident.status) == "open")
        .group_by(Incident.model, Incident.kind, Incident.severity)
    )
    with engine.connect() as conn:
        return {(m, k, s): int(n) for m, k, s, n in conn.execute(query)}


def store_figures(engine: Engine) -> tuple[dict[str, dict[str, int]], dict[str, float]]:
    """Swap and rollback counts by model, and the heartbeat age of each daemon still running."""
    events = (
        select(col(Event.kind), col(Event.model), func.count())
        .where(col(Event.kind).in_(["swapped", "rolled_back"]))
        .group_by(col(Event.kind), col(Event.model))
    )
    now = utcnow()
    beats = select(col(DaemonHeartbeat.id), col(DaemonHeartbeat.heartbeat_at)).where(
        col(DaemonHeartbeat.state) != "stopped",
        col(DaemonHeartbeat.heartbeat_at) > now - HEARTBEATS_SINCE,
    )
    counts: dict[str, dict[str, int]] = {}
    ages: dict[str, float] = {}
    with engine.connect() as conn:
        for kind, model, n in conn.execute(events):
            counts.setdefault(kind, {})[model or ""] = int(n)
        for daemon, at in conn.execute(beats):
            at = at if at.tzinfo else at.replace(tzinfo=now.tzinfo)
            ages[daemon] = max(0.0, (now - at).total_seconds())
    return counts, ages
