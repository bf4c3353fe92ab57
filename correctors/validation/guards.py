"""What the gate guards besides the headline: the groups of the recent holdout, and the
reference outside the regions where recent labels differ from it."""

from __future__ import annotations

import numpy as np
import pandas as pd

from correctors.settings import CorrectionConfig
from correctors.validation.gate import EvalSet
from correctors.validation.regions import RegionShift, region_shift
from correctors.validation.scores import GROUP_MIN_ROWS, GroupKey


def quantile_bins(values: np.ndarray, bins: int) -> np.ndarray:
    """Regression targets as quantile bins, so replay keeps the reference's target spread."""
    edges = np.unique(np.quantile(values, np.linspace(0, 1, bins + 1))[1:-1])
    return np.digitize(values, edges)


def clipped_values(encoder, x: np.ndarray) -> int:
    """How many numeric inputs the encoder clipped (at ±clip_sd): counted for the summary."""
    if encoder.clip_sd is None or not encoder.numeric:
        return 0
    numeric = np.abs(x[:, : len(encoder.numeric)])
    return int((numeric >= encoder.clip_sd - 1e-6).sum())


def group_mask(window: pd.DataFrame, focus: tuple[str, str] | None) -> np.ndarray:
    if focus is None or "groups" not in window:
        return np.zeros(len(window), dtype=bool)
    attribute, value = focus
    return np.array(
        [isinstance(g, dict) and str(g.get(attribute)) == value for g in window["groups"]]
    )


def holdout_groups(window: pd.DataFrame, holdout: np.ndarray) -> dict[GroupKey, np.ndarray]:
    """The rows of every group value (per attribute) of the recent holdout, however few."""
    if "groups" not in window:
        return {}
    groups = pd.DataFrame.from_records(
        [g if isinstance(g, dict) else {} for g in window["groups"].iloc[holdout]]
    )
    out = {}
    for attribute in sorted(groups.columns):
        for value in sorted(groups[attribute].dropna().astype(str).unique()):
            out[GroupKey(attribute, value)] = holdout[
                (groups[attribute].astype(str) == value).to_numpy()
            ]
    return out


def group_sets(groups: dict[GroupKey, np.ndarray], x: np.ndarray, y: np.ndarray) -> list[EvalSet]:
    """One evaluation set per group with enough holdout rows to be judged."""
    return [
        EvalSet(key.set_name, x[rows], y[rows], key)
        for key, rows in groups.items()
        if len(rows) >= GROUP_MIN_ROWS
    ]


def reference_shift(
    task: str,
    x_ref: np.ndarray,
    y_ref: np.ndarray,
    x_recent: np.ndarray,
    y_recent: np.ndarray,
    settings: CorrectionConfig,
) -> RegionShift:
    """The reference rows that leave the no-forgetting guard: those beside recent labelled rows
    in regions where recent labels differ significantly from the reference's there
    (`correctors.validation.regions`). No model trained on the recent rows takes part."""
    return region_shift(
        x_ref,
        y_ref,
        x_recent,
        y_recent,
        "regression" if task == "regression" else "classification",
        alpha=settings.shift_alpha,
        min_effect=settings.shift_min_effect,
        min_recent_rows=settings.shift_min_recent_rows,
        min_reference_rows=settings.shift_min_reference_rows,
        seed=settings.seed,
    )
