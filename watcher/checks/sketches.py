"""Numeric reference columns beyond one machine's memory: a KLL quantile sketch (Apache
DataSketches) plus exact mergeable moments instead of the sorted values, so a profile can be
built from partitions (several daemons, or a Spark job's KLL aggregates) and merged.

Where the sketch replaces the values: above `SKETCH_ROWS` finite rows (sorted values cost 8
bytes a row a column: 2M rows × 100 columns is 1.6 GB; a sketch is ~60 kB whatever the rows)
and only for columns with more than 20 distinct values (fewer are kept exactly as counts by
value, which is all Evidently's tests read of them).

The error it adds. With ε the sketch's normalized rank error (`kll.normalized_rank_error`,
0.07 % at k = 4096, 99 % confidence) and the reference represented by `GRID` of its quantiles,
the reference CDF is off by at most ε + 1/GRID anywhere, so:
- K-S: D is off by at most ε + 1/GRID (the p-value is taken with the true row count);
- Wasserstein (normed): off by at most (ε + 1/GRID) · (max − min) / std;
- Jensen–Shannon / PSI over sturges bins: every bin share off by at most 2(ε + 1/GRID).
tests/watcher/checks/test_sketches.py checks each figure against the exact profile's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from watcher.checks.stattests import NumericRef

SKETCH_ROWS = 2_000_000  # above this many finite rows a numeric column is sketched
SKETCH_K = 4096
GRID = 100_001  # quantiles of the sketch that stand for the reference's sorted values


@dataclass(frozen=True)
class Moments:
    """Count, mean and sum of squared deviations: merged exactly (Chan et al.)."""

    n: int
    mean: float
    m2: float

    @classmethod
    def of(cls, values: np.ndarray) -> Moments:
        mean = float(values.mean()) if len(values) else 0.0
        return cls(len(values), mean, float(((values - mean) ** 2).sum()))

    def merge(self, other: Moments) -> Moments:
        n = self.n + other.n
        if n == 0:
            return self
        delta = other.mean - self.mean
        mean = self.mean + delta * other.n / n
        return Moments(n, mean, self.m2 + other.m2 + delta**2 * self.n * other.n / n)

    @property
    def std(self) -> float:
        return float(np.sqrt(self.m2 / self.n)) if self.n else 0.0  # np.std: ddof 0


def sketch_of(values: np.ndarray, k: int = SKETCH_K):
    from datasketches import kll_doubles_sketch

    sketch = kll_doubles_sketch(k)
    sketch.update(np.ascontiguousarray(values, dtype=float))
    return sketch


def sketched_ref(serialized: bytes, moments: Moments) -> NumericRef:
    """A column the stats read as sorted values: the sketch's quantiles on a grid of ranks."""
    from datasketches import kll_doubles_sketch

    sketch = kll_doubles_sketch.deserialize(serialized)
    grid = np.asarray(sketch.get_quantiles(np.linspace(0.0, 1.0, GRID)), dtype=float)
    uniques = grid[np.r_[True, grid[1:] != grid[:-1]]]
    return NumericRef(grid, moments.std, uniques, rows=moments.n, sketch=serialized)


def sketch_column(values: np.ndarray) -> NumericRef:
    """`values` (finite, any order) as a sketched column."""
    return sketched_ref(sketch_of(values).serialize(), Moments.of(values))


def rank_error(serialized: bytes) -> float:
    """The sketch's normalized rank error (single-rank queries, 99 % confidence)."""
    from datasketches import kll_doubles_sketch

    return float(kll_doubles_sketch.deserialize(serialized).normalized_rank_error(False))


def merge_sketched(a: NumericRef, a_moments: Moments, b: NumericRef, b_moments: Moments):
    """Two partitions' sketched (or exact) columns as one sketched column, and its moments."""
    from datasketches import kll_doubles_sketch

    def sketch(ref: NumericRef):
        if ref.sketch is not None:
            return kll_doubles_sketch.deserialize(ref.sketch)
        return sketch_of(ref.values)

    merged = sketch(a)
    merged.merge(sketch(b))
    moments = a_moments.merge(b_moments)
    return sketched_ref(merged.serialize(), moments), moments
