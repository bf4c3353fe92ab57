"""Scheduled checks of one model's traffic against its reference, with Evidently. The kinds
(registry.py) are drift, error and bias by default:

- **drift**: per-column data drift and prediction drift;
- **error**: quality once labels arrive, with the slices where errors concentrate;
- **bias**: per-group quality and outcome rates, and the gaps between groups.

Thresholds are calibrated on the reference by default (see `calibration.py`), or fixed in
config. Evidently is imported lazily inside the helpers: it costs ~3 s and ~290 MB at import.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import pandas as pd
import structlog
from sqlalchemy import Engine

from correctors.models.runtime import OnnxModel
from storage.queries import recent_window
from storage.registry import ModelRegistry
from watcher.checks.baseline import (
    calibrate_drift,
    calibrate_figures,
    calibration_key,
    keep_profile,
    load_baseline,
    version_profile,
)
from watcher.checks.calibration import Calibration, size_bucket
from watcher.checks.outcome import KINDS, Baseline, CheckOutcome, with_group_columns
from watcher.checks.protocol import CalibrationPart, CheckContext, VersionReference
from watcher.checks.registry import check_for
from watcher.config import ModelConfig

log = structlog.get_logger("warden.detection")


class ModelChecker:
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
        """Reference side for this version, computed once (see `baseline.load_baseline`), with
        its reference profile (loaded from the registry, or fitted and stored there)."""
        if version not in self._baselines:
            card = self.registry.card(self.name, version)
            base = load_baseline(self.engine, self.name, cfg, card, self.serving_model(version))
            base.profile = version_profile(self.registry, self.name, version, base, cfg)
            self._baselines = {version: base}
        return self._baselines[version]

    def calibration(
        self, cfg: ModelConfig, version: str, rows: int, part: CalibrationPart = "figures"
    ) -> Calibration | None:
        """Normal ranges for windows of about `rows` rows, cached per size bucket. `part` is
        "drift" (Evidently on every chunk: seconds) or "figures" (quality and group gaps with
        numpy: milliseconds), calibrated separately so that neither waits for the other."""
        checks = cfg.checks
        base = self.baseline(cfg, version)
        if checks.thresholds != "calibrated" or len(base.frame) < 2 * checks.min_rows:
            return None
        key = (part, size_bucket(rows))
        if key not in base.calibrations:
            base.calibrations[key] = self._calibrate(cfg, version, base, part, key[1])
        return base.calibrations[key]

    def _calibrate(
        self, cfg: ModelConfig, version: str, base: Baseline, part: CalibrationPart, bucket: int
    ) -> Calibration:
        """From the profile's store when it holds this calibration, else computed and kept
        there, so that the next daemon (or a restart) loads it."""
        stored = calibration_key(part, bucket, base, cfg)
        profile = base.profile
        if profile is not None and stored in profile.calibrations:
            return profile.calibrations[stored]
        if part == "drift":
            found = calibrate_drift(base, cfg, bucket)
        else:
            found = calibrate_figures(base, cfg, self.serving_model(version).classes, bucket)
        log.info("calibrated", model=self.name, version=version, part=part, **found.summary())
        if profile is not None:
            profile.calibrations[stored] = found
            keep_profile(self.registry, self.name, version, profile)
        return found

    def reference(self, cfg: ModelConfig, version: str) -> VersionReference:
        """The reference side of `version` as checks see it, loaded on first use."""
        return VersionReference(
            version=version,
            load_baseline=partial(self.baseline, cfg, version),
            load_model=partial(self.serving_model, version),
            load_calibration=partial(self.calibration, cfg, version),
        )

    # -- the round --------------------------------------------------------------------------
    def run(self, cfg: ModelConfig, kinds: tuple[str, ...] = KINDS) -> list[CheckOutcome]:
        """Each kind's outcome on the current window, in the order of `kinds`."""
        version = self.registry.active(self.name)
        if version is None:
            return []
        window = self.window(cfg)
        missing = [f for f in cfg.features if f not in window] if len(window) else []
        reference = self.reference(cfg, version)
        context = CheckContext(self.name, cfg, self.reports)
        outcomes = []
        for kind in kinds:
            started = time.perf_counter()
            if missing:  # say so instead of failing on a KeyError every round
                outcome = CheckOutcome(kind, version, True, len(window))
                outcome.skip(f"the window's predictions lack features {missing}")
            else:
                outcome = check_for(kind).run(window, reference, context)
            outcome.duration_s = time.perf_counter() - started
            outcomes.append(outcome)
        return outcomes
