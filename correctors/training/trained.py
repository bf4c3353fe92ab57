"""One strategy's trained model, whatever its kind: what the gate ranks and the export writes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

OutputFn = Callable[[np.ndarray], np.ndarray]


@dataclass
class Trained:
    """One strategy's model, with how it was made. `outputs`: the model's scores on encoded
    rows (class probabilities, or one value per row as (n, 1)) for a model that is not a torch
    module; a torch module is scored by `predict_outputs`."""

    strategy: str
    model: Any
    summary: dict = field(default_factory=dict)
    alpha: float | None = None  # interpolation only
    outputs: OutputFn | None = None

    @property
    def label(self) -> str:
        return self.strategy if self.alpha is None else f"{self.strategy} α={self.alpha:g}"
