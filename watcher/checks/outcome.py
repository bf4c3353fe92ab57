"""What a check produces (`CheckOutcome`), the reference side it compares with (`Baseline`),
and the frame helpers every check kind shares."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from watcher.checks.calibration import Calibration
from watcher.config import ModelConfig


class CheckKind(StrEnum):
    """The built-in check kinds; each has a `Check` registered in `registry.py`."""

    DRIFT = "drift"
    ERROR = "error"
    BIAS = "bias"


KINDS: tuple[str, ...] = tuple(kind.value for kind in CheckKind)  # run by default, in this order
GROUP_PREFIX = "groups."


@dataclass
class CheckOutcome:
    """One check's verdict and figures; a failed one becomes (or updates) an incident."""

    kind: str  # a registered check's kind (see `CheckKind`)
    version: str
    passed: bool
    rows: int
    labelled_rows: int = 0
    skipped_reason: str | None = None
    figures: dict[str, Any] = field(default_factory=dict)
    summary: str = ""
    severity: str = "info"
    report_path: Path | None = None
    seq_range: tuple[int | None, int | None] = (None, None)
    duration_s: float = 0.0
    flagged_ids: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.kind = str(self.kind)  # a `CheckKind` is stored, logged and compared as its text

    def skip(self, reason: str) -> CheckOutcome:
        self.skipped_reason = reason
        return self


@dataclass
class Baseline:
    """The reference side for one serving version, computed once."""

    frame: pd.DataFrame  # features, `prediction` by the serving version, `target`, groups.*
    quality: dict[str, float]
    source: str
    edges: dict[str, np.ndarray]
    ordered: bool = False  # calibrate on contiguous chunks too (see calibration.py)
    calibrations: dict[tuple[str, int], Calibration] = field(default_factory=dict)
    profile: Any = None  # its ReferenceProfile (profile.py): drift without the frame


def with_group_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """Flatten the `groups` dicts of stored predictions into `groups.<attribute>` columns."""
    if frame.empty or "groups" not in frame:
        return frame
    groups = pd.DataFrame.from_records(
        [g if isinstance(g, dict) else {} for g in frame["groups"]], index=frame.index
    )
    for attribute in groups:
        frame[GROUP_PREFIX + str(attribute)] = groups[attribute]
    return frame


def reference_group_columns(frame: pd.DataFrame, cfg: ModelConfig) -> list[str]:
    """Group attributes the reference carries: the configured ones, or else every column that
    is neither a feature nor the label and looks categorical (≤ 50 values)."""
    if cfg.checks.group_attributes is not None:
        return [a for a in cfg.checks.group_attributes if a in frame]
    skip = {*cfg.features, cfg.label_column, "label"}
    return [c for c in frame.columns if c not in skip and frame[c].nunique() <= 50]


def seq_range(frame: pd.DataFrame) -> tuple[int | None, int | None]:
    if frame.empty:
        return (None, None)
    return int(frame["seq"].min()), int(frame["seq"].max())


def is_error(frame: pd.DataFrame, task: str, base: Baseline) -> pd.Series:
    """Misclassified, or (regression) an absolute error above twice the reference MAE."""
    if task == "regression":
        err = (pd.to_numeric(frame["prediction"]) - pd.to_numeric(frame["target"])).abs()
        return err > 2 * base.quality["mae"]
    return frame["prediction"].astype(str) != frame["target"].astype(str)


def labelled(window: pd.DataFrame, version: str) -> pd.DataFrame:
    """Rows of the window served by `version` whose label has arrived."""
    served = window[(window["label"].notna()) & (window["model_version"] == version)].copy()
    served["target"] = served["label"].astype(str)
    served["prediction"] = served["prediction"].astype(str)
    return served


def labelled_outcome(
    kind: str, cfg: ModelConfig, version: str, window: pd.DataFrame
) -> tuple[CheckOutcome, pd.DataFrame]:
    """The labelled rows served by `version`, and an outcome already skipped when there are
    fewer than `min_labelled` of them (every check that needs labels starts here)."""
    rows = labelled(window, version)
    outcome = CheckOutcome(kind, version, True, len(window), labelled_rows=len(rows))
    outcome.seq_range = seq_range(rows)
    if len(rows) < cfg.checks.min_labelled:
        outcome.skip(
            f"{len(rows)} labelled rows served by {version} < min_labelled "
            f"{cfg.checks.min_labelled}"
        )
    return outcome, rows
