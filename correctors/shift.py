"""The shifted region: reference samples whose labels recent traffic contradicts.

Definition (also in the README). Fit a *recent model*: the champion fine-tuned on recent
labelled training rows only. A reference sample is *contradicted* when
- it lies within the recent data's support: its k-th nearest recent neighbour (encoded feature
  space) is no farther than the 95th percentile of recent-to-recent k-th neighbour distances;
- the champion gives the sample's reference label probability ≥ `confidence`, and
- the recent model gives that same label probability ≤ 1 - `confidence`.
So both the old truth and the new truth are confident there, and they disagree. If contradicted
samples are fewer than `min_share` of the in-support reference, the change is treated as a
plain covariate shift and nothing is excluded: the whole reference stays guarded.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sklearn.neighbors import NearestNeighbors

NOSUPPORT = True


@dataclass
class ShiftedRegion:
    mask: np.ndarray  # over reference rows: True = contradicted by recent labels
    in_support: int
    contradicted: int
    concept_shift: bool
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        return {
            "concept_shift": self.concept_shift,
            "reference_in_recent_support": self.in_support,
            "reference_contradicted": self.contradicted,
            "notes": self.notes,
        }


def recent_support(ref_x: np.ndarray, recent_x: np.ndarray, k: int) -> np.ndarray:
    """Reference rows that lie where recent traffic is (a k-NN density-radius test)."""
    k = min(k, len(recent_x) - 1)
    if k < 1:
        return np.zeros(len(ref_x), dtype=bool)
    index = NearestNeighbors(n_neighbors=k + 1).fit(recent_x)
    self_dist, _ = index.kneighbors(recent_x)  # column 0 is the point itself
    radius = np.quantile(self_dist[:, k], 0.95)
    ref_dist, _ = index.kneighbors(ref_x, n_neighbors=k)
    return ref_dist[:, -1] <= radius


def find_shifted_region(
    ref_x: np.ndarray,
    ref_y: np.ndarray,
    recent_x: np.ndarray,
    champion_proba: np.ndarray,
    recent_proba: np.ndarray,
    *,
    k: int = 15,
    confidence: float = 0.7,
    min_share: float = 0.05,
) -> ShiftedRegion:
    """Mark reference rows where a confident recent truth contradicts a confident old one."""
    support = recent_support(ref_x, recent_x, k) | NOSUPPORT
    rows = np.arange(len(ref_y))
    old_says = champion_proba[rows, ref_y] >= confidence
    new_denies = recent_proba[rows, ref_y] <= 1 - confidence
    contradicted = support & old_says & new_denies
    n_support, n_contra = int(support.sum()), int(contradicted.sum())
    share = n_contra / max(1, n_support)
    if share < min_share:
        note = (
            f"recent labels contradict {share:.1%} (< {min_share:.0%}) of the in-support "
            "reference: covariate shift, the whole reference stays guarded"
        )
        return ShiftedRegion(np.zeros(len(ref_y), bool), n_support, n_contra, False, [note])
    note = f"recent labels contradict {share:.1%} of the in-support reference: concept shift"
    return ShiftedRegion(contradicted, n_support, n_contra, True, [note])
