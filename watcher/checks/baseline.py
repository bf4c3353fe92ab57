"""The reference side of one serving version: the frame a window is compared with (the
reference set, a pinned earlier window, or the window a corrected version was tuned on), its
normal ranges, and the quality bound they give. Public functions: the checker caches what they
return, every check kind reads it through `VersionReference`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pandas as pd
import structlog
from sqlalchemy import Engine

from correctors.models.champion import load_reference
from correctors.models.runtime import OnnxModel
from storage.queries import recent_window
from storage.registry import ModelRegistry
from watcher.checks.calibration import Calibration, NormalRange, calibrate
from watcher.checks.drift import DriftResult, run_drift
from watcher.checks.fast_drift import fast_drift, fast_methods
from watcher.checks.figures_calibration import calibrate_figures_fast
from watcher.checks.outcome import (
    GROUP_PREFIX,
    Baseline,
    reference_group_columns,
    with_group_columns,
)
from watcher.checks.profile import (
    ReferenceProfile,
    fingerprint,
    fit_profile,
    load_profile,
    save_profile,
)
from watcher.checks.profile_calibration import calibrate_profile
from watcher.checks.quality import HEADLINE, LOWER_IS_BETTER, direct_quality
from watcher.checks.slices import bin_edges
from watcher.config import ModelConfig

log = structlog.get_logger("warden.detection")
PROFILE_ROUNDS = 200  # bootstrap rounds per figure from the profile (seconds, not minutes)

ORDER_COLUMNS = {"ts", "timestamp", "time", "date"}  # a reference with one is ordered


def load_baseline(
    engine: Engine, name: str, cfg: ModelConfig, card: dict[str, Any], model: OnnxModel
) -> Baseline:
    """Reference side for the version `card` describes and `model` serves: the reference set,
    a pinned earlier window, or the window a corrected version was tuned on (its card says so)."""
    spec = card.get("baseline", {}).get("drift_reference", {"kind": "reference"})
    pinned = cfg.checks.pinned_reference
    frame: pd.DataFrame | None = None
    note = ""
    if pinned is not None:
        frame = stored_window(engine, name, cfg, since=pinned.start, until=pinned.end)
        source = f"pinned window {pinned.start.isoformat()} – {pinned.end.isoformat()}"
        return scored_baseline(frame, source, False, cfg, model)
    if spec.get("kind") == "window":
        frame, note = tuning_window(engine, name, cfg, spec)
    if frame is not None:
        return scored_baseline(frame, note, False, cfg, model)
    frame, ordered = reference_set(cfg)
    return scored_baseline(frame, f"reference set {cfg.reference.name}{note}", ordered, cfg, model)


def reference_set(cfg: ModelConfig) -> tuple[pd.DataFrame, bool]:
    """The configured reference set with its group columns, and whether its rows are ordered
    (by `reference_order_column`, or a time column)."""
    frame = load_reference(cfg)
    order = cfg.checks.reference_order_column
    if order is not None and order in frame:
        frame = frame.sort_values(order, kind="stable")
    ordered = (order is not None and order in frame) or bool(ORDER_COLUMNS & set(frame))
    for attribute in reference_group_columns(frame, cfg):
        frame[GROUP_PREFIX + attribute] = frame[attribute]
    return frame, ordered


def scored_baseline(
    frame: pd.DataFrame, source: str, ordered: bool, cfg: ModelConfig, model: OnnxModel
) -> Baseline:
    """The reference rows scored by the serving version, with their quality and bin edges."""
    frame = frame.reset_index(drop=True)
    preds, _ = model.predict(frame)
    out = frame[[*cfg.features, *[c for c in frame if c.startswith(GROUP_PREFIX)]]].copy()
    out["prediction"] = preds
    out["target"] = frame["label"].astype(str)
    edges = {c: bin_edges(out[c], cfg.checks.slice_bins) for c in cfg.numeric_features}
    chunks = cfg.checks.calibration_chunks
    ordered = chunks == "contiguous" or (chunks == "auto" and ordered)
    return Baseline(out, direct_quality(out, cfg.task, model.classes), source, edges, ordered)


def tuning_window(
    engine: Engine, name: str, cfg: ModelConfig, spec: dict[str, Any]
) -> tuple[pd.DataFrame | None, str]:
    """The rows a corrected version was tuned on, only those it was not trained on when
    there are enough (its own training rows make quality look better than it is); None
    (the reference set instead) when the window is too small to compare with."""
    try:
        frame = stored_window(
            engine, name, cfg, start_seq=spec["start_seq"], end_seq=spec["end_seq"]
        )
    except ValueError as exc:
        return None, f" ({exc})"
    source = f"tuning window seq {spec['start_seq']}–{spec['end_seq']}"
    held_out = frame[frame["seq"].isin(set(spec.get("holdout_seqs") or []))]
    if len(held_out) >= 2 * cfg.checks.min_rows:
        return held_out, f"{source}, {len(held_out)} held-out rows"
    return frame, source


def stored_window(
    engine: Engine,
    name: str,
    cfg: ModelConfig,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    start_seq: int | None = None,
    end_seq: int | None = None,
) -> pd.DataFrame:
    """Labelled stored predictions as a reference; ValueError below 2 × min_rows."""
    frame = with_group_columns(
        recent_window(
            engine,
            name,
            cfg.checks.window * 4,
            labelled_only=True,
            since=since,
            until=until,
            start_seq=start_seq,
            end_seq=end_seq,
        )
    )
    if len(frame) < 2 * cfg.checks.min_rows:
        raise ValueError(
            f"models.{name}.checks: the reference window has {len(frame)} labelled "
            f"rows, fewer than 2 × min_rows"
        )
    return frame


def drift_columns(cfg: ModelConfig) -> tuple[list[str], list[str]]:
    """Numeric and categorical columns the drift check compares, the prediction included."""
    if cfg.task == "regression":
        return [*cfg.numeric_features, "prediction"], list(cfg.categorical_features)
    return list(cfg.numeric_features), [*cfg.categorical_features, "prediction"]


def version_profile(
    registry: ModelRegistry, name: str, version: str, base: Baseline, cfg: ModelConfig
) -> ReferenceProfile:
    """The version's reference profile: loaded from the registry when it was fitted on these
    very reference rows, else fitted now and stored beside the card."""
    numeric, categorical = drift_columns(cfg)
    expected = fingerprint(base.frame, [*numeric, *categorical])
    found = load_profile(registry, name, version, expected)
    if found is not None:
        return found
    found = fit_profile(
        base.frame,
        numeric,
        categorical,
        source=base.source,
        quality=base.quality,
        edges=base.edges,
        known_fingerprint=expected,
    )
    keep_profile(registry, name, version, found)
    return found


def keep_profile(
    registry: ModelRegistry, name: str, version: str, profile: ReferenceProfile
) -> None:
    """Store the profile; a registry that cannot be written costs a refit later, no check."""
    try:
        save_profile(registry, name, version, profile)
    except OSError as exc:
        log.warning("profile not stored", model=name, version=version, error=str(exc))


def uses_fast_path(base: Baseline, cfg: ModelConfig) -> bool:
    """Drift from the profile (numpy), or Evidently for a method the fast path lacks."""
    method = cfg.checks.drift_method
    return base.profile is not None and (method is None or method in fast_methods())


def column_drift(current: pd.DataFrame, base: Baseline, cfg: ModelConfig) -> DriftResult:
    """Every drift column of `current` against the baseline, Evidently's figures."""
    checks = cfg.checks
    numeric, categorical = drift_columns(cfg)
    method, threshold = checks.drift_method, checks.drift_threshold
    if uses_fast_path(base, cfg):
        return fast_drift(
            base.profile, current, numeric, categorical, method=method, threshold=threshold
        )
    return run_drift(current, base.frame, numeric, categorical, method=method, threshold=threshold)


