"""The drift check: per-column data drift and prediction drift against the baseline, and the
rows of the drifted region that a correction should learn from."""

from __future__ import annotations

import numpy as np
import pandas as pd
import structlog

from watcher.checks.drift import _datasets, run_drift
from watcher.checks.outcome import CheckOutcome, seq_range
from watcher.checks.quality import (
    HEADLINE,
    LOWER_IS_BETTER,
    direct_quality,
)
from watcher.config import ModelConfig

log = structlog.get_logger("warden.detection")


class DriftCheck:
    """The drift check of `ModelChecker`: each column and the prediction against the
    baseline, judged by calibrated normal ranges (or a fixed share)."""

    def drift(self, cfg: ModelConfig, version: str, window: pd.DataFrame) -> CheckOutcome:
        checks = cfg.checks
        outcome = CheckOutcome("drift", version, passed=True, rows=len(window))
        outcome.seq_range = seq_range(window)
        if len(window) < checks.min_rows:
            return outcome.skip(f"window has {len(window)} rows < min_rows {checks.min_rows}")
        base = self.baseline(cfg, version)
        numeric, categorical = self._drift_columns(cfg)
        current = window[cfg.features].copy()
        if cfg.task == "regression":
            current["prediction"] = pd.to_numeric(window["prediction"], errors="coerce")
        else:
            current["prediction"] = window["prediction"].astype(str)
        result = run_drift(
            current,
            base.frame,
            numeric,
            categorical,
            method=checks.drift_method,
            threshold=checks.drift_threshold,
        )
        cal = self.calibration(cfg, version, len(window), "drift")
        columns: dict[str, dict] = {}
        for col, found in result.columns.items():
            normal = cal.columns.get(col) if cal is not None else None
            comparable = normal is not None and cal.methods.get(col) == found.method
            drifted = found.magnitude > normal.high if comparable else found.evidently_drifted
            columns[col] = {
                "score": found.score,
                "method": found.method,
                "magnitude": found.magnitude,
                "drifted": bool(drifted),
                "normal_high": normal.high if comparable else None,
                "sigmas": normal.sigmas_above(found.magnitude) if comparable else None,
            }
        drifted = sorted(
            (c for c in cfg.features if columns.get(c, {}).get("drifted")),
            key=lambda c: -(columns[c]["sigmas"] or columns[c]["magnitude"]),
        )
        share = len(drifted) / len(cfg.features)
        prediction_drift = bool(columns.get("prediction", {}).get("drifted"))
        if cal is not None:
            outcome.passed = len(drifted) < checks.min_drifted_columns and not prediction_drift
            rule = f"columns outside their normal range (≥{checks.min_drifted_columns} fails)"
        else:
            outcome.passed = share < checks.drift_share
            rule = f"share of drifted columns (≥{checks.drift_share} fails)"
        outcome.figures = {
            "thresholds": checks.thresholds if cal is not None else "fixed",
            "drift_share": share,
            "drift_share_threshold": checks.drift_share,
            "evidently_share": result.share,
            "drifted_columns": drifted,
            "prediction_drift": prediction_drift,
            "columns": columns,
            "reference": base.source,
            **({"calibration": cal.summary()} if cal is not None else {}),
        }
        named = f": {', '.join(drifted[:5])}" if drifted else ""
        outcome.summary = f"{len(drifted)}/{len(cfg.features)} columns drifted ({rule}){named}"
        if prediction_drift:  # fails on its own: say so, even when no column drifted
            outcome.summary = f"the predictions drifted (fails on its own); {outcome.summary}"
        if not outcome.passed:
            outcome.severity, impact = self._drift_severity(cfg, version, window)
            outcome.figures["quality_impact"] = impact
            outcome.flagged_ids = drifted_region_ids(window, base.frame, drifted, cfg)[
                : checks.max_flagged_ids
            ]
            report = drift_page_report(
                current,
                base.frame,
                numeric,
                categorical,
                columns,
                order=[*drifted, "prediction"],
                method=checks.drift_method,
                threshold=checks.drift_threshold,
            )
            outcome.report_path = self.save(
                report,
                outcome,
                base.source,
                note="Every column below is judged at warden's threshold: its calibrated normal "
                "range where there is one, else the configured method's threshold.",
            )
        return outcome

    def _drift_severity(self, cfg: ModelConfig, version: str, window: pd.DataFrame):
        """Severity by impact on quality where labels exist: drift that hurts is high."""
        labelled = self.labelled(cfg, version, window)
        if len(labelled) < cfg.checks.min_labelled:
            return "warning", "unknown (too few labels yet)"
        classes = self.serving_model(version).classes
        headline = HEADLINE[cfg.task]
        value = direct_quality(labelled, cfg.task, classes)[headline]
        bound = self._quality_bound(cfg, version, len(labelled))
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
    return 10.0 ** (-high) if "p_value" in figures.get("method", "") else high


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
    headline (its share is a rule warden does not use)."""
    from evidently import Report
    from evidently.metrics import ValueDrift

    names = [*numeric, *categorical]
    ranked = [c for c in order if c in names] + [c for c in names if c not in order]
    metrics = []
    for col in ranked:
        options = {"method": method, "threshold": evidently_threshold(columns[col], threshold)}
        metrics.append(ValueDrift(column=col, **{k: v for k, v in options.items() if v}))
    return Report(metrics, include_tests=True).run(
        *_datasets(current, reference, numeric, categorical)
    )
