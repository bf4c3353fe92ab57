"""Evidently 0.7's drift statistics, in numpy/scipy, against a fitted reference column.

Every figure follows Evidently's own code (`evidently/legacy/calculations/stattests/*.py`) step
by step, so the fast path and Evidently's page agree (tests/watcher/checks/test_stattests.py
compares them): the reference side is a sorted array of its finite values (numeric) or a
frequency table (categorical), fitted once per version (profile.py), never re-read.

Evidently's default choice (`registry._get_default_stattest`), on the columns without NaN/inf:
unique values counted over reference + current, size = reference rows; numeric with more than 5
unique values → K-S up to 1000 reference rows, else Wasserstein normed by the reference std;
categorical, or numeric with ≤ 5 unique values → chi-square (> 2 values) or Z-test (2) up to
1000 rows, else Jensen–Shannon.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats
from scipy.spatial import distance


@dataclass(frozen=True)
class Method:
    name: str  # Evidently's stattest name
    display: str  # what Evidently's report calls it (its `stattest_name`)
    threshold: float
    p_value: bool  # drift when the score falls below the threshold, else at or above it
    strict: bool = True  # p-value methods: `p < threshold` (K-S: `p <= threshold`)


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("ks", "K-S p_value", 0.05, True, strict=False),
        Method("wasserstein", "Wasserstein distance (normed)", 0.1, False),
        Method("jensenshannon", "Jensen-Shannon distance", 0.1, False),
        Method("chisquare", "chi-square p_value", 0.05, True),
        Method("z", "Z-test p_value", 0.05, True),
        Method("psi", "PSI", 0.1, False),
    )
}
SMALL_REFERENCE = 1000  # Evidently: reference rows up to this → p-value tests


@dataclass(frozen=True)
class NumericRef:
    """A numeric column of the reference: its finite values sorted, their std and uniques.

    A sketched column (more rows than a profile keeps exactly, see profile.py) holds `GRID`
    quantiles of its KLL sketch as `values`, its true row count in `rows`, the exact std
    (from mergeable moments) and the serialized sketch."""

    values: np.ndarray
    std: float = field(default=float("nan"))
    uniques: np.ndarray = field(default_factory=lambda: np.empty(0))
    rows: int = -1  # the reference's finite rows when `values` is a sketch's quantile grid
    sketch: bytes | None = None

    @classmethod
    def of(cls, sorted_values: np.ndarray) -> NumericRef:
        values = np.asarray(sorted_values, dtype=float)
        uniques = values[np.r_[True, values[1:] != values[:-1]]] if len(values) else values
        return cls(values, float(np.std(values)) if len(values) else 0.0, uniques)

    @property
    def n(self) -> int:
        """The reference's finite rows (what Evidently's rule and the K-S p-value count)."""
        return self.rows if self.rows >= 0 else len(self.values)


@dataclass(frozen=True)
class CategoricalRef:
    """A categorical column of the reference: each value (NaN dropped) and its count."""

    counts: dict[Any, int]

    @property
    def rows(self) -> int:
        return int(sum(self.counts.values()))


def finite_sorted(values: Any) -> np.ndarray:
    """Numeric values as Evidently reads them (inf → NaN, NaN dropped), sorted."""
    arr = np.asarray(values, dtype=float)
    return np.sort(arr[np.isfinite(arr)])


def default_method(numeric: bool, reference_rows: int, unique: int) -> str:
    """Evidently's `_get_default_stattest`, by name."""
    if reference_rows <= SMALL_REFERENCE:
        if numeric and unique > 5:
            return "ks"
        return "chisquare" if unique > 2 else "z"
    return "wasserstein" if numeric and unique > 5 else "jensenshannon"


NUMERIC_ONLY = {"ks", "wasserstein"}  # Evidently refuses them on a categorical column
CATEGORICAL_ONLY = {"chisquare", "z"}  # when configured (its default rule still uses them)


def choose(configured: str | None, numeric: bool, reference_rows: int, unique: int) -> str:
    """The configured method where Evidently allows it for the column's type, else its
    default (where Evidently would refuse the whole report, the check still judges)."""
    allowed = CATEGORICAL_ONLY if numeric else NUMERIC_ONLY
    if configured is not None and configured not in allowed:
        return configured
    return default_method(numeric, reference_rows, unique)


def label(name: str, configured: str | None) -> str:
    """What Evidently's report calls the method: the configured name as given, else the
    default's display name."""
    return configured if configured == name else METHODS[name].display


def verdict(method: Method, score: float, threshold: float) -> bool:
    """Evidently's drift verdict for `score` at `threshold`."""
    if method.p_value:
        return bool(score < threshold) if method.strict else bool(score <= threshold)
    return bool(score >= threshold)


def magnitude(score: float, method: Method) -> float:
    """Larger = more drift, whatever the orientation: -log10 p for p-value methods."""
    if method.p_value:
        return -math.log10(max(score, 1e-300))
    return float(score)


# -- numeric columns ------------------------------------------------------------------------
def union_unique(ref: NumericRef, current: np.ndarray) -> np.ndarray:
    """The sorted unique values of reference + current (both sorted)."""
    cur_unique = current[np.r_[True, current[1:] != current[:-1]]] if len(current) else current
    return np.union1d(ref.uniques, cur_unique)


def numeric_unique_count(ref: NumericRef, current: np.ndarray) -> int:
    """Unique values over reference + current; exact up to 5 (all the rule needs), else > 5."""
    if len(ref.uniques) > 5:
        return len(ref.uniques)
    return len(union_unique(ref, current))


