"""Feature encoding saved with the model, so serving, checks and training encode identically.

Numeric: standardised with the reference mean/std, clipped to ±5 sd; missing or non-numeric →
the mean (0.0).
Categorical: one-hot over the reference vocabulary plus one `<unknown>` slot that unseen
values and missing values share.
Text: a bag of words hashed into `buckets` slots (crc32 of each lower-cased token), log-scaled
and L2-normalised per row; missing text is all zeros. No vocabulary to ship or to drift out of
date: an unseen word still lands in a slot.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

UNKNOWN = "<unknown>"
TOKEN = re.compile(r"[a-z0-9']+")
# A value this many reference standard deviations out (a broken sensor, a near-constant
# column that moved) is clipped, in training and serving alike, so it cannot swamp the model.
CLIP_SD = 5.0


@dataclass
class FeatureEncoder:
    numeric: list[str]
    categorical: list[str]
    means: dict[str, float] = field(default_factory=dict)
    stds: dict[str, float] = field(default_factory=dict)
    vocab: dict[str, list[str]] = field(default_factory=dict)
    text: list[str] = field(default_factory=list)
    buckets: int = 256
    clip_sd: float | None = None  # standardised values are clipped to ±clip_sd (None: off)

    @classmethod
    def fit(
        cls,
        frame: pd.DataFrame,
        numeric: list[str],
        categorical: list[str],
        text: list[str] | None = None,
        buckets: int = 256,
    ) -> FeatureEncoder:
        enc = cls(
            numeric=list(numeric),
            categorical=list(categorical),
            text=list(text or []),
            buckets=buckets,
            clip_sd=CLIP_SD,
        )
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
        tabular = len(self.numeric) + sum(len(v) + 1 for v in self.vocab.values())
        return tabular + len(self.text) * self.buckets

    @property
    def features(self) -> list[str]:
        return [*self.numeric, *self.categorical, *self.text]

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
            if self.clip_sd is not None:
                np.clip(scaled, -self.clip_sd, self.clip_sd, out=scaled)
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
        for col in self.text:
            raw = frame[col] if col in frame else pd.Series([None] * n)
            out[:, col_idx : col_idx + self.buckets] = hashed_bag(raw, self.buckets)
            col_idx += self.buckets
        return out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureEncoder:
        return cls(**data)


def hashed_bag(texts: pd.Series, buckets: int) -> np.ndarray:
    """Rows of hashed token counts, log1p-scaled and L2-normalised (zeros for missing text)."""
    out = np.zeros((len(texts), buckets), dtype=np.float32)
    for row, value in enumerate(texts):
        if not isinstance(value, str):
            continue
        for token in TOKEN.findall(value.lower()):
            out[row, zlib.crc32(token.encode()) % buckets] += 1.0
    np.log1p(out, out=out)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    np.divide(out, norms, out=out, where=norms > 0)
    return out
