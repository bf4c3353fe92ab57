"""Feature encoding saved with the model, so serving, checks and training encode identically.

Numeric: standardised with the reference mean/std; missing or non-numeric → the mean (0.0).
Categorical: one-hot over the reference vocabulary plus one `<unknown>` slot that unseen
values and missing values share.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

UNKNOWN = "<unknown>"


@dataclass
class FeatureEncoder:
    numeric: list[str]
    categorical: list[str]
    means: dict[str, float] = field(default_factory=dict)
    stds: dict[str, float] = field(default_factory=dict)
    vocab: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def fit(cls, frame: pd.DataFrame, numeric: list[str], categorical: list[str]) -> FeatureEncoder:
        enc = cls(numeric=list(numeric), categorical=list(categorical))
        for col in numeric:
            values = pd.to_numeric(frame[col], errors="coerce")
            enc.means[col] = float(values.mean())
            std = float(values.std())
            enc.stds[col] = std if std > 1e-12 else 1.0
        for col in categorical:
            enc.vocab[col] = sorted(frame[col].dropna().astype(str).unique().tolist())
        return enc

    @property
    def width(self) -> int:
        return len(self.numeric) + sum(len(v) + 1 for v in self.vocab.values())

    @property
    def features(self) -> list[str]:
        return [*self.numeric, *self.categorical]

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        """Encode a frame of raw feature columns into the float32 matrix the model takes."""
        n = len(frame)
        out = np.zeros((n, self.width), dtype=np.float32)
        col_idx = 0
        for col in self.numeric:
            raw = frame[col] if col in frame else pd.Series([np.nan] * n)
            values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64)
            scaled = (values - self.means[col]) / self.stds[col]
            scaled[~np.isfinite(scaled)] = 0.0
            out[:, col_idx] = scaled
            col_idx += 1
        for col in self.categorical:
            vocab = self.vocab[col]
            index = {v: i for i, v in enumerate(vocab)}
            raw = frame[col] if col in frame else pd.Series([None] * n)
            codes = np.array(
                [
                    index.get(str(v), len(vocab)) if v is not None and v == v else len(vocab)
                    for v in raw
                ],
                dtype=np.int64,
            )
            out[np.arange(n), col_idx + codes] = 1.0
            col_idx += len(vocab) + 1
        return out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureEncoder:
        return cls(**data)
