"""The weighted rows a non-torch strategy fits on, cut from a correction's prepared rows.

`Prepared.train_x` and `Prepared.retrain_x` both start with the recent training rows (the
window's rows since the change, holdout excluded) followed by reference rows (replay, or the
reference outside the contradicted region). Recent rows the champion gets wrong weigh
`correction.flagged_weight`, every other row 1. The gate's holdout is never among them; a
search or early stopping splits these rows again (`split`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from correctors.training.dataset import Prepared

VALIDATION_FRACTION = 0.2


@dataclass(frozen=True)
class Rows:
    """Encoded rows, targets (class indices or values) and per-row weights."""

    x: np.ndarray
    y: np.ndarray
    w: np.ndarray
    recent: np.ndarray  # True for the rows since the change, False for reference rows

    def take(self, index: np.ndarray) -> Rows:
        return Rows(self.x[index], self.y[index], self.w[index], self.recent[index])

    def reference_weighted(self, factor: float) -> Rows:
        """Reference rows weighing `factor` times as much (recent rows as they are)."""
        return Rows(self.x, self.y, self.w * np.where(self.recent, 1.0, factor), self.recent)

    def __len__(self) -> int:
        return len(self.y)


def champion_wrong(
    scores: np.ndarray, y: np.ndarray, task: str, mae: float | None = None
) -> np.ndarray:
    """Rows the champion gets wrong: another class, or (regression) |error| > 2 × MAE."""
    if task == "regression":
        errors = np.abs(scores[:, 0] - y)
        limit = 2 * (mae if mae else float(errors.mean()) if len(errors) else 0.0)
        return errors > limit
    return scores.argmax(axis=1) != y


Wrong = Callable[[np.ndarray, np.ndarray], np.ndarray]


def weighted(x: np.ndarray, y: np.ndarray, recent: int, wrong: Wrong, flagged: float) -> Rows:
    """Weights for rows whose first `recent` are the recent training rows."""
    w = np.ones(len(y), dtype=np.float64)
    if recent and flagged != 1.0:
        w[:recent][wrong(x[:recent], y[:recent])] = flagged
    mask = np.zeros(len(y), dtype=bool)
    mask[:recent] = True
    return Rows(x, y, w, mask)


def training_rows(prepared: Prepared, wrong: Wrong, flagged: float) -> tuple[Rows, Rows]:
    """(recent + replay, recent + reference outside the contradicted region), weighted."""
    recent = int(prepared.counts.get("recent_train_rows", 0))
    return (
        weighted(prepared.train_x, prepared.train_y, recent, wrong, flagged),
        weighted(prepared.retrain_x, prepared.retrain_y, recent, wrong, flagged),
    )


def split(rows: Rows, seed: int, task: str) -> tuple[Rows, Rows]:
    """A seeded (fit, validation) split of training rows, stratified by class."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(rows))
    if task == "regression":
        cut = max(1, int(len(order) * VALIDATION_FRACTION))
        return rows.take(np.sort(order[cut:])), rows.take(np.sort(order[:cut]))
    held: list[np.ndarray] = []
    for label in np.unique(rows.y):
        members = order[rows.y[order] == label]
        held.append(members[: max(1, int(len(members) * VALIDATION_FRACTION))])
    val = np.sort(np.concatenate(held))
    fit = np.setdiff1d(np.arange(len(rows)), val)
    return rows.take(fit), rows.take(val)


def missing_classes(y: np.ndarray, n_classes: int) -> list[int]:
    """Class indices absent from `y`: a fitted classifier would return fewer columns."""
    return sorted(set(range(n_classes)) - {int(v) for v in np.unique(y)})


def quality(scores: np.ndarray, rows: Rows, task: str) -> float:
    """Higher is better: weighted accuracy, or minus the weighted MAE."""
    if task == "regression":
        return -float(np.average(np.abs(scores[:, 0] - rows.y), weights=rows.w))
    return float(np.average(scores.argmax(axis=1) == rows.y, weights=rows.w))
