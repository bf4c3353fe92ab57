"""The training set of a correction: the flagged rows, anchors from the recent window and
replayed reference rows, encoded; a recent holdout kept apart for the gate."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from correctors.models.champion import Champion
from correctors.settings import CorrectionConfig
from correctors.training.selection import (
    Split,
    drifted_region_mask,
    recent_split,
    sample_replay,
    seeded_split,
)
from correctors.validation.gate import EvalSet
from correctors.validation.guards import (
    clipped_values,
    group_mask,
    group_sets,
    holdout_groups,
    quantile_bins,
    reference_shift,
)
from correctors.validation.region_names import describe_regions
from correctors.validation.regions import RegionShift
from correctors.validation.scores import GroupKey


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
    retrain_y: np.ndarray  # reference (training part) outside the excluded regions
    holdout_seqs: list[int]  # recent rows no strategy trains on: a corrected version's baseline
    group_rows: dict[GroupKey, int] = field(default_factory=dict)  # every holdout group's rows


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


@dataclass
class _Encoded:
    """The window and the reference, cleaned and encoded as serving encodes them."""

    window: pd.DataFrame
    x_win: np.ndarray
    y_win: np.ndarray
    reference: pd.DataFrame
    x_ref: np.ndarray
    y_ref: np.ndarray
    counts: dict


@dataclass
class _Flagged:
    """Which recent rows a correction targets, and why."""

    split: Split
    mask: np.ndarray
    rows: np.ndarray  # training rows flagged
    misclassified: np.ndarray
    in_drift: np.ndarray
    in_incident: np.ndarray
    in_group: np.ndarray


def prepare(
    champion: Champion,
    window: pd.DataFrame,
    reference: pd.DataFrame,
    drifted_columns: list[str],
    settings: CorrectionConfig,
    flagged_ids: set[str] | None = None,
    focus_group: tuple[str, str] | None = None,
) -> Prepared:
    """Split, flag, find where recent labels differ from the reference and draw the replay mix.

    Training rows: the flagged recent rows (the target), the other recent training rows as
    anchors (they mark where the old boundary still holds: training on flagged rows alone lost
    ~4 points of reference accuracy outside the shifted region in our runs, with anchors ~2;
    lr 1e-3 and 3 replay rows per flagged row brought it to ±1 over five seeds),
    and `replay_ratio` replayed reference rows per flagged row, none from the regions where
    recent labels differ (`correctors.validation.regions`, on the recent training rows).
    """
    enc = _encode(champion, window, reference)
    flagged = _flag(champion, enc, drifted_columns, settings, flagged_ids, focus_group)
    train = flagged.split.train
    ref_split = seeded_split(
        len(enc.reference), settings.reference_holdout_fraction, settings.seed + 1
    )
    region = reference_shift(
        champion.task, enc.x_ref, enc.y_ref, enc.x_win[train], enc.y_win[train], settings
    )
    eligible = np.zeros(len(enc.reference), dtype=bool)
    eligible[ref_split.train] = True
    eligible &= ~region.mask
    strata = enc.y_ref if champion.task != "regression" else quantile_bins(enc.y_ref, 5)
    replay = sample_replay(
        strata, eligible, int(settings.replay_ratio * len(flagged.rows)), settings.seed
    )
    groups = holdout_groups(enc.window, flagged.split.holdout)
    return Prepared(
        x_win=enc.x_win,
        y_win=enc.y_win,
        x_ref=enc.x_ref,
        y_ref=enc.y_ref,
        train_x=np.concatenate([enc.x_win[train], enc.x_ref[replay]]),
        train_y=np.concatenate([enc.y_win[train], enc.y_ref[replay]]),
        sets=_eval_sets(enc, flagged, ref_split.holdout, region, groups),
        shifted=_shifted(region, ref_split.holdout, _names(champion, enc, region)),
        counts={**enc.counts, **_flag_counts(flagged, len(replay), drifted_columns)},
        window_seq=(int(enc.window["seq"].min()), int(enc.window["seq"].max())),
        retrain_x=np.concatenate([enc.x_win[train], enc.x_ref[eligible]]),
        retrain_y=np.concatenate([enc.y_win[train], enc.y_ref[eligible]]),
        holdout_seqs=[int(s) for s in enc.window["seq"].to_numpy()[flagged.split.holdout]],
        group_rows={key: len(rows) for key, rows in groups.items()},
    )


def _encode(champion: Champion, window: pd.DataFrame, reference: pd.DataFrame) -> _Encoded:
    """Labelled rows in arrival order (the newest are the present truth), deduplicated, with
    known labels; the encoder clips exactly as serving does."""
    incoming = len(window)
    labelled = window[window["label"].notna()].sort_values("seq", kind="stable")
    deduplicated = labelled.drop_duplicates("prediction_id")
    known, y_win = _encode_labels(champion, deduplicated)
    window = deduplicated[known].reset_index(drop=True)
    x_win = champion.encoder.transform(window)
    ref_known, y_ref = _encode_labels(champion, reference)
    reference = reference[ref_known].reset_index(drop=True)
    counts = {
        "window_labelled_rows": int(len(window)),
        "dropped_missing_labels": int(incoming - len(labelled)),
        "dropped_duplicates": int(len(labelled) - len(deduplicated)),
        "dropped_unknown_labels": int((~known).sum()),
        "clipped_outlier_values": int(clipped_values(champion.encoder, x_win)),
    }
    x_ref = champion.encoder.transform(reference)
    return _Encoded(window, x_win, y_win, reference, x_ref, y_ref, counts)


def _flag(
    champion: Champion,
    enc: _Encoded,
    drifted_columns: list[str],
    settings: CorrectionConfig,
    flagged_ids: set[str] | None,
    focus_group: tuple[str, str] | None,
) -> _Flagged:
    """The recent training rows to correct: misclassified, in the drifted region, or what the
    incidents point at (their flagged samples and a disadvantaged group)."""
    split = recent_split(len(enc.window), settings)
    misclassified = champion_errors(champion, enc.x_win, enc.y_win)
    in_drift = drifted_region_mask(enc.window, enc.reference, champion.encoder, drifted_columns)
    in_incident = enc.window["prediction_id"].isin(flagged_ids or set()).to_numpy()
    in_group = group_mask(enc.window, focus_group)
    mask = misclassified | in_drift | in_incident | in_group
    rows = split.train[mask[split.train]]
    if len(rows) < 10:
        raise NothingToCorrect(f"only {len(rows)} flagged labelled samples in the window")
    return _Flagged(split, mask, rows, misclassified, in_drift, in_incident, in_group)


def _eval_sets(
    enc: _Encoded,
    flagged: _Flagged,
    holdout_ref: np.ndarray,
    region: RegionShift,
    groups: dict[GroupKey, np.ndarray],
) -> list[EvalSet]:
    holdout = flagged.split.holdout
    guarded = holdout_ref[~region.mask[holdout_ref]]
    regions = region.region_of
    flagged_holdout = holdout[flagged.mask[holdout]]
    return [
        EvalSet("recent_holdout", enc.x_win[holdout], enc.y_win[holdout]),
        EvalSet("flagged_slice", enc.x_win[flagged_holdout], enc.y_win[flagged_holdout]),
        EvalSet(
            "reference_guarded", enc.x_ref[guarded], enc.y_ref[guarded], regions=regions[guarded]
        ),
        EvalSet("reference_holdout", enc.x_ref[holdout_ref], enc.y_ref[holdout_ref]),
        *group_sets(groups, enc.x_win, enc.y_win),
    ]


def _names(champion: Champion, enc: _Encoded, region: RegionShift) -> dict[int, str]:
    """Every region named in the reference's own columns and units."""
    encoder = champion.encoder
    return describe_regions(enc.reference, region.region_of, encoder.numeric, encoder.categorical)


