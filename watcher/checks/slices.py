"""Error slices: where the errors of a labelled window concentrate.

A slice is one categorical value (a feature or a group attribute) or one quantile bin of a
numeric feature (bin edges from the reference, so slices stay stable between checks). A slice
is reported when its error rate is significantly above the window's: one-sided binomial test,
Bonferroni-adjusted over every slice tested, at least `min_rows` rows. The corrector targets
the rows of the reported slices.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy.stats import binom


@dataclass
class ErrorSlice:
    column: str
    value: str  # a category, or a bin "[lo, hi)"
    rows: int
    errors: int
    error_rate: float
    lift: float  # error_rate / the window's error rate
    p_value: float  # Bonferroni-adjusted
    low: float | None = None
    high: float | None = None

    def as_dict(self) -> dict:
        """JSON-safe: open bin ends become None."""
        out = asdict(self)
        for end in ("low", "high"):
            if out[end] is not None and not np.isfinite(out[end]):
                out[end] = None
        return out

    def mask(self, frame: pd.DataFrame) -> pd.Series:
        """The rows of `frame` in this slice."""
        if self.low is None and self.high is None:
            return frame[self.column].astype(str) == self.value
        values = pd.to_numeric(frame[self.column], errors="coerce")
        low = -np.inf if self.low is None else self.low
        high = np.inf if self.high is None else self.high
        return (values >= low) & (values < high)


def bin_edges(reference: pd.Series, bins: int) -> np.ndarray:
    """Quantile edges of a numeric column, open at both ends."""
    qs = np.quantile(
        pd.to_numeric(reference, errors="coerce").dropna(), np.linspace(0, 1, bins + 1)
    )
    edges = np.unique(qs[1:-1])
    return np.concatenate([[-np.inf], edges, [np.inf]])


def find_error_slices(
    frame: pd.DataFrame,
    errors: pd.Series,
    *,
    numeric: list[str],
    categorical: list[str],
    edges: dict[str, np.ndarray],
    min_rows: int,
    alpha: float,
) -> list[ErrorSlice]:
    """Slices whose error rate is significantly above the window's, worst (highest lift) first."""
    err = errors.to_numpy(dtype=bool)
    n, total = len(err), int(err.sum())
    if n == 0 or total == 0:
        return []
    rate = total / n
    candidates = [*_categorical_counts(frame, categorical, err)]
    candidates += _numeric_counts(frame, numeric, edges, err)
    tested = [c for c in candidates if c[2] >= min_rows]
    found: list[ErrorSlice] = []
    for col, value, rows, errs, lo, hi in tested:
        if errs / rows <= rate:
            continue
        p = float(binom.sf(errs - 1, rows, rate)) * len(tested)
        if p < alpha:
            share = errs / rows
            found.append(
                ErrorSlice(col, value, rows, errs, share, share / rate, min(p, 1.0), lo, hi)
            )
    return sorted(found, key=lambda s: (-s.lift, s.p_value))


Candidate = tuple[str, str, int, int, float | None, float | None]  # column, value, rows, errors


def _categorical_counts(frame: pd.DataFrame, columns: list[str], err: np.ndarray):
    """Rows and errors of every value of every categorical column (values in sorted order),
    by codes and counts rather than one mask per value."""
    out: list[Candidate] = []
    for col in columns:
        codes, uniques = pd.factorize(frame[col].astype(str), sort=True)
        rows = np.bincount(codes, minlength=len(uniques))
        errs = np.bincount(codes, weights=err, minlength=len(uniques))
        out += [
            (col, str(v), int(r), int(e), None, None)
            for v, r, e in zip(uniques, rows, errs, strict=True)
        ]
    return out


def _numeric_counts(frame: pd.DataFrame, columns: list[str], edges: dict, err: np.ndarray):
    """Rows and errors of every bin [lo, hi) of every numeric column (NaN in none)."""
    out: list[Candidate] = []
    for col in columns:
        values = pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=float)
        cuts = np.asarray(edges[col], dtype=float)
        bins = len(cuts) - 1
        index = np.searchsorted(cuts, values, side="right") - 1
        inside = (index >= 0) & (index < bins) & ~np.isnan(values)
        rows = np.bincount(index[inside], minlength=bins)
        errs = np.bincount(index[inside], weights=err[inside], minlength=bins)
        for i, (lo, hi) in enumerate(zip(cuts[:-1], cuts[1:], strict=True)):
            label = f"[{_fmt(lo)}, {_fmt(hi)})"
            out.append((col, label, int(rows[i]), int(errs[i]), float(lo), float(hi)))
    return out


def _fmt(x: float) -> str:
    return "-inf" if x == -np.inf else "inf" if x == np.inf else f"{x:.4g}"
