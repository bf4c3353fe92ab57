"""Built-in model factories (used by the demo; users point `factory` at their own)."""

from __future__ import annotations

from torch import nn


def mlp_classifier(
    n_inputs: int, n_classes: int = 2, hidden: int = 64, layers: int = 2
) -> nn.Module:
    """A small tabular MLP that returns logits."""
    blocks: list[nn.Module] = []
    width = n_inputs
    for _ in range(layers):
        blocks += [nn.Linear(width, hidden), nn.ReLU()]
        width = hidden
    blocks.append(nn.Linear(width, n_classes))
    return nn.Sequential(*blocks)


def mlp_regressor(n_inputs: int, hidden: int = 64, layers: int = 2) -> nn.Module:
    """A small tabular MLP with one output (a rating, a price, …)."""
    return mlp_classifier(n_inputs, n_classes=1, hidden=hidden, layers=layers)
