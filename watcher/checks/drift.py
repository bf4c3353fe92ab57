"""Per-column drift with Evidently: the statistic, the method Evidently picked (or the one set in
config), Evidently's own verdict, and a `magnitude` (larger = more drift) that calibration can
learn a normal range for, whatever the method's orientation (p-values fall, distances rise)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd


@dataclass
class ColumnDrift:
    score: float  # the method's statistic: a p-value or a distance
    method: str
    magnitude: float  # -log10(p) for p-value methods, the distance otherwise
    evidently_drifted: bool  # Evidently's verdict at the method's threshold
    stattest: str = ""  # Evidently's stattest name where the fast path computed it


@dataclass
class DriftResult:
    columns: dict[str, ColumnDrift]
    share: float  # Evidently's share of drifted columns (its own thresholds)
    snapshot: Any  # the Evidently snapshot (None from the fast path)


# Evidently's stattests whose score is a p-value (by name, when one is configured)
P_VALUE_METHODS = {
    *("ks", "chisquare", "z", "fisher_exact", "g_test", "mannw", "t_test"),
    *("cramer_von_mises", "anderson", "es", "empirical_mmd", "TVD"),
}


def magnitude(score: float, method: str) -> float:
    if "p_value" in method or method in P_VALUE_METHODS:
        return -math.log10(max(score, 1e-300))
    return score


def definition(numeric: list[str], categorical: list[str], classification=None, regression=None):
    from evidently import DataDefinition

    return DataDefinition(
        numerical_columns=list(numeric),
        categorical_columns=list(categorical),
        classification=classification,
        regression=regression,
    )


def evidently_datasets(current, reference, numeric, categorical):
    """Current and reference as Evidently datasets of the same columns."""
    from evidently import Dataset

    columns = [*numeric, *categorical]
    defn = definition(numeric, categorical)
    return (
        Dataset.from_pandas(current[columns], data_definition=defn),
        Dataset.from_pandas(reference[columns], data_definition=defn),
    )


def run_drift(
    current: pd.DataFrame,
    reference: pd.DataFrame,
    numeric: list[str],
    categorical: list[str],
    *,
    method: str | None = None,
    threshold: float | None = None,
) -> DriftResult:
    """Drift of every column in `numeric` + `categorical` (the prediction column included by
    the caller), current window first as Evidently expects.

    One `ValueDrift` per column, not `DataDriftPreset`: the preset's column count tests every
    column again (measured: 1.3 s against 3.5 s for 23 columns at 50k rows). The preset's
    richer page is built by `drift_report` when a check fails and a report is kept."""
    from evidently import Report
    from evidently.metrics import ValueDrift

    options = {k: v for k, v in {"method": method, "threshold": threshold}.items() if v}
    metrics = [ValueDrift(column=c, **options) for c in [*numeric, *categorical]]
    snapshot = Report(metrics, include_tests=True).run(
        *evidently_datasets(current, reference, numeric, categorical)
    )
    found, _ = parse_drift(snapshot.dict())
    share = sum(c.evidently_drifted for c in found.values()) / max(1, len(found))
    return DriftResult(found, share, snapshot)


def drift_report(
    current: pd.DataFrame,
    reference: pd.DataFrame,
    numeric: list[str],
    categorical: list[str],
    *,
    method: str | None = None,
    threshold: float | None = None,
):
    """The Evidently data-drift page (summary table + every column) for an incident."""
    from evidently import Report
    from evidently.presets import DataDriftPreset

    columns = [*numeric, *categorical]
    preset = DataDriftPreset(columns=columns, method=method, threshold=threshold)
    return Report([preset], include_tests=True).run(
        *evidently_datasets(current, reference, numeric, categorical)
    )


def parse_drift(result: dict) -> tuple[dict[str, ColumnDrift], float]:
    """Per-column figures from the tests (the verdict depends on the method), share from the
    DriftedColumnsCount metric."""
    scores = {m["id"]: m["value"] for m in result["metrics"]}
    share = 0.0
    for metric in result["metrics"]:
        if metric["metric_name"].startswith("DriftedColumnsCount"):
            share = float(metric["value"]["share"])
    columns: dict[str, ColumnDrift] = {}
    for test in result["tests"]:
        params = test["metric_config"]["params"]
        if params.get("type", "").endswith("ValueDrift") and "column" in params:
            score = float(scores.get(test["metric_config"]["metric_id"], 0.0))
            method = str(params.get("method") or "")
            columns[params["column"]] = ColumnDrift(
                score=score,
                method=method,
                magnitude=magnitude(score, method),
                evidently_drifted=str(test["status"]).endswith("FAIL"),
            )
    return columns, share
