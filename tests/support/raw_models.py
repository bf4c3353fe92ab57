"""A model that does its own preprocessing, for `encoding = "raw"`: a normalisation layer whose
statistics are part of its state dict, NaN (missing) replaced inside the model, and one
embedding per categorical feature over its integer codes."""

from __future__ import annotations

import torch
from torch import nn


class NormalisedTabular(nn.Module):
    """x = [numeric values..., category codes...] as the raw encoding gives them."""

    def __init__(self, n_numeric: int, cardinalities: list[int], n_classes: int = 2) -> None:
        super().__init__()
        self.n_numeric = n_numeric
        self.register_buffer("mean", torch.zeros(n_numeric))
        self.register_buffer("std", torch.ones(n_numeric))
        # one row per code, plus the code of unseen and missing values (= the vocabulary size)
        self.embeddings = nn.ModuleList(nn.Embedding(n + 1, 4) for n in cardinalities)
        width = n_numeric + 4 * len(cardinalities)
        self.head = nn.Sequential(nn.Linear(width, 32), nn.ReLU(), nn.Linear(32, n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        numeric = torch.nan_to_num((x[:, : self.n_numeric] - self.mean) / self.std, nan=0.0)
        codes = x[:, self.n_numeric :].long()
        parts = [numeric] + [emb(codes[:, i]) for i, emb in enumerate(self.embeddings)]
        return self.head(torch.cat(parts, dim=1))


def normalised_tabular(n_numeric: int, cardinalities: list[int], n_classes: int = 2) -> nn.Module:
    return NormalisedTabular(n_numeric, cardinalities, n_classes)
