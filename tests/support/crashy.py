"""A model factory whose module kills its own process when it trains (never when it predicts
or exports): what a segfaulting extension or the OOM killer does to a training worker."""

from __future__ import annotations

import os

from torch import nn

from correctors.zoo import mlp_classifier


class CrashesWhenTraining(nn.Sequential):
    def forward(self, x):
        if self.training:
            os._exit(3)
        return super().forward(x)


def crashing_mlp(n_inputs: int, n_classes: int = 2) -> nn.Module:
    """Same layers (and so the same state dict) as `correctors.zoo:mlp_classifier`."""
    return CrashesWhenTraining(*mlp_classifier(n_inputs, n_classes).children())
