"""Per-group figures for the bias check: gaps computed directly, fixed bounds, and whether a
gap is significant in the window (two-proportion z-test, or Welch's t for MAE)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from watcher.checks.quality import (
    direct_quality,
    gaps,
)
from watcher.config import ModelConfig


def fixed_gap_bounds(cfg: ModelConfig) -> dict[str, float]:
    checks = cfg.checks
    return {
        "demographic_parity_difference": checks.max_parity_gap,
        "equal_opportunity_difference": checks.max_opportunity_gap,
        "accuracy_gap": checks.max_quality_gap,
        "mae_gap": checks.max_quality_gap,
    }


def direct_gaps(frame: pd.DataFrame, column: str, cfg: ModelConfig, classes: list[str]) -> dict:
    """Group gaps computed with numpy (calibration's many rounds; tests' second opinion)."""
    groups: dict[str, dict] = {}
    values = frame[column].dropna()
    for value, part in frame.loc[values.index].groupby(values.astype(str)):
        figures = direct_quality(part, cfg.task, classes)
        figures["rows"] = len(part)
        figures["judged"] = len(part) >= cfg.checks.min_group_rows
        groups[str(value)] = figures
    return gaps(groups, cfg.task)


GAP_INDICATORS = {
    "accuracy_gap": lambda f, pos: f["prediction"] == f["target"],
    "demographic_parity_difference": lambda f, pos: f["prediction"] == pos,
    "equal_opportunity_difference": lambda f, pos: (f["prediction"] == pos)[f["target"] == pos],
}


def gap_p_value(
    frame: pd.DataFrame, column: str, gap: str, figures: dict, task: str, classes: list[str]
) -> float:
    """Two-sided p-value that the two end groups differ: a two-proportion z-test for rates,
    Welch's t-test for the MAE gap."""
    from scipy.stats import norm, ttest_ind

    groups = frame[column].astype(str)
    needed = frame[["target", "prediction"]]  # all a gap reads: never copy the whole window
    low, high = (needed[groups == g] for g in (figures["low_group"], figures["high_group"]))
    if task == "regression":
        errs = [
            (pd.to_numeric(p["prediction"]) - pd.to_numeric(p["target"])).abs() for p in (low, high)
        ]
        return float(ttest_ind(*errs, equal_var=False).pvalue)
    positive = classes[-1]
    a, b = (GAP_INDICATORS[gap](p, positive).to_numpy(dtype=float) for p in (low, high))
    if len(a) == 0 or len(b) == 0:
        return 1.0
    pooled = (a.sum() + b.sum()) / (len(a) + len(b))
    se = np.sqrt(pooled * (1 - pooled) * (1 / len(a) + 1 / len(b)))
    if se == 0:
        return 1.0 if a.mean() == b.mean() else 0.0
    return float(2 * norm.sf(abs(a.mean() - b.mean()) / se))
