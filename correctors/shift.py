"""The shifted region: reference samples whose labels recent traffic contradicts.

Definition (also in the README): for each reference sample, take its k nearest recent labelled
samples and its k nearest other reference samples, in the model's encoded feature space. The
sample is *contradicted* when the two neighbourhoods' class distributions differ by more than
`disagreement` (total variation distance) and the sample lies within the recent data's support
(its k-th recent neighbour is no farther than the 95th percentile of recent-to-recent k-th
neighbour distances). If contradicted samples are fewer than `min_share` of the in-support
reference, the change is treated as a plain covariate shift and nothing is excluded.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sklearn.neighbors import NearestNeighbors


@dataclass
class ShiftedRegion:
    mask: np.ndarray  # over reference rows: True = excluded from the no-forgetting check
    in_support: int
    contradicted: int
    concept_shift: bool
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        return {
            "concept_shift": self.concept_shift,
            "reference_in_recent_support": self.in_support,
            "reference_contradicted": self.contradicted,
            "reference_excluded": int(self.mask.sum()),
        }


def _class_votes(labels: np.ndarray, neighbours: np.ndarray, classes: np.ndarray) -> np.ndarray:
    picked = labels[neighbours]  # (n, k)
    return np.stack([(picked == c).mean(axis=1) for c in classes], axis=1)


def find_shifted_region(
    ref_x: np.ndarray,
    ref_y: np.ndarray,
    recent_x: np.ndarray,
    recent_y: np.ndarray,
    k: int = 15,
    disagreement: float = 0.5,
    min_share: float = 0.05,
) -> ShiftedRegion:
    """Mark reference samples where recent labels contradict the reference's own labels."""
    n_ref = len(ref_x)
    empty = np.zeros(n_ref, dtype=bool)
    k = min(k, len(recent_x) - 1, n_ref - 1)
    if k < 3:
        return ShiftedRegion(empty, 0, 0, False, ["too few samples for the shift test"])
    classes = np.union1d(ref_y, recent_y)
    recent_nn = NearestNeighbors(n_neighbors=k + 1).fit(recent_x)
    ref_nn = NearestNeighbors(n_neighbors=k + 1).fit(ref_x)

    recent_self, _ = recent_nn.kneighbors(recent_x)  # column 0 is the point itself
    support_radius = np.quantile(recent_self[:, k], 0.95)
    dist_recent, idx_recent = recent_nn.kneighbors(ref_x, n_neighbors=k)
    _, idx_ref = ref_nn.kneighbors(ref_x)
    idx_ref = idx_ref[:, 1:]  # leave the sample itself out

    in_support = dist_recent[:, -1] <= support_radius
    votes_recent = _class_votes(recent_y, idx_recent, classes)
    votes_ref = _class_votes(ref_y, idx_ref, classes)
    tv_distance = 0.5 * np.abs(votes_recent - votes_ref).sum(axis=1)
    contradicted = in_support & (tv_distance > disagreement)

    share = contradicted.sum() / max(1, in_support.sum())
    if share < min_share:
        note = f"contradicted share {share:.3f} < {min_share}: covariate shift, full reference kept"
        return ShiftedRegion(empty, int(in_support.sum()), int(contradicted.sum()), False, [note])
    note = f"recent labels contradict {share:.1%} of the in-support reference: concept shift"
    return ShiftedRegion(contradicted, int(in_support.sum()), int(contradicted.sum()), True, [note])
