"""Where did the change begin? A single change point in the sequence of a model's labelled
errors (Bernoulli, most likely split, likelihood-ratio test).

The first failing window only bounds the change: with 1,000-row windows the new concept may
have begun anywhere in it, or in the tail of the window before. Rows from before the change
carry the old truth; a correction that trains on them learns a blend. The split that
maximises the two-segment Bernoulli likelihood is the estimate; it is kept only when the
likelihood ratio is significant (2·ΔlogL above the χ²₁ quantile, p < 0.001) and the error
rate rises across it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CHI2_1_P001 = 10.83  # χ²(1) quantile at p = 0.001
MIN_SEGMENT = 30  # rows on each side of a split


@dataclass(frozen=True)
class ChangePoint:
    index: int  # first row of the new regime
    before: float  # error rate before
    after: float  # error rate after
    statistic: float  # 2·ΔlogL
    significant: bool

    def to_dict(self) -> dict:
        return {
            "index": self.index,
            "error_rate_before": round(self.before, 4),
            "error_rate_after": round(self.after, 4),
            "lr_statistic": round(self.statistic, 2),
            "significant": self.significant,
        }


def _loglik(k: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Bernoulli log-likelihood at the MLE of k successes in n trials (0·log 0 = 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(n > 0, k / np.maximum(n, 1), 0.0)
        a = np.where(k > 0, k * np.log(np.where(p > 0, p, 1.0)), 0.0)
        b = np.where(n - k > 0, (n - k) * np.log(np.where(p < 1, 1 - p, 1.0)), 0.0)
    return a + b


def find_change(errors: np.ndarray, min_segment: int = MIN_SEGMENT) -> ChangePoint | None:
    """The most likely single rise in the error rate of `errors` (0/1, in arrival order)."""
    e = np.asarray(errors, dtype=float)
    n = len(e)
    if n < 2 * min_segment:
        return None
    cum = np.cumsum(e)
    splits = np.arange(min_segment, n - min_segment + 1)
    k1, n1 = cum[splits - 1], splits.astype(float)
    k2, n2 = cum[-1] - k1, n - n1
    gain = _loglik(k1, n1) + _loglik(k2, n2) - _loglik(np.array([cum[-1]]), np.array([n]))[0]
    rising = k2 / n2 > k1 / n1
    if not rising.any():
        return None
    gain = np.where(rising, gain, -np.inf)
    best = int(np.argmax(gain))
    statistic = float(2 * gain[best])
    index = int(splits[best])
    return ChangePoint(
        index=index,
        before=float(k1[best] / n1[best]),
        after=float(k2[best] / n2[best]),
        statistic=statistic,
        significant=statistic > CHI2_1_P001,
    )
