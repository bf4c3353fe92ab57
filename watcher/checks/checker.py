"""Scheduled checks of one model's traffic against its reference, with Evidently:

- **drift**: per-column data drift and prediction drift;
- **error**: quality once labels arrive, with the slices where errors concentrate;
- **bias**: per-group quality and outcome rates, and the gaps between groups.

Thresholds are calibrated on the reference by default (see `calibration.py`), or fixed in
config. Evidently is imported lazily inside the helpers: it costs ~3 s and ~290 MB at import.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import structlog
from sqlalchemy import Engine

from correctors.models.champion import load_reference
from correctors.models.runtime import OnnxModel
from storage.queries import recent_window
from storage.registry import ModelRegistry
from watcher.checks.bias_check import BiasCheck
from watcher.checks.calibration import Calibration, calibrate, size_bucket
from watcher.checks.drift import run_drift
from watcher.checks.drift_check import DriftCheck
from watcher.checks.error_check import ErrorCheck
from watcher.checks.evidently_page import save_page, verdict_markdown
from watcher.checks.groups import direct_gaps
from watcher.checks.outcome import (
    GROUP_PREFIX,
    KINDS,
    Baseline,
    CheckOutcome,
    reference_group_columns,
    seq_range,
    with_group_columns,
)
from watcher.checks.quality import (
    direct_quality,
)
from watcher.checks.slices import bin_edges
from watcher.config import ModelConfig

log = structlog.get_logger("warden.detection")
ORDER_COLUMNS = {"ts", "timestamp", "time", "date"}  # a reference with one is ordered


class ModelChecker(DriftCheck, ErrorCheck, BiasCheck):
    """Runs a model's checks; caches the reference side (and its calibrations) per version."""

    def __init__(self, name: str, engine: Engine, registry: ModelRegistry, reports: Path) -> None:
        self.name, self.engine, self.registry = name, engine, registry
        self.reports = Path(reports) / name
        self._baselines: dict[str, Baseline] = {}
        self._serving: dict[str, OnnxModel] = {}

    # -- inputs -----------------------------------------------------------------------------
    def serving_model(self, version: str) -> OnnxModel:
        if version not in self._serving:
            self._serving = {version: OnnxModel.load(self.registry, self.name, version)}
        return self._serving[version]

    def window(self, cfg: ModelConfig) -> pd.DataFrame:
        """The current window: the last N predictions, or those of the last T minutes."""
        since = None
        if cfg.checks.window_minutes is not None:
            since = datetime.now(UTC) - timedelta(minutes=cfg.checks.window_minutes)
        return with_group_columns(
            recent_window(self.engine, self.name, cfg.checks.window, since=since)
        )

    def baseline(self, cfg: ModelConfig, version: str) -> Baseline:
        """Reference side for this version: the reference set, a pinned earlier window, or the
        window a corrected version was tuned on (its card says so)."""
        if version in self._baselines:
            return self._baselines[version]
        card = self.registry.card(self.name, version)
        spec = card.get("baseline", {}).get("drift_reference", {"kind": "reference"})
        pinned = cfg.checks.pinned_reference
        frame, source, ordered = None, "", False
        if pinned is not None:
            frame = self._stored(cfg, since=pinned.start, until=pinned.end)
            source = f"pinned window {pinned.start.isoformat()} – {pinned.end.isoformat()}"
        elif spec.get("kind") == "window":
            frame, source = self._tuning_window(cfg, spec)
        if frame is None:
            frame = load_reference(cfg)
            order = cfg.checks.reference_order_column
            if order is not None and order in frame:
                frame = frame.sort_values(order, kind="stable")
            ordered = (order is not None and order in frame) or bool(ORDER_COLUMNS & set(frame))
            for attribute in reference_group_columns(frame, cfg):
                frame[GROUP_PREFIX + attribute] = frame[attribute]
            source = f"reference set {cfg.reference.name}{source}"
        frame = frame.reset_index(drop=True)
        preds, _ = self.serving_model(version).predict(frame)
        out = frame[[*cfg.features, *[c for c in frame if c.startswith(GROUP_PREFIX)]]].copy()
        out["prediction"] = preds
        out["target"] = frame["label"].astype(str)
        classes = self.serving_model(version).classes
        edges = {c: bin_edges(out[c], cfg.checks.slice_bins) for c in cfg.numeric_features}
        chunks = cfg.checks.calibration_chunks
        ordered = chunks == "contiguous" or (chunks == "auto" and ordered)
        base = Baseline(out, direct_quality(out, cfg.task, classes), source, edges, ordered)
        self._baselines = {version: base}
        return base

    def _tuning_window(self, cfg: ModelConfig, spec: dict) -> tuple[pd.DataFrame | None, str]:
        """The rows a corrected version was tuned on, only those it was not trained on when
        there are enough (its own training rows make quality look better than it is); None
        (the reference set instead) when the window is too small to compare with."""
        try:
            frame = self._stored(cfg, start_seq=spec["start_seq"], end_seq=spec["end_seq"])
        except ValueError as exc:
            return None, f" ({exc})"
        source = f"tuning window seq {spec['start_seq']}–{spec['end_seq']}"
        held_out = frame[frame["seq"].isin(set(spec.get("holdout_seqs") or []))]
        if len(held_out) >= 2 * cfg.checks.min_rows:
            return held_out, f"{source}, {len(held_out)} held-out rows"
        return frame, source

    def _stored(self, cfg: ModelConfig, **where) -> pd.DataFrame:
        frame = with_group_columns(
            recent_window(
                self.engine, self.name, cfg.checks.window * 4, labelled_only=True, **where
            )
        )
        if len(frame) < 2 * cfg.checks.min_rows:
            raise ValueError(
                f"models.{self.name}.checks: the reference window has {len(frame)} labelled "
                f"rows, fewer than 2 × min_rows"
            )
        return frame

    def calibration(
        self, cfg: ModelConfig, version: str, rows: int, part: str = "figures"
    ) -> Calibration | None:
        """Normal ranges for windows of about `rows` rows, cached per size bucket. `part` is
        "drift" (Evidently on every chunk: seconds) or "figures" (quality and group gaps with
        numpy: milliseconds), calibrated separately so that neither waits for the other."""
        checks = cfg.checks
        base = self.baseline(cfg, version)
        if checks.thresholds != "calibrated" or len(base.frame) < 2 * checks.min_rows:
            return None
        key = (part, size_bucket(rows))
        if key in base.calibrations:
            return base.calibrations[key]
        classes = self.serving_model(version).classes
        attributes = [c for c in base.frame if c.startswith(GROUP_PREFIX)]
        numeric, categorical = self._drift_columns(cfg)
        if part == "drift":
            found = calibrate(
                base.frame,
                key[1],
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
        else:
            found = calibrate(
                base.frame,
                key[1],
                rounds=max(checks.calibration_rounds, 100),  # cheap: more rounds, tighter
                sigmas=checks.calibration_sigmas,
                contiguous=base.ordered,
                quality=lambda chunk: direct_quality(chunk, cfg.task, classes),
                group_gaps=lambda chunk: {
                    a: {g: v["value"] for g, v in direct_gaps(chunk, a, cfg, classes).items()}
                    for a in attributes
                },
            )
        log.info("calibrated", model=self.name, version=version, part=part, **found.summary())
        base.calibrations[key] = found
        return found

    def _drift_columns(self, cfg: ModelConfig) -> tuple[list[str], list[str]]:
        if cfg.task == "regression":
            return [*cfg.numeric_features, "prediction"], list(cfg.categorical_features)
        return list(cfg.numeric_features), [*cfg.categorical_features, "prediction"]

    # -- the round --------------------------------------------------------------------------
    def run(self, cfg: ModelConfig, kinds: tuple[str, ...] = KINDS) -> list[CheckOutcome]:
        version = self.registry.active(self.name)
        if version is None:
            return []
        window = self.window(cfg)
        missing = [f for f in cfg.features if f not in window] if len(window) else []
        checks = {"drift": self.drift, "error": self.error, "bias": self.bias}
        outcomes = []
        for kind in kinds:
            started = time.perf_counter()
            if missing:  # say so instead of failing on a KeyError every round
                outcome = CheckOutcome(kind, version, True, len(window))
                outcome.skip(f"the window's predictions lack features {missing}")
            else:
                outcome = checks[kind](cfg, version, window)
            outcome.duration_s = time.perf_counter() - started
            outcomes.append(outcome)
        return outcomes

    def labelled(self, cfg: ModelConfig, version: str, window: pd.DataFrame) -> pd.DataFrame:
        """Rows of the window served by `version` whose label has arrived."""
        served = window[(window["label"].notna()) & (window["model_version"] == version)].copy()
        served["target"] = served["label"].astype(str)
        served["prediction"] = served["prediction"].astype(str)
        return served

    def _labelled_outcome(
        self, kind: str, cfg: ModelConfig, version: str, window: pd.DataFrame
    ) -> tuple[CheckOutcome, pd.DataFrame]:
        """The labelled rows served by `version`, and an outcome already skipped when there
        are fewer than `min_labelled` of them (the error and bias checks both need labels)."""
        labelled = self.labelled(cfg, version, window)
        outcome = CheckOutcome(kind, version, True, len(window), labelled_rows=len(labelled))
        outcome.seq_range = seq_range(labelled)
        if len(labelled) < cfg.checks.min_labelled:
            outcome.skip(
                f"{len(labelled)} labelled rows served by {version} < min_labelled "
                f"{cfg.checks.min_labelled}"
            )
        return outcome, labelled

    def save(self, snapshot, outcome: CheckOutcome, reference: str, note: str = "") -> Path:
        """Keep a failing check's Evidently page, warden's verdict (the alert's words) on top."""
        self.reports.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        path = self.reports / f"{stamp}-{outcome.kind}.html"
        start, end = outcome.seq_range
        labelled = f" ({outcome.labelled_rows} labelled)" if outcome.labelled_rows else ""
        header = verdict_markdown(
            model=self.name,
            version=outcome.version,
            kind=outcome.kind,
            severity=outcome.severity,
            summary=outcome.summary,
            window=f"{outcome.rows} rows{labelled}, seq {start}–{end}",
            reference=reference,
            note=note,
        )
        return save_page(snapshot, path, header)
