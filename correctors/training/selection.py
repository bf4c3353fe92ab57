"""Which samples a correction trains on and which it is judged on.

- recent labelled window → train / holdout: the newest rows are the holdout, the present truth
  (or a seeded random split);
- flagged = train rows the champion got wrong, plus rows in the drifted region;
- replay = reference rows that stay guarded (not beside recent rows in regions where recent
  labels differ: `correctors.validation.regions`), mixed in at a ratio;
- the other recent training rows come along as anchors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from correctors.models.encoding import FeatureEncoder
from correctors.settings import CorrectionConfig


@dataclass
class Split:
    train: np.ndarray  # row indices
    holdout: np.ndarray


def seeded_split(n: int, fraction: float, seed: int) -> Split:
    order = np.random.default_rng(seed).permutation(n)
    cut = int(round(n * fraction))
    return Split(train=np.sort(order[cut:]), holdout=np.sort(order[:cut]))


def newest_split(n: int, fraction: float) -> Split:
    """Rows in arrival order: the newest `fraction` is the holdout. Under a gradual drift the
    rows since the change still mix both rules; a random holdout mixes them too and judged
    candidates against half the old truth (River's Sine stream: 0.840 -> 0.855, "not
    significant", while the newest rows already followed the new rule)."""
    cut = n - int(round(n * fraction))
    return Split(train=np.arange(cut), holdout=np.arange(cut, n))


def recent_split(n: int, settings: CorrectionConfig) -> Split:
    """The recent window's split as `correction.holdout_split` asks."""
    if settings.holdout_split == "newest":
        return newest_split(n, settings.holdout_fraction)
    return seeded_split(n, settings.holdout_fraction, settings.seed)


def drifted_region_mask(
    window: pd.DataFrame,
    reference: pd.DataFrame,
    encoder: FeatureEncoder,
    drifted_columns: list[str],
    quantile: float = 0.05,
) -> np.ndarray:
    """Rows outside the reference's central range on any drifted column.

    Numeric: below the reference's `quantile` or above its `1 - quantile`. Categorical: a value
    the reference never had.
    """
    mask = np.zeros(len(window), dtype=bool)
    for col in drifted_columns:
        if col in encoder.numeric:
            ref = pd.to_numeric(reference[col], errors="coerce")
            lo, hi = ref.quantile(quantile), ref.quantile(1 - quantile)
            cur = pd.to_numeric(window[col], errors="coerce")
            mask |= ((cur < lo) | (cur > hi)).fillna(False).to_numpy()
        elif col in encoder.categorical:
            known = set(encoder.vocab[col])
            mask |= ~window[col].astype(str).isin(known).to_numpy()
    return mask


def sample_replay(labels: np.ndarray, eligible: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Draw `n` eligible reference rows, keeping the reference's class proportions."""
    rng = np.random.default_rng(seed)
    pool = np.flatnonzero(eligible)
    if n <= 0 or len(pool) == 0:
        return np.array([], dtype=np.int64)
    if n >= len(pool):
        return pool
    picked = []
    classes, counts = np.unique(labels[pool], return_counts=True)
    for cls, count in zip(classes, counts, strict=True):
        members = pool[labels[pool] == cls]
        take = max(1, int(round(n * count / len(pool))))
        picked.append(rng.choice(members, size=min(take, len(members)), replace=False))
    return np.sort(np.concatenate(picked))
