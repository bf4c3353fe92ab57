"""Regions of the input space named so a person can find them: in the reference's own columns
and units, by the inputs that set the region apart from the rest of the reference."""

from __future__ import annotations

import numpy as np
import pandas as pd

MAX_TERMS = 2  # the inputs named per region: the two that set it apart most
NARROW = 0.6  # a numeric input sets a region apart when its central 90 % spans < 60 % of the
# reference's central 90 % (wider, and the region holds most of that input's values anyway)


def describe_regions(
    reference: pd.DataFrame,
    region_of: np.ndarray,
    numeric: list[str],
    categorical: list[str],
) -> dict[int, str]:
    """Region id → e.g. "x1 0.12–0.48, colour = red" for every region holding reference rows;
    "anywhere" when no input sets it apart."""
    values = {c: pd.to_numeric(reference[c], errors="coerce").to_numpy(float) for c in numeric}
    spans = {c: _span(v) for c, v in values.items()}
    labels = {c: reference[c].astype(str).to_numpy() for c in categorical}
    out: dict[int, str] = {}
    for region in np.unique(region_of):
        rows = region_of == region
        terms = _numeric_terms(values, spans, rows) + _categorical_terms(labels, rows)
        terms.sort(key=lambda t: t[0])
        out[int(region)] = ", ".join(t[1] for t in terms[:MAX_TERMS]) or "anywhere"
    return out


def _span(v: np.ndarray) -> tuple[float, float]:
    finite = v[np.isfinite(v)]
    if len(finite) == 0:
        return (0.0, 0.0)
    lo, hi = np.quantile(finite, [0.05, 0.95])
    return float(lo), float(hi)


def _numeric_terms(
    values: dict[str, np.ndarray], spans: dict[str, tuple[float, float]], rows: np.ndarray
) -> list[tuple[float, str]]:
    """(relative width, "name lo–hi") for the numeric inputs narrow in this region."""
    terms = []
    for col, v in values.items():
        lo_all, hi_all = spans[col]
        inside = v[rows]
        inside = inside[np.isfinite(inside)]
        if len(inside) == 0 or hi_all <= lo_all:
            continue
        lo, hi = np.quantile(inside, [0.05, 0.95])
        width = (hi - lo) / (hi_all - lo_all)
        if width < NARROW:
            terms.append((float(width), f"{col} {_fmt(lo)}–{_fmt(hi)}"))
    return terms


def _categorical_terms(labels: dict[str, np.ndarray], rows: np.ndarray) -> list[tuple[float, str]]:
    """(share of the reference with that value, "name = value") where a region holds one
    value of a categorical input that the reference has several of."""
    terms = []
    for col, v in labels.items():
        inside = np.unique(v[rows])
        if len(inside) == 1 and len(np.unique(v)) > 1:
            terms.append((float((v == inside[0]).mean()), f"{col} = {inside[0]}"))
    return terms


def _fmt(x: float) -> str:
    return f"{x:.3g}"
