"""Champion and candidate scored on the same rows: paired statistics for the gate.

Two models judged on one holdout are not independent samples: most rows are right (or wrong)
for both, and only the rows where they disagree say which is better. The unpaired standard
error √2·√(p(1−p)/n) ignores that and is several times too wide on a group of a few hundred
rows. Here a row's loss is 0/1 (wrong) for classification and the absolute error for
regression; `PairedLoss` keeps the candidate's loss minus the champion's, per row.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from correctors.validation.scores import GroupKey


@dataclass(frozen=True)
class PairedLoss:
    rows: int
    mean: float  # mean loss increase, candidate minus champion (> 0: the candidate is worse)
    var: float  # variance of that mean
    worse: int  # rows where the candidate's loss is higher (classification: it broke them)
    better: int  # rows where it is lower (classification: it fixed them)
    champion_loss: float = 0.0  # the champion's mean loss on these rows (1 - accuracy, MAE)

    @classmethod
    def of(cls, champion_loss: np.ndarray, candidate_loss: np.ndarray) -> PairedLoss:
        d = np.asarray(candidate_loss, float) - np.asarray(champion_loss, float)
        n = len(d)
        var = float(d.var(ddof=1) / n) if n > 1 else float("inf")
        mean = float(d.mean()) if n else 0.0
        base = float(np.mean(champion_loss)) if n else 0.0
        return cls(n, mean, var, int((d > 0).sum()), int((d < 0).sum()), base)

    def p_worse(self, task: str) -> float:
        """One-sided p-value that the candidate is worse on these rows: McNemar's exact test
        on the discordant pairs (classification), a paired t-test (regression)."""
        return self._one_sided(task, worse=True)

    def p_better(self, task: str) -> float:
        """One-sided p-value that the candidate is better on these rows (same tests)."""
        return self._one_sided(task, worse=False)

    def _one_sided(self, task: str, *, worse: bool) -> float:
        sign = 1.0 if worse else -1.0
        if task != "regression":
            discordant = self.worse + self.better
            if discordant == 0:
                return 1.0
            hits = self.worse if worse else self.better
            return float(stats.binomtest(hits, discordant, 0.5, "greater").pvalue)
        if self.rows < 2 or not np.isfinite(self.var) or self.var <= 0:
            return 1.0 if sign * self.mean <= 0 else 0.0
        t = sign * self.mean / np.sqrt(self.var)
        return float(stats.t.sf(t, self.rows - 1))

    def to_dict(self) -> dict:
        return {
            "rows": self.rows,
            "mean_loss_change": round(self.mean, 5),
            "worse": self.worse,
            "better": self.better,
        }


@dataclass(frozen=True)
class PairedSets:
    """Champion and candidate paired on the recent holdout, the guarded and the full reference
    holdout, each judged group, and each region of the guarded reference."""

    sets: dict[str, PairedLoss] = field(default_factory=dict)
    groups: dict[GroupKey, PairedLoss] = field(default_factory=dict)
    regions: dict[int, PairedLoss] = field(default_factory=dict)  # the guarded rows, by region

    def figures(self) -> dict:
        """As stored in the verdict: `<set>_paired` and `groups_paired` by group name."""
        return {
            "groups_paired": {g.set_name: p.to_dict() for g, p in self.groups.items()},
            **{f"{name}_paired": p.to_dict() for name, p in self.sets.items()},
        }


def gap_change(best: PairedLoss, worst: PairedLoss) -> tuple[float, float]:
    """How much the gap between the best and the worst group widens (loss units: accuracy
    points or MAE) and the one-sided p-value that it really widens. The two groups are
    disjoint rows, each paired within itself, so the variances add."""
    change = worst.mean - best.mean
    se = float(np.sqrt(best.var + worst.var))
    if not np.isfinite(se) or se <= 0:
        return change, 1.0 if change <= 0 else 0.0
    return change, float(stats.norm.sf(change / se))


def losses(outputs: np.ndarray, y: np.ndarray, task: str) -> np.ndarray:
    """Per-row loss: 0/1 misclassification, or absolute error for regression."""
    if task == "regression":
        return np.abs(outputs[:, 0] - y)
    return (outputs.argmax(axis=1) != y).astype(float)
