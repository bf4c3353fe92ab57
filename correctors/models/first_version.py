"""Train a model's first version from its factory: what onboarding, the demo and the benches
do before the loop has anything to correct."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from correctors.settings import CorrectionConfig
from correctors.training.finetune import EpochCallback, FineTuneResult, fine_tune


def train_first_version(
    build: Callable[[], nn.Module],
    x: np.ndarray,
    y: np.ndarray,
    *,
    epochs: int = 40,
    patience: int = 5,
    seed: int = 0,
    weights: Path | None = None,
    on_epoch: EpochCallback | None = None,
) -> FineTuneResult:
    """Build the model under `seed` (its initial weights follow from it) and train it
    in-process on encoded rows `x` and targets `y` until early stopping; with `weights`, save
    its state dict there. Same seed and rows: the same weights."""
    torch.manual_seed(seed)
    model = build()
    settings = CorrectionConfig(epochs=epochs, patience=patience, seed=seed, worker=False)
    result = fine_tune(model, x, y, settings, on_epoch=on_epoch)
    if weights is not None:
        weights.parent.mkdir(parents=True, exist_ok=True)
        torch.save(result.model.state_dict(), weights)
    return result
