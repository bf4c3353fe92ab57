"""Choosing a scikit-learn model's hyperparameters on a validation split of its training rows
(never the gate's holdout), the way the gate will judge it: the best on the recent rows among
the settings that keep the reference rows within half of `forgetting_tolerance` of the
champion.

Each setting is tried with the reference rows weighing 1 and `REFERENCE_WEIGHTS` more: on the
demo's shift an SVC refit on recent rows plus replay lost 4 points on the guarded reference
(the gate refused it) while its recent accuracy went 0.31 → 0.84; a heavier reference is the
knob that trades the one for the other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from correctors.kinds.rows import Rows, quality

REFERENCE_WEIGHTS = (1.0, 3.0, 10.0)
SEARCH_ROWS = 3000  # a search fits on at most this many rows (an SVM's cost grows ~n²)
MARGIN = 0.5  # of the tolerance: the split's estimate is noisier than the gate's paired test
Scorer = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Tried:
    params: dict
    reference_weight: float
    recent: float  # quality on the validation split's recent rows (higher is better)
    reference: float  # on its reference rows

    def to_dict(self) -> dict:
        return {
            "params": {k: round(float(v), 6) for k, v in self.params.items()},
            "reference_weight": self.reference_weight,
            "recent_quality": round(self.recent, 5),
            "reference_quality": round(self.reference, 5),
        }


def capped(rows: Rows, seed: int, limit: int = SEARCH_ROWS) -> Rows:
    """At most `limit` of `rows` (seeded)."""
    if len(rows) <= limit:
        return rows
    keep = np.sort(np.random.default_rng(seed).choice(len(rows), limit, replace=False))
    return rows.take(keep)


def split_quality(scores: Scorer, rows: Rows, task: str) -> tuple[float, float]:
    """Quality on the recent rows and on the reference rows of `rows` (nan when none)."""
    out = []
    for mask in (rows.recent, ~rows.recent):
        part = rows.take(np.flatnonzero(mask))
        out.append(quality(scores(part.x), part, task) if len(part) else float("nan"))
    return out[0], out[1]


def choose(tried: list[Tried], champion_reference: float, tolerance: float, task: str) -> Tried:
    """The best on recent rows among those that keep the reference; else the one that keeps
    it best. Regression qualities are minus MAE: the tolerance is relative to the MAE."""
    allowed = MARGIN * tolerance * (abs(champion_reference) if task == "regression" else 1.0)
    floor = champion_reference - allowed
    keeps = [t for t in tried if not t.reference < floor]  # nan (no reference rows) keeps
    if keeps:
        return max(keeps, key=lambda t: (t.recent, t.reference))
    return max(tried, key=lambda t: (t.reference, t.recent))
