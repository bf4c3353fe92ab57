"""What the gate guards besides the headline: the groups of the recent holdout, and the
reference outside the region the new data contradicts."""

from __future__ import annotations

import numpy as np
import pandas as pd

from correctors.models.champion import Champion
from correctors.models.modeling import predict_outputs, predict_proba
from correctors.settings import CorrectionConfig
from correctors.training.shift import ShiftedRegion, find_shifted_region
from correctors.training.worker import fine_tune_in_worker
from correctors.validation.gate import EvalSet
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


def contradicted_region(
    champion: Champion,
    x_ref: np.ndarray,
    y_ref: np.ndarray,
    x_recent: np.ndarray,
    y_recent: np.ndarray,
    settings: CorrectionConfig,
):
    """Compare the old truth (champion) with a recent truth (champion tuned on recent only,
    to convergence like a candidate: a probe capped at 50 epochs still held the champion's
    old beliefs where recent rows said otherwise on River's Mixed stream, "confirmed" old
    labels there, and the guard rejected candidates that had learnt the new rule)."""
    if champion.task == "regression":
        return contradicted_values(champion, x_ref, x_recent, y_recent, settings)
    recent_model = fine_tune_in_worker(champion.torch_model, x_recent, y_recent, settings).model
    return find_shifted_region(
        y_ref,
        champion.onnx.proba_encoded(x_ref),
        predict_proba(recent_model, x_ref),
        confidence=settings.shift_confidence,
        min_share=settings.shift_min_share,
    )


def contradicted_values(champion, x_ref, x_recent, y_recent, settings) -> ShiftedRegion:
    """Regression: reference rows where a model tuned on recent labels alone and the champion
    disagree by more than twice the reference MAE: there the recent truth contradicts the old."""
    recent_model = fine_tune_in_worker(champion.torch_model, x_recent, y_recent, settings).model
    old = champion.onnx.proba_encoded(x_ref)[:, 0]
    new = predict_outputs(recent_model, x_ref, "regression")[:, 0]
    mae = float(champion.card.get("baseline", {}).get("mae") or 0.5)
    mask = np.abs(new - old) > 2 * mae
    share = float(mask.mean()) if len(mask) else 0.0
    if share < settings.shift_min_share:
        note = f"{share:.1%} of reference rows contradicted: covariate shift only"
        return ShiftedRegion(np.zeros(len(old), bool), int(mask.sum()), False, [note])
    note = f"{share:.1%} of reference rows contradicted by recent labels (|Δ| > 2 × MAE {mae:.3f})"
    return ShiftedRegion(mask, int(mask.sum()), True, [note])
