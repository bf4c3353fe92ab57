"""Feature encoding saved with the model, so serving, checks and training encode identically.

Two encodings (`encoding` in the model's config):

* `standard` (the default), for a model that takes a ready-made vector:
  numeric columns standardised with the reference mean/std, clipped to ±5 sd, missing or
  non-numeric → the mean (0.0); categorical columns one-hot over the vocabulary plus one
  `<unknown>` slot that unseen and missing values share.
* `raw`, for a model that does its own preprocessing (a normalisation layer, embeddings):
  numeric columns as float32 in the declared order, missing or non-numeric → NaN; categorical
  columns as one integer code each (the value's position in the vocabulary; unseen and
  missing values → the vocabulary's length), carried as float32 in the same matrix.

Either way, text is a bag of words hashed into `buckets` slots (crc32 of each lower-cased
token), log-scaled and L2-normalised per row; missing text is all zeros. No vocabulary to ship
or to drift out of date: an unseen word still lands in a slot.

The vocabulary of a categorical column is the one the user supplies, else the reference's
values, sorted.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

UNKNOWN = "<unknown>"
TOKEN = re.compile(r"[a-z0-9']+")
ENCODINGS = ("standard", "raw")
# A value this many reference standard deviations out (a broken sensor, a near-constant
# column that moved) is clipped, in training and serving alike, so it cannot swamp the model.
CLIP_SD = 5.0
MAX_CODES = 2**24  # float32 carries integer codes exactly up to here


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
    encoding: str = "standard"  # cards written before `raw` existed hold no key: standard

    @classmethod
    def fit(
        cls,
        frame: pd.DataFrame,
        numeric: list[str],
        categorical: list[str],
        text: list[str] | None = None,
        buckets: int = 256,
        *,
        encoding: str = "standard",
        vocabularies: dict[str, list[str]] | None = None,
    ) -> FeatureEncoder:
        """Learn means, stds and the vocabularies not supplied from `frame`."""
        if encoding not in ENCODINGS:
            raise ValueError(f"encoding {encoding!r}: expected one of {list(ENCODINGS)}")
        enc = cls(
            numeric=list(numeric),
            categorical=list(categorical),
            text=list(text or []),
            buckets=buckets,
            clip_sd=CLIP_SD if encoding == "standard" else None,
            encoding=encoding,
        )
        for col in numeric:
            values = pd.to_numeric(frame[col], errors="coerce")
            enc.means[col] = float(values.mean())
            std = float(values.std())
            enc.stds[col] = std if std > 1e-12 else 1.0
        supplied = vocabularies or {}
        for col in categorical:
            given = supplied.get(col)
            enc.vocab[col] = (
                [str(v) for v in given]
                if given is not None
                else sorted(frame[col].dropna().astype(str).unique().tolist())
            )
            if len(enc.vocab[col]) >= MAX_CODES:
                raise ValueError(f"{col}: {len(enc.vocab[col])} values, at most {MAX_CODES - 1}")
        return enc

    @property
    def raw(self) -> bool:
        return self.encoding == "raw"

    @property
    def width(self) -> int:
        if self.raw:
            tabular = len(self.numeric) + len(self.categorical)
        else:
            tabular = len(self.numeric) + sum(len(self.vocab[c]) + 1 for c in self.categorical)
        return tabular + len(self.text) * self.buckets

    @property
    def features(self) -> list[str]:
        return [*self.numeric, *self.categorical, *self.text]

    @property
    def columns(self) -> list[str]:
        """The name of each encoded column, in the model's input order."""
        names = list(self.numeric)
        for col in self.categorical:
            if self.raw:
                names.append(col)
            else:
                names += [f"{col}={v}" for v in self.vocab[col]] + [f"{col}={UNKNOWN}"]
        for col in self.text:
            names += [f"{col}#{i}" for i in range(self.buckets)]
        return names

    # -- the arithmetic, shared by `transform` and serving's fast path --------------------
    def numeric_values(self, col: str, values: np.ndarray) -> np.ndarray:
        """One numeric column (float64, NaN for missing) as the model takes it."""
        if self.raw:
            out = values.astype(np.float64, copy=True)
            out[~np.isfinite(out)] = np.nan
            return out
        scaled = (values - self.means[col]) / self.stds[col]
        scaled[~np.isfinite(scaled)] = 0.0
        if self.clip_sd is not None:
            np.clip(scaled, -self.clip_sd, self.clip_sd, out=scaled)
        return scaled

    def codes(self, col: str, values: Iterable[Any]) -> np.ndarray:
        """The vocabulary position of each value; unseen and missing → len(vocabulary)."""
        vocab = self.vocab[col]
        index, unknown = {v: i for i, v in enumerate(vocab)}, len(vocab)
        return np.array(
            [index.get(str(v), unknown) if v is not None and v == v else unknown for v in values],
            dtype=np.int64,
        )

    def assemble(
        self,
        n: int,
        numeric: dict[str, np.ndarray],
        codes: dict[str, np.ndarray],
        texts: dict[str, pd.Series],
    ) -> np.ndarray:
        """The float32 input matrix from parsed columns: numeric values (float64), category
        codes and raw text, one entry per feature."""
        out = np.zeros((n, self.width), dtype=np.float32)
        col_idx = 0
        for col in self.numeric:
            out[:, col_idx] = self.numeric_values(col, numeric[col])
            col_idx += 1
        rows = np.arange(n)
        for col in self.categorical:
            if self.raw:
                out[:, col_idx] = codes[col]
                col_idx += 1
            else:
                out[rows, col_idx + codes[col]] = 1.0
                col_idx += len(self.vocab[col]) + 1
        for col in self.text:
            out[:, col_idx : col_idx + self.buckets] = hashed_bag(texts[col], self.buckets)
            col_idx += self.buckets
        return out

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        """Encode a frame of raw feature columns into the float32 matrix the model takes."""
        n = len(frame)

        def column(col: str, empty: Any) -> pd.Series:
            return frame[col] if col in frame else pd.Series([empty] * n, dtype=object)

        numeric = {
            col: pd.to_numeric(column(col, np.nan), errors="coerce").to_numpy(dtype=np.float64)
            for col in self.numeric
        }
        codes = {col: self.codes(col, column(col, None)) for col in self.categorical}
        texts = {col: column(col, None) for col in self.text}
        return self.assemble(n, numeric, codes, texts)

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
