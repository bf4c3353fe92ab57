"""Where the change began, for an error incident: the start of its first failing window,
refined by a change-point test on a version's labelled errors around it.

An attempt asks about the serving version, on the predictions it served. A refinement after a
swap asks again about the version that served when the change began (its base version), on all
rows since, scored anew: by then the rows cover more of the change, and under a gradual drift
the most likely single rise moves from the first sign of the new rule towards the middle of
the transition (River's Sine stream: row ~1,450 early on, ~2,000 once the transition was seen
whole). Rows before it mix the old rule in, and a candidate trained on them learns a blend.
"""

from __future__ import annotations

import pandas as pd

from correctors.models.runtime import OnnxModel
from storage.queries import recent_window
from storage.registry import ModelRegistry
from storage.tables import Incident
from watcher.checks.change_point import find_change
from watcher.config import ModelConfig


def served_errors(
    registry: ModelRegistry, name: str, model: ModelConfig, rows: pd.DataFrame, version: str
) -> pd.Series:
    """Per labelled row: is `rows["prediction"]` (made by `version`) wrong? Regression: an
    |error| above twice the version's reference MAE."""
    if model.task == "regression":
        mae = registry.card(name, version).get("baseline", {}).get("mae", 0.0)
        error = pd.to_numeric(rows["prediction"]) - pd.to_numeric(rows["label"])
        return error.abs() > 2 * mae
    return rows["prediction"].astype(str) != rows["label"].astype(str)


def rescored_errors(
    registry: ModelRegistry, name: str, model: ModelConfig, rows: pd.DataFrame, version: str
) -> pd.Series:
    """Per labelled row: would `version` have got it wrong? (Rows served by later versions.)"""
    predictions, _ = OnnxModel.load(registry, name, version).predict(rows)
    scored = rows.assign(prediction=predictions)
    return served_errors(registry, name, model, scored, version)


def change_start(
    engine,
    registry: ModelRegistry,
    name: str,
    model: ModelConfig,
    incident: Incident,
    *,
    base_version: str | None = None,
) -> dict:
    """The first row of the new regime. Without `base_version`: the serving version's errors on
    the rows it served; with it: that version's errors on every row, scored anew."""
    first = int(incident.window_start_seq or 0)
    found = {"first_failing_window_start_seq": first, "seq": first, "method": "window"}
    if incident.kind != "error":
        return found
    before = recent_window(engine, name, model.checks.window, labelled_only=True, end_seq=first - 1)
    after = recent_window(
        engine, name, model.correction.max_rows, labelled_only=True, start_seq=first
    )
    rows = pd.concat([f for f in (before, after) if len(f)], ignore_index=True)
    if rows.empty:
        return found
    if base_version is None:
        version = registry.active(name)
        if version is None:
            return found
        rows = rows[rows["model_version"] == version].reset_index(drop=True)
        errors = served_errors(registry, name, model, rows, version)
    else:
        errors = rescored_errors(registry, name, model, rows, base_version)
        found["scored_by"] = base_version
    point = find_change(errors.to_numpy())
    if point is not None and point.significant:
        found.update(seq=int(rows["seq"].iloc[point.index]), method="change point")
        found.update(point.to_dict())
    return found