def wasserstein_sorted(u: np.ndarray, v: np.ndarray) -> float:
    """scipy's `wasserstein_distance(u, v)` for two sorted arrays, without sorting: each v
    value's place in the merged order is its rank in v plus the u values at or below it (u
    first among equals, as a stable merge), and the CDFs are counts along that order."""
    size = u.size + v.size
    at = np.arange(v.size) + u.searchsorted(v, "right")
    from_v = np.zeros(size, dtype=bool)
    from_v[at] = True
    merged = np.empty(size)
    merged[at] = v
    merged[~from_v] = u
    v_count = np.cumsum(from_v)[:-1]
    u_count = np.arange(1, size) - v_count
    return float(np.abs(u_count / u.size - v_count / v.size) @ np.diff(merged))


def count_in(sorted_values: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """How many times each key occurs in a sorted array."""
    return sorted_values.searchsorted(keys, "right") - sorted_values.searchsorted(keys, "left")


def sturges_counts(
    ref: np.ndarray, cur: np.ndarray, ref_rows: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """np.histogram of each over `np.histogram_bin_edges(ref + cur, "sturges")`, from the
    sorted arrays: the same edges and the same half-open bins (the last one closed)."""
    first, last = min(ref[0], cur[0]), max(ref[-1], cur[-1])
    size = (ref.size if ref_rows is None else ref_rows) + cur.size
    width = (last - first) / (np.log2(size) + 1.0)
    if first == last:
        first, last = first - 0.5, last + 0.5
    bins = int(np.ceil((last - first) / width)) if width else 1
    edges = np.linspace(first, last, bins + 1, endpoint=True)

    def counts(values: np.ndarray) -> np.ndarray:
        pos = values.searchsorted(edges, "left")
        pos[-1] = values.searchsorted(edges[-1], "right")
        return np.diff(pos)

    return counts(ref), counts(cur)


def numeric_counts(
    ref: NumericRef, cur: np.ndarray, histogram: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Counts per bin (`get_binned_data`: sturges bins when the reference has > 20 unique
    values and `histogram`) or per unique value (then the keys too)."""
    if histogram and len(ref.uniques) > 20:
        r, c = sturges_counts(ref.values, cur, ref.n)
        return r, c, None
    keys = union_unique(ref, cur)
    return count_in(ref.values, keys), count_in(cur, keys), keys


def numeric_score(method: str, ref: NumericRef, cur: np.ndarray) -> float:
    """`method`'s statistic of the sorted finite current values against the reference."""
    if method == "wasserstein":
        return wasserstein_sorted(ref.values, cur) / max(ref.std, 0.001)
    if method == "ks" and ref.sketch is not None:  # D against the grid, p for the true n
        d = float(stats.ks_2samp(ref.values, cur)[0])
        return float(stats.kstwo.sf(d, round(ref.n * cur.size / (ref.n + cur.size))))
    if method == "ks":
        return float(stats.ks_2samp(ref.values, cur)[1])
    r, c, keys = numeric_counts(ref, cur, histogram=method in ("jensenshannon", "psi"))
    return counts_score(method, r, c, keys)


# -- counts (categorical columns, and numeric ones by value) --------------------------------
def filled(percents: np.ndarray) -> np.ndarray:
    """`get_binned_data(feel_zeroes=True)`: empty bins get a small share instead of 0."""
    nonzero = percents[percents != 0]
    if nonzero.size == 0:
        return percents
    low = nonzero.min()
    out = percents.copy()
    out[out == 0] = low / 10**6 if low <= 0.0001 else 0.0001
    return out


def z_p_value(ref: np.ndarray, cur: np.ndarray, keys: np.ndarray | list | None) -> float:
    """Evidently's two-proportion Z-test: the share of rows that are not the first key."""
    if (
        np.count_nonzero(ref) == 1
        and np.count_nonzero(cur) == 1
        and np.argmax(ref) == np.argmax(cur)
    ):
        return 1.0
    first = int(np.argmin(keys)) if keys is not None and len(keys) else 0
    n1, n2 = ref.sum(), cur.sum()
    p1, p2 = float(n1 - ref[first]) / n1, float(n2 - cur[first]) / n2
    pooled = float(p1 * n1 + p2 * n2) / (n1 + n2)
    z = (p1 - p2) / np.sqrt(pooled * (1 - pooled) * (1.0 / n1 + 1.0 / n2))
    return float(2 * (1 - stats.norm.cdf(np.abs(z))))


def counts_score(
    method: str, ref: np.ndarray, cur: np.ndarray, keys: np.ndarray | list | None = None
) -> float:
    """`method`'s statistic from per-key (or per-bin) counts of reference and current."""
    if method == "chisquare":
        expected = ref * (cur.sum() / ref.sum())
        return float(stats.chisquare(cur, expected)[1])
    if method == "z":
        return z_p_value(ref, cur, keys)
    p, q = ref / ref.sum(), cur / cur.sum()
    if method == "jensenshannon":
        return float(distance.jensenshannon(p, q))
    if method == "psi":
        p, q = filled(p), filled(q)
        return float(np.sum((p - q) * np.log(p / q)))
    raise ValueError(f"no fast implementation of drift method {method!r}")


def categorical_counts(
    ref: CategoricalRef, current: dict[Any, int]
) -> tuple[np.ndarray, np.ndarray, list]:
    """Counts of reference and current over the union of their values."""
    keys = list(ref.counts) + [k for k in current if k not in ref.counts]
    r = np.array([ref.counts.get(k, 0) for k in keys], dtype=float)
    c = np.array([current.get(k, 0) for k in keys], dtype=float)
    return r, c, keys


def sortable_keys(keys: list) -> np.ndarray | list:
    """The keys' order for the Z-test's first key (Evidently sorts them)."""
    order = sorted(range(len(keys)), key=lambda i: keys[i])
    ranks = np.empty(len(keys), dtype=int)
    ranks[order] = np.arange(len(keys))
    return ranks
