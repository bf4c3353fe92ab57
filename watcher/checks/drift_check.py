"""The drift check: per-column data drift and prediction drift against the baseline, and the
rows of the drifted region that a correction should learn from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from watcher.checks.baseline import column_drift, drift_columns, quality_bound
from watcher.checks.calibration import Calibration
from watcher.checks.drift import P_VALUE_METHODS, DriftResult, evidently_datasets
from watcher.checks.fast_drift import page_method, register_with_evidently
from watcher.checks.outcome import CheckKind, CheckOutcome, labelled, seq_range
from watcher.checks.protocol import CheckContext, VersionReference
from watcher.checks.quality import HEADLINE, LOWER_IS_BETTER, direct_quality
from watcher.config import ModelConfig

PAGE_NOTE = (
    "Every column below is judged at warden's threshold: its calibrated normal "
    "range where there is one, else the configured method's threshold."
)


@dataclass
class DriftVerdict:
    """What the drift check found, before it becomes an outcome."""

    columns: dict[str, dict[str, Any]]  # per column (and the prediction): score, drifted, ...
    drifted: list[str]  # drifted features, most drifted first
    prediction_drift: bool
    passed: bool
    rule: str


class DriftCheck:
    """Each column and the prediction against the baseline, judged by calibrated normal
    ranges (or a fixed share)."""

    kind = CheckKind.DRIFT

    def run(
        self, window: pd.DataFrame, reference: VersionReference, context: CheckContext
    ) -> CheckOutcome:
        cfg, checks = context.cfg, context.cfg.checks
        outcome = CheckOutcome(self.kind, reference.version, passed=True, rows=len(window))
        outcome.seq_range = seq_range(window)
        if len(window) < checks.min_rows:
            return outcome.skip(f"window has {len(window)} rows < min_rows {checks.min_rows}")
        base = reference.baseline
        current = drift_frame(window, cfg)
        result = column_drift(current, base, cfg)
        cal = reference.calibration(len(window), "drift")
        verdict = judge_drift(result, cal, cfg)
        outcome.passed = verdict.passed
        outcome.figures = drift_figures(verdict, result, cal, cfg, base.source)
        outcome.summary = drift_summary(verdict, len(cfg.features))
        if not outcome.passed:
            self._failed(outcome, verdict, window, current, reference, context)
        return outcome

    def _failed(
        self,
        outcome: CheckOutcome,
        verdict: DriftVerdict,
        window: pd.DataFrame,
        current: pd.DataFrame,
        reference: VersionReference,
        context: CheckContext,
    ) -> None:
        """Severity, the rows of the drifted region, and the Evidently page."""
        cfg, checks, base = context.cfg, context.cfg.checks, reference.baseline
        outcome.severity, impact = drift_severity(window, reference, cfg)
        outcome.figures["quality_impact"] = impact
        outcome.flagged_ids = drifted_region_ids(window, base.frame, verdict.drifted, cfg)[
            : checks.max_flagged_ids
        ]
        numeric, categorical = drift_columns(cfg)

        def report():
            return drift_page_report(
                current,
                base.frame,
                numeric,
                categorical,
                verdict.columns,
                order=[*verdict.drifted, "prediction"],
                method=checks.drift_method,
                threshold=checks.drift_threshold,
            )

        outcome.report_path = context.keep_page(report, outcome, base.source, note=PAGE_NOTE)


def drift_frame(window: pd.DataFrame, cfg: ModelConfig) -> pd.DataFrame:
    """The window's features and its prediction, typed as the reference's."""
    current = window[cfg.features].copy()
    if cfg.task == "regression":
        current["prediction"] = pd.to_numeric(window["prediction"], errors="coerce")
    else:
        current["prediction"] = window["prediction"].astype(str)
    return current


def column_figures(result: DriftResult, cal: Calibration | None) -> dict[str, dict[str, Any]]:
    """Each column's statistic and verdict: outside its calibrated normal range when the
    range was learnt with the same method, else Evidently's verdict at the method's threshold."""
    columns: dict[str, dict[str, Any]] = {}
    for col, found in result.columns.items():
        normal = cal.columns.get(col) if cal is not None else None
        if normal is not None and cal is not None and cal.methods.get(col) == found.method:
            drifted, high = found.magnitude > normal.high, normal.high
            sigmas: float | None = normal.sigmas_above(found.magnitude)
        else:
            drifted, high, sigmas = found.evidently_drifted, None, None
        columns[col] = {
            "score": found.score,
            "method": found.method,
            "stattest": found.stattest,
            "magnitude": found.magnitude,
            "drifted": bool(drifted),
            "normal_high": high,
            "sigmas": sigmas,
        }
    return columns


def judge_drift(result: DriftResult, cal: Calibration | None, cfg: ModelConfig) -> DriftVerdict:
    """Calibrated: fails from `min_drifted_columns` columns outside their range, or when the
    prediction drifted. Fixed: fails from `drift_share` of the columns."""
    checks = cfg.checks
    columns = column_figures(result, cal)
    drifted = sorted(
        (c for c in cfg.features if columns.get(c, {}).get("drifted")),
        key=lambda c: -(columns[c]["sigmas"] or columns[c]["magnitude"]),
    )
    prediction_drift = bool(columns.get("prediction", {}).get("drifted"))
    if cal is not None:
        passed = len(drifted) < checks.min_drifted_columns and not prediction_drift
        rule = f"columns outside their normal range (≥{checks.min_drifted_columns} fails)"
    else:
        passed = len(drifted) / len(cfg.features) < checks.drift_share
        rule = f"share of drifted columns (≥{checks.drift_share} fails)"
    return DriftVerdict(columns, drifted, prediction_drift, passed, rule)


def drift_figures(
    verdict: DriftVerdict,
    result: DriftResult,
    cal: Calibration | None,
    cfg: ModelConfig,
    source: str,
) -> dict[str, Any]:
    checks = cfg.checks
    return {
        "thresholds": checks.thresholds if cal is not None else "fixed",
        "drift_share": len(verdict.drifted) / len(cfg.features),
        "drift_share_threshold": checks.drift_share,
        "evidently_share": result.share,
        "drifted_columns": verdict.drifted,
        "prediction_drift": verdict.prediction_drift,
        "columns": verdict.columns,
        "reference": source,
        **({"calibration": cal.summary()} if cal is not None else {}),
    }


def drift_summary(verdict: DriftVerdict, features: int) -> str:
    drifted = verdict.drifted
    named = f": {', '.join(drifted[:5])}" if drifted else ""
    summary = f"{len(drifted)}/{features} columns drifted ({verdict.rule}){named}"
    if verdict.prediction_drift:  # fails on its own: say so, even when no column drifted
        return f"the predictions drifted (fails on its own); {summary}"
    return summary


def drift_severity(
    window: pd.DataFrame, reference: VersionReference, cfg: ModelConfig
) -> tuple[str, str]:
    """Severity by impact on quality where labels exist: drift that hurts is high."""
    rows = labelled(window, reference.version)
    if len(rows) < cfg.checks.min_labelled:
        return "warning", "unknown (too few labels yet)"
    headline = HEADLINE[cfg.task]
    value = direct_quality(rows, cfg.task, reference.classes)[headline]
    bound = quality_bound(cfg, reference.baseline, reference.calibration(len(rows)))
    hurt = value > bound if headline in LOWER_IS_BETTER else value < bound
    return ("high" if hurt else "warning"), f"{headline} {value:.3f} (bound {bound:.3f})"


def drifted_region_ids(
    window: pd.DataFrame, reference: pd.DataFrame, drifted: list[str], cfg: ModelConfig
) -> list[str]:
    """Rows outside the reference's 5–95 % range on a drifted numeric column, or with a
    category the reference never had: the samples a correction should learn from."""
    mask = pd.Series(False, index=window.index)
    for col in drifted:
        if col in cfg.numeric_features:
            lo, hi = np.nanquantile(pd.to_numeric(reference[col], errors="coerce"), [0.05, 0.95])
            values = pd.to_numeric(window[col], errors="coerce")
            mask |= (values < lo) | (values > hi)
        else:
            mask |= ~window[col].astype(str).isin(set(reference[col].astype(str)))
    return window.loc[mask, "prediction_id"].tolist()


def evidently_threshold(figures: dict, default: float | None) -> float | None:
    """Warden's bound for one column in the method's own units: the calibrated normal high
    (a distance, or -log10 p for p-value methods), else the configured threshold."""
    high = figures.get("normal_high")
    if high is None:
        return default
    method = figures.get("method", "")
    return 10.0 ** (-high) if "p_value" in method or method in P_VALUE_METHODS else high


def drift_page_report(
    current: pd.DataFrame,
    reference: pd.DataFrame,
    numeric: list[str],
    categorical: list[str],
    columns: dict[str, dict],
    *,
    order: list[str],
    method: str | None,
    threshold: float | None,
):
    """One Evidently `ValueDrift` per column (drifted ones first), each at warden's threshold,
    so every "drift detected / not detected" on the page is warden's verdict; no preset
    headline (its share is a rule warden does not use). A column the fast path judged is drawn
    with the same implementation, registered with Evidently (`fast_drift`)."""
    from evidently import Report
    from evidently.metrics import ValueDrift

    register_with_evidently()
    names = [*numeric, *categorical]
    ranked = [c for c in order if c in names] + [c for c in names if c not in order]
    metrics = []
    for col in ranked:
        figures = columns.get(col, {})
        options = {
            "method": page_method(figures) or method,
            "threshold": evidently_threshold(figures, threshold),
        }
        metrics.append(ValueDrift(column=col, **{k: v for k, v in options.items() if v}))
    return Report(metrics, include_tests=True).run(
        *evidently_datasets(current, reference, numeric, categorical)
    )