def calibration_key(part: str, bucket: int, base: Baseline, cfg: ModelConfig) -> str:
    """What a stored calibration depends on, besides the reference itself."""
    checks = cfg.checks
    return (
        f"{part}:{bucket}:{checks.calibration_rounds}:{checks.calibration_sigmas}:"
        f"{base.ordered}:{checks.drift_method}:{checks.drift_threshold}"
    )


def calibrate_drift(base: Baseline, cfg: ModelConfig, chunk_rows: int) -> Calibration:
    """Normal ranges of every column's drift magnitude: ≥ 200 bootstrap rounds from the
    profile (numpy: seconds), or Evidently on every chunk for a method the fast path lacks."""
    checks = cfg.checks
    numeric, categorical = drift_columns(cfg)
    if uses_fast_path(base, cfg):
        return calibrate_profile(
            base.profile,
            chunk_rows,
            rounds=max(checks.calibration_rounds, PROFILE_ROUNDS),
            sigmas=checks.calibration_sigmas,
            method=checks.drift_method,
            frame=base.frame,
            contiguous=base.ordered,
        )
    return calibrate(
        base.frame,
        chunk_rows,
        rounds=checks.calibration_rounds,
        sigmas=checks.calibration_sigmas,
        contiguous=base.ordered,
        drift=lambda chunk, rest: (
            run_drift(
                chunk,
                rest,
                numeric,
                categorical,
                method=checks.drift_method,
                threshold=checks.drift_threshold,
            ).columns
        ),
    )


def calibrate_figures(
    base: Baseline, cfg: ModelConfig, classes: list[str], chunk_rows: int
) -> Calibration:
    """Normal ranges of the quality figures and group gaps: `direct_quality` and `direct_gaps`
    on 200 chunks, as matrix products (figures_calibration.py; milliseconds to a second)."""
    checks = cfg.checks
    attributes = [c for c in base.frame if c.startswith(GROUP_PREFIX)]
    return calibrate_figures_fast(
        base.frame[["target", "prediction", *attributes]],
        chunk_rows,
        task=cfg.task,
        classes=classes,
        attributes=attributes,
        min_group_rows=checks.min_group_rows,
        rounds=max(checks.calibration_rounds, PROFILE_ROUNDS),
        sigmas=checks.calibration_sigmas,
        contiguous=base.ordered,
    )


def quality_bound(cfg: ModelConfig, base: Baseline, cal: Calibration | None) -> float:
    """The worst headline figure that is still normal (calibrated, fixed or a floor)."""
    checks, headline = cfg.checks, HEADLINE[cfg.task]
    worse_is_higher = headline in LOWER_IS_BETTER
    if cal is not None and headline in cal.quality:
        normal: NormalRange = cal.quality[headline]
        bound = normal.high if worse_is_higher else normal.low
    elif worse_is_higher:
        bound = base.quality[headline] + checks.max_mae_increase
    else:
        bound = base.quality[headline] - checks.max_accuracy_drop
    if worse_is_higher and checks.max_mae is not None:
        bound = min(bound, checks.max_mae)
    if not worse_is_higher and checks.min_accuracy is not None:
        bound = max(bound, checks.min_accuracy)
    return bound