def _shifted(region: RegionShift, holdout_ref: np.ndarray, names: dict[int, str]) -> dict:
    """The verdict's account of the guard: what left it, where, on what evidence. Region rows
    are kept for the regions recent rows reach (the others stay guarded whole)."""
    shifted = region.as_dict()
    shifted["regions"] = [
        {**row, "where": names.get(row["region"], "")}
        for row in shifted["regions"]
        if row["reached"]
    ]
    shifted["where"] = {str(k): v for k, v in names.items()}
    shifted["concept_shift"] = region.excluded_rows > 0
    shifted["reference_holdout_rows"] = int(len(holdout_ref))
    shifted["reference_excluded"] = int(region.mask[holdout_ref].sum())
    shifted["replay_excluded"] = int(
        (region.mask & ~np.isin(np.arange(len(region.mask)), holdout_ref)).sum()
    )
    return shifted


def _flag_counts(flagged: _Flagged, replay_rows: int, drifted_columns: list[str]) -> dict:
    train = flagged.split.train
    return {
        "flagged_by_incident": int(flagged.in_incident[train].sum()),
        "flagged_focus_group": int(flagged.in_group[train].sum()),
        "recent_train_rows": int(len(train)),
        "recent_holdout_rows": int(len(flagged.split.holdout)),
        "flagged_misclassified": int(flagged.misclassified[train].sum()),
        "flagged_drift_region": int(flagged.in_drift[train].sum()),
        "flagged_total": int(len(flagged.rows)),
        "anchor_rows": int(len(train) - len(flagged.rows)),
        "replay_rows": int(replay_rows),
        "drifted_columns": list(drifted_columns),
    }
