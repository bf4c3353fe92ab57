"""The training set of a correction: the flagged rows, anchors from the recent window and
replayed reference rows, encoded; a recent holdout kept apart for the gate."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from correctors.models.champion import Champion
from correctors.settings import CorrectionConfig
from correctors.training.selection import (
    drifted_region_mask,
    recent_split,
    sample_replay,
    seeded_split,
)
from correctors.validation.gate import EvalSet
from correctors.validation.guards import (
    clipped_values,
    contradicted_region,
    group_mask,
    group_sets,
    quantile_bins,
)


class NothingToCorrect(RuntimeError):
    """The window holds too few usable labelled samples to train on."""


@dataclass
class Prepared:
    """Encoded data for one correction, with the counts the training summary reports."""

    x_win: np.ndarray
    y_win: np.ndarray
    x_ref: np.ndarray
    y_ref: np.ndarray
    train_x: np.ndarray
    train_y: np.ndarray
    sets: list[EvalSet]
    shifted: dict
    counts: dict
    window_seq: tuple[int, int]
    retrain_x: np.ndarray  # the retrain strategy's rows: recent training rows + the
    retrain_y: np.ndarray  # reference (training part) outside the contradicted region
    holdout_seqs: list[int]  # recent rows no strategy trains on: a corrected version's baseline


def _encode_labels(champion: Champion, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    index = champion.class_index(frame["label"].astype(str))
    known = index.notna().to_numpy()
    dtype = np.float32 if champion.task == "regression" else np.int64
    return known, index[known].to_numpy(dtype=dtype)


def champion_errors(champion: Champion, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Misclassified rows; for regression, high-loss rows (|error| > 2 × reference MAE)."""
    out = champion.onnx.proba_encoded(x)
    if champion.task == "regression":
        mae = float(champion.card.get("baseline", {}).get("mae") or np.abs(out[:, 0] - y).mean())
        return np.abs(out[:, 0] - y) > 2 * mae
    return out.argmax(axis=1) != y


def prepare(
    champion: Champion,
    window: pd.DataFrame,
    reference: pd.DataFrame,
    drifted_columns: list[str],
    settings: CorrectionConfig,
    flagged_ids: set[str] | None = None,
    focus_group: tuple[str, str] | None = None,
) -> Prepared:
    """Split, flag, find the shifted region and draw the replay mix.

    Training rows: the flagged recent rows (the target), the other recent training rows as
    anchors (they mark where the old boundary still holds: training on flagged rows alone lost
    ~4 points of reference accuracy outside the shifted region in our runs, with anchors ~2;
    lr 1e-3 and 3 replay rows per flagged row brought it to ±1 over five seeds),
    and `replay_ratio` replayed reference rows per flagged row, none from the shifted region.
    """
    incoming = len(window)
    # in arrival order: the newest rows are the present truth
    labelled = window[window["label"].notna()].sort_values("seq", kind="stable")
    deduplicated = labelled.drop_duplicates("prediction_id")
    known, y_win = _encode_labels(champion, deduplicated)
    window = deduplicated[known].reset_index(drop=True)
    enc = champion.encoder
    x_win = enc.transform(window)  # the encoder clips, exactly as serving does
    clipped = clipped_values(enc, x_win)
    ref_known, y_ref = _encode_labels(champion, reference)
    reference = reference[ref_known].reset_index(drop=True)
    x_ref = enc.transform(reference)

    split = recent_split(len(window), settings)
    misclassified = champion_errors(champion, x_win, y_win)
    in_drift = drifted_region_mask(window, reference, enc, drifted_columns)
    # what the incidents point at: their flagged samples and a disadvantaged group
    in_incident = window["prediction_id"].isin(flagged_ids or set()).to_numpy()
    in_group = group_mask(window, focus_group)
    flagged_mask = misclassified | in_drift | in_incident | in_group
    flagged = split.train[flagged_mask[split.train]]
    if len(flagged) < 10:
        raise NothingToCorrect(f"only {len(flagged)} flagged labelled samples in the window")

    ref_split = seeded_split(len(reference), settings.reference_holdout_fraction, settings.seed + 1)
    region = contradicted_region(
        champion, x_ref, y_ref, x_win[split.train], y_win[split.train], settings
    )
    eligible = np.zeros(len(reference), dtype=bool)
    eligible[ref_split.train] = True
    eligible &= ~region.mask
    strata = y_ref if champion.task != "regression" else quantile_bins(y_ref, 5)
    replay = sample_replay(
        strata, eligible, int(settings.replay_ratio * len(flagged)), settings.seed
    )

    holdout_ref = ref_split.holdout
    guarded = holdout_ref[~region.mask[holdout_ref]]
    flagged_holdout = split.holdout[flagged_mask[split.holdout]]
    sets = [
        EvalSet("recent_holdout", x_win[split.holdout], y_win[split.holdout]),
        EvalSet("flagged_slice", x_win[flagged_holdout], y_win[flagged_holdout]),
        EvalSet("reference_guarded", x_ref[guarded], y_ref[guarded]),
        EvalSet("reference_holdout", x_ref[holdout_ref], y_ref[holdout_ref]),
        *group_sets(window, split.holdout, x_win, y_win),
    ]
    shifted = region.summary()
    shifted["reference_excluded"] = int(region.mask[holdout_ref].sum())
    shifted["replay_excluded"] = int(
        (region.mask & ~np.isin(np.arange(len(reference)), holdout_ref)).sum()
    )
    counts = {
        "window_labelled_rows": int(len(window)),
        "dropped_missing_labels": int(incoming - len(labelled)),
        "dropped_duplicates": int(len(labelled) - len(deduplicated)),
        "dropped_unknown_labels": int((~known).sum()),
        "clipped_outlier_values": int(clipped),
        "flagged_by_incident": int(in_incident[split.train].sum()),
        "flagged_focus_group": int(in_group[split.train].sum()),
        "recent_train_rows": int(len(split.train)),
        "recent_holdout_rows": int(len(split.holdout)),
        "flagged_misclassified": int(misclassified[split.train].sum()),
        "flagged_drift_region": int(in_drift[split.train].sum()),
        "flagged_total": int(len(flagged)),
        "anchor_rows": int(len(split.train) - len(flagged)),
        "replay_rows": int(len(replay)),
        "drifted_columns": list(drifted_columns),
    }
    return Prepared(
        x_win=x_win,
        y_win=y_win,
        x_ref=x_ref,
        y_ref=y_ref,
        train_x=np.concatenate([x_win[split.train], x_ref[replay]]),
        train_y=np.concatenate([y_win[split.train], y_ref[replay]]),
        sets=sets,
        shifted=shifted,
        counts=counts,
        window_seq=(int(window["seq"].min()), int(window["seq"].max())),
        retrain_x=np.concatenate([x_win[split.train], x_ref[eligible]]),
        retrain_y=np.concatenate([y_win[split.train], y_ref[eligible]]),
        holdout_seqs=[int(s) for s in window["seq"].to_numpy()[split.holdout]],
    )
