"""What a check kind is: a `Check` runs on the current window against the reference side of
the serving version (`VersionReference`) within one model's settings (`CheckContext`), and
returns a `CheckOutcome`. Everything a check may use is in these two objects, so a new kind
is one class plus one registration (`registry.py`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import pandas as pd

from correctors.models.runtime import OnnxModel
from watcher.checks.calibration import Calibration
from watcher.checks.evidently_page import keep_page
from watcher.checks.outcome import Baseline, CheckOutcome
from watcher.config import ModelConfig

CalibrationPart = Literal["drift", "figures"]


@dataclass(frozen=True)
class VersionReference:
    """The reference side of one serving version. Loaded on first use and cached by the
    checker: a check that skips early never pays for the baseline or its calibrations."""

    version: str
    load_baseline: Callable[[], Baseline]
    load_model: Callable[[], OnnxModel]
    load_calibration: Callable[[int, CalibrationPart], Calibration | None]

    @property
    def baseline(self) -> Baseline:
        """The reference frame scored by this version, its quality and bin edges."""
        return self.load_baseline()

    @property
    def model(self) -> OnnxModel:
        """The serving version itself."""
        return self.load_model()

    @property
    def classes(self) -> list[str]:
        return self.model.classes

    def calibration(self, rows: int, part: CalibrationPart = "figures") -> Calibration | None:
        """Normal ranges for windows of about `rows` rows; None with fixed thresholds (or a
        reference too small to calibrate on). `part`: "drift" (Evidently on every chunk,
        seconds) or "figures" (quality and group gaps with numpy, milliseconds)."""
        return self.load_calibration(rows, part)


@dataclass(frozen=True)
class CheckContext:
    """One model's name, its settings, and where kept Evidently pages go."""

    model: str
    cfg: ModelConfig
    reports: Path

    def keep_page(
        self, build: Callable[[], Any], outcome: CheckOutcome, reference: str, note: str = ""
    ) -> Path:
        """Keep a failing check's Evidently page, warden's verdict on top; `build` (the
        Evidently report) runs off the check's critical path (`evidently_page`)."""
        return keep_page(build, self.reports, self.model, outcome, reference, note)


class Check(Protocol):
    """A check kind. `run` must not raise on ordinary data: a window it cannot judge comes
    back as an outcome skipped with its reason (`CheckOutcome.skip`)."""

    @property
    def kind(self) -> str: ...

    def run(
        self, window: pd.DataFrame, reference: VersionReference, context: CheckContext
    ) -> CheckOutcome: ...
