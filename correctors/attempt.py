"""One correction attempt, as the daemon (first attempt or refinement), the benches and the
tests ask for it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd

from correctors.settings import CorrectionConfig, ModelDefinition

EpochCallback = Callable[[int, float, float], None]


class TrainingFailed(RuntimeError):
    """The training worker crashed, ran out of memory or time: retry the incident later."""


@dataclass(frozen=True)
class Attempt:
    """One correction attempt, as the daemon (first attempt or refinement), the benches and the
    tests ask for it: which model, on which labelled rows since the change, for which incident."""

    model: str
    definition: ModelDefinition
    settings: CorrectionConfig
    window: pd.DataFrame  # the labelled rows since the change
    incident_id: int | None = None
    change: dict = field(default_factory=dict)  # where the change began, attempt number, …
    base_version: str | None = None  # the version that served when the change began
    drifted_columns: tuple[str, ...] = ()
    flagged_ids: frozenset[str] = frozenset()
    focus_group: tuple[str, str] | None = None  # (attribute, disadvantaged value)
