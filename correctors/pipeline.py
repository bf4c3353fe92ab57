"""Incident → candidate: select samples, fine-tune, export, check parity, validate.

The candidate row is written first (status `training`) and every later state is an update plus
an audit event, so a crash mid-way leaves a visible trace rather than nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sqlalchemy import Engine

from correctors.champion import Champion, load_champion, load_reference, register_version
from correctors.export import onnx_session, parity
from correctors.modeling import predict_outputs, predict_proba
from correctors.selection import drifted_region_mask, sample_replay, seeded_split
from correctors.settings import CorrectionConfig, ModelDefinition
from correctors.shift import ShiftedRegion, find_shifted_region
from correctors.validation import EvalSet, evaluate, headline, judge
from correctors.worker import FineTuneFailed, fine_tune_in_worker
from storage.audit import record_event
from storage.db import session_scope
from storage.registry import ModelRegistry
from storage.tables import Candidate, utcnow

EpochCallback = Callable[[int, float, float], None]
PARITY_ROWS = 1000
log = logging.getLogger(__name__)


class NothingToCorrect(RuntimeError):
    """The window holds too few usable labelled samples to train on."""


class TrainingFailed(RuntimeError):
    """The training worker crashed, ran out of memory or time: retry the incident later."""


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
    labelled = window[window["label"].notna()]
    deduplicated = labelled.drop_duplicates("prediction_id")
    known, y_win = _encode_labels(champion, deduplicated)
    window = deduplicated[known].reset_index(drop=True)
    enc = champion.encoder
    x_win = enc.transform(window)  # the encoder clips, exactly as serving does
    clipped = clipped_values(enc, x_win)
    ref_known, y_ref = _encode_labels(champion, reference)
    reference = reference[ref_known].reset_index(drop=True)
    x_ref = enc.transform(reference)

    split = seeded_split(len(window), settings.holdout_fraction, settings.seed)
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
    region = _shifted_region(
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
    )


GROUP_MIN_ROWS = 20  # holdout rows a group needs to be judged by the gate


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


def group_sets(
    window: pd.DataFrame, holdout: np.ndarray, x: np.ndarray, y: np.ndarray
) -> list[EvalSet]:
    """One evaluation set per group value (per attribute) of the recent holdout."""
    if "groups" not in window:
        return []
    groups = pd.DataFrame.from_records(
        [g if isinstance(g, dict) else {} for g in window["groups"].iloc[holdout]]
    )
    sets = []
    for attribute in sorted(groups.columns):
        for value in sorted(groups[attribute].dropna().astype(str).unique()):
            rows = holdout[(groups[attribute].astype(str) == value).to_numpy()]
            if len(rows) >= GROUP_MIN_ROWS:
                sets.append(EvalSet(f"group:{attribute}={value}", x[rows], y[rows]))
    return sets


def _shifted_region(
    champion: Champion,
    x_ref: np.ndarray,
    y_ref: np.ndarray,
    x_recent: np.ndarray,
    y_recent: np.ndarray,
    settings: CorrectionConfig,
):
    """Compare the old truth (champion) with a recent truth (champion tuned on recent only).
    Regression has no class confidence to compare: the whole reference stays guarded."""
    if champion.task == "regression":
        return _shifted_values(champion, x_ref, x_recent, y_recent, settings)
    recent_model = fine_tune_in_worker(champion.torch_model, x_recent, y_recent, settings).model
    return find_shifted_region(
        y_ref,
        champion.onnx.proba_encoded(x_ref),
        predict_proba(recent_model, x_ref),
        confidence=settings.shift_confidence,
        min_share=settings.shift_min_share,
    )


def _shifted_values(champion, x_ref, x_recent, y_recent, settings) -> ShiftedRegion:
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


def _update(engine: Engine, candidate_id: str, **fields) -> Candidate:
    with session_scope(engine) as session:
        row = session.get(Candidate, candidate_id)
        for key, value in fields.items():
            setattr(row, key, value)
        row.updated_at = utcnow()
        session.add(row)
    return row


def train_candidate(
    engine: Engine,
    registry: ModelRegistry,
    model: str,
    definition: ModelDefinition,
    settings: CorrectionConfig,
    window: pd.DataFrame,
    *,
    incident_id: int | None = None,
    drifted_columns: list[str] | None = None,
    on_epoch: EpochCallback | None = None,
    flagged_ids: set[str] | None = None,
    focus_group: tuple[str, str] | None = None,
) -> Candidate:
    """Produce a validated or rejected candidate for `model` from a labelled window."""
    started = time.perf_counter()
    parent = registry.active(model)
    if parent is None:
        raise NothingToCorrect(f"model {model!r} has no active version to correct")
    champion = load_champion(registry, model, parent)
    try:
        prepared = prepare(
            champion,
            window,
            load_reference(definition),
            drifted_columns or [],
            settings,
            flagged_ids=flagged_ids,
            focus_group=focus_group,
        )
    except FineTuneFailed as exc:
        raise TrainingFailed(exc.reason) from exc
    version = registry.next_version(model)
    candidate_id = f"{model}-{version}"
    with session_scope(engine) as session:
        session.add(
            Candidate(
                id=candidate_id,
                model=model,
                version=version,
                parent_version=parent,
                incident_id=incident_id,
                training=prepared.counts,
            )
        )
        record_event(
            session,
            "candidate_training",
            actor="daemon",
            model=model,
            subject=candidate_id,
            incident_id=incident_id,
            **prepared.counts,
        )
    try:
        try:
            result = fine_tune_in_worker(
                champion.torch_model,
                prepared.train_x,
                prepared.train_y,
                settings,
                on_epoch=on_epoch,
            )
        except FineTuneFailed as exc:  # the worker died: the daemon lives, the incident retries
            _finish(engine, model, candidate_id, "failed", exc.reason)
            raise TrainingFailed(exc.reason) from exc
        summary = {**prepared.counts, "fine_tune": result.summary()}
        champ_metrics = evaluate(champion.onnx.proba_encoded, prepared.sets, champion.task)
        card = {
            "factory": champion.card["factory"],
            "factory_kwargs": champion.card["factory_kwargs"],
            "encoder": champion.encoder.to_dict(),
            "classes": champion.classes,
            "task": champion.task,
            "parent": parent,
            "candidate_id": candidate_id,
            "incident_id": incident_id,
            "training": summary,
        }
        onnx_path = register_version(registry, model, version, result.model, champion.encoder, card)
        sample = prepared.x_win[:PARITY_ROWS]
        max_diff = parity(result.model, onnx_path, sample, champion.task)
        served = onnx_session(onnx_path)
        cand_metrics = evaluate(
            lambda x: served.run(None, {"features": x})[0], prepared.sets, champion.task
        )
        verdict = judge(champ_metrics, cand_metrics, max_diff, prepared.shifted, settings)
        metric = headline(champion.task)
        baseline = {
            metric: cand_metrics[f"recent_holdout_{metric}"],
            "drift_reference": {
                "kind": "window",
                "start_seq": prepared.window_seq[0],
                "end_seq": prepared.window_seq[1],
            },
        }
        registry.write_card(
            model,
            version,
            {
                **card,
                "model": model,
                "version": version,
                "baseline": baseline,
                "champion_metrics": champ_metrics,
                "candidate_metrics": cand_metrics,
                "verdict": verdict.to_dict(),
            },
        )
    except TrainingFailed:
        raise
    except Exception as exc:  # noqa: BLE001 - recorded as a rejection with the reason
        log.exception("correction failed for %s", candidate_id)
        return _reject(engine, model, candidate_id, f"correction failed: {exc!r}")
    summary["seconds_total"] = round(time.perf_counter() - started, 3)
    status = "validated" if verdict.passed else "rejected"
    row = _update(
        engine,
        candidate_id,
        status=status,
        training=summary,
        champion_metrics=champ_metrics,
        candidate_metrics=cand_metrics,
        verdict=verdict.to_dict(),
        onnx_path=str(onnx_path),
        onnx_sha256=registry.card(model, version)["onnx_sha256"],
    )
    with session_scope(engine) as s:
        record_event(
            s,
            f"candidate_{status}",
            actor="daemon",
            model=model,
            subject=candidate_id,
            reasons=verdict.reasons,
        )
    return row


def _reject(engine: Engine, model: str, candidate_id: str, reason: str) -> Candidate:
    return _finish(engine, model, candidate_id, "rejected", reason)


def _finish(engine: Engine, model: str, candidate_id: str, status: str, reason: str) -> Candidate:
    """End a candidate that never reached the gate (`rejected` or `failed`), with its reason."""
    row = _update(
        engine, candidate_id, status=status, verdict={"passed": False, "reasons": [reason]}
    )
    with session_scope(engine) as s:
        record_event(
            s,
            f"candidate_{status}",
            actor="daemon",
            model=model,
            subject=candidate_id,
            reasons=[reason],
        )
    return row
