"""Drift calibration from the reference profile: hundreds of bootstrap rounds in seconds.

A round compares a chunk of the reference with the rest of it, as a live window is compared
with the whole reference (calibration.py explains why). From a sorted column, a chunk is a
mask over the sorted positions: the chunk and the rest are then both sorted without sorting,
and their merged order is the column itself. Wasserstein's CDF difference at every position is
a cumulative sum of the mask, and one matrix product gives every round's distance for every
column at once; random chunks share one mask per column length (each column's statistic only
needs its own marginal). Contiguous chunks (an ordered reference) map the rows of a run onto
each column's sorted positions. Categorical chunks are draws from the frequency table
(multivariate hypergeometric), or the counts of a run. Other methods (K-S on small references,
a configured PSI...) are computed round by round on the sorted chunk and rest, still without
Evidently.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from watcher.checks.calibration import Calibration, normal_range
from watcher.checks.stattests import (
    METHODS,
    CategoricalRef,
    NumericRef,
    choose,
    counts_score,
    label,
    magnitude,
    numeric_score,
    sortable_keys,
)

BATCH_CELLS = 4_000_000  # rounds × positions per matrix (32 MB of float64)
CAL_GRID = 20_000  # order statistics a large column's random chunks are drawn from


@dataclass
class Plan:
    """Which chunks the rounds draw: contiguous runs at `starts`, and `random` random ones."""

    rows: int
    chunk: int
    starts: np.ndarray
    random: int
    rng: np.random.Generator
    frame: pd.DataFrame | None = None
    samples: dict[str, list[float]] = field(default_factory=dict)
    methods: dict[str, str] = field(default_factory=dict)

    _runs: np.ndarray | None = None

    def row_masks(self) -> np.ndarray:
        """The contiguous chunks as masks over the reference's rows (built once)."""
        if self._runs is None:
            self._runs = np.zeros((len(self.starts), self.rows), dtype=bool)
            for i, start in enumerate(self.starts):
                self._runs[i, start : start + self.chunk] = True
        return self._runs


def wasserstein_rounds(masks: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Normed Wasserstein distance of every masked chunk (rows of `masks`, over sorted
    positions) against the rest, for every column of `values` (n × k, each column sorted).

    With c the chunk's count at or below each position, the chunk's and the rest's CDFs are
    c/m and (i - c)/(n - m). In float32, and normed by the whole reference's std rather than
    the rest's (they differ by ~1/√n): a normal range does not need the last digits, and this
    halves the time of the one matrix product that dominates."""
    n = values.shape[0]
    steps = np.diff(values, axis=0).astype(np.float32)
    norm = np.maximum(values.std(axis=0), 0.001)
    out = []
    step = max(1, BATCH_CELLS // max(n, 1))
    positions = np.arange(1, n, dtype=np.float32)
    for lo in range(0, len(masks), step):
        below = np.cumsum(masks[lo : lo + step], axis=1, dtype=np.int32)
        chunk = below[:, -1:].astype(np.float32)
        rest = n - chunk
        gap = below[:, :-1].astype(np.float32)
        gap *= 1.0 / chunk + 1.0 / rest
        gap -= positions / rest
        np.abs(gap, out=gap)
        out.append((gap @ steps).astype(float) / norm)
    return np.vstack(out) if out else np.empty((0, values.shape[1]))


def sorted_order(values: pd.Series, n: int) -> np.ndarray:
    """Row index of each sorted finite value (the profile's order)."""
    arr = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    keyed = np.where(np.isfinite(arr), arr, np.inf)
    return np.argsort(keyed, kind="stable")[:n]


def numeric_rounds(plan: Plan, profile_numeric: dict[str, NumericRef], method: str | None):
    """Every numeric column's figure on every round. Columns of one length share the random
    chunks (one matrix product for all their Wasserstein distances)."""
    by_length: dict[int, list[str]] = {}
    for col, ref in profile_numeric.items():
        by_length.setdefault(len(ref.values), []).append(col)
    for n, cols in by_length.items():
        chunk = round(plan.chunk * n / plan.rows)
        if chunk < 1 or n - chunk < 2:
            continue
        names = {c: rest_method(profile_numeric[c], plan, method) for c in cols}
        shared = [c for c in cols if names[c] == "wasserstein"]
        others = [c for c in cols if names[c] != "wasserstein"]
        masks = usable(plan.rng.random((plan.random, n)) < chunk / n) if others else None
        scores = {c: _numeric_scores(names[c], profile_numeric[c], masks) for c in others}
        if shared:
            values = np.column_stack([profile_numeric[c].values for c in shared])
            found = random_wasserstein(plan, values, chunk / n)
            scores.update({c: list(f) for c, f in zip(shared, found.T, strict=True)})
        for col in cols:
            if len(plan.starts) and plan.frame is not None and profile_numeric[col].sketch is None:
                runs = usable(plan.row_masks()[:, sorted_order(plan.frame[col], n)])
                scores[col] += _numeric_scores(names[col], profile_numeric[col], runs, True)
            _record(plan, col, names[col], scores[col])


def random_wasserstein(plan: Plan, values: np.ndarray, share: float) -> np.ndarray:
    """Random chunks' normed Wasserstein distances (rounds × columns). Above 2 × CAL_GRID
    values, on CAL_GRID evenly spaced order statistics, scaled by √(CAL_GRID / n): √n_eff · W
    (n_eff = m(n − m)/n) tends to one distribution whatever n (a Brownian-bridge functional),
    so a chunk of the same share of a smaller sample of the same quantiles has its spread
    times √(n / CAL_GRID). tests/watcher/checks/test_profile.py compares it with the exact."""
    n = values.shape[0]
    if n <= 2 * CAL_GRID:
        return wasserstein_rounds(usable(plan.rng.random((plan.random, n)) < share), values)
    grid = values[np.linspace(0, n - 1, CAL_GRID).round().astype(int)]
    found = wasserstein_rounds(usable(plan.rng.random((plan.random, CAL_GRID)) < share), grid)
    norms = np.maximum(grid.std(axis=0), 0.001) / np.maximum(values.std(axis=0), 0.001)
    return found * norms * np.sqrt(CAL_GRID / n)


def rest_method(ref: NumericRef, plan: Plan, method: str | None) -> str:
    """The method a chunk-vs-rest comparison gets (the rest is the reference)."""
    rest = ref.n - round(plan.chunk * ref.n / plan.rows)
    return choose(method, True, rest, len(ref.uniques))


def usable(masks: np.ndarray) -> np.ndarray:
    """Chunks with at least one row in them and one outside."""
    taken = masks.sum(axis=1)
    return masks[(taken > 0) & (taken < masks.shape[1])]


def _numeric_scores(
    name: str, ref: NumericRef, masks: np.ndarray | None, wasserstein: bool = False
) -> list[float]:
    """One column's figure per chunk; Wasserstein only when asked (it is done in bulk)."""
    if masks is None:
        return []
    if name == "wasserstein":
        return list(wasserstein_rounds(masks, ref.values[:, None])[:, 0]) if wasserstein else []
    values = ref.values
    return [numeric_score(name, NumericRef.of(values[~m]), values[m]) for m in masks]


def categorical_rounds(plan: Plan, profile_cat: dict[str, CategoricalRef], method: str | None):
    """Every categorical column's figure on every round, from counts."""
    for col, ref in profile_cat.items():
        keys = list(ref.counts)
        counts = np.array([ref.counts[k] for k in keys], dtype=np.int64)
        total = int(counts.sum())
        chunk = round(plan.chunk * total / plan.rows)
        if chunk < 1 or total - chunk < 1 or not len(keys):
            continue
        name = choose(method, False, total - chunk, len(keys))
        drawn = [plan.rng.multivariate_hypergeometric(counts, chunk) for _ in range(plan.random)]
        if len(plan.starts) and plan.frame is not None:
            codes = pd.Categorical(plan.frame[col], categories=keys).codes
            for start in plan.starts:
                run = codes[start : start + plan.chunk]
                drawn.append(np.bincount(run[run >= 0], minlength=len(keys)))
        order = sortable_keys(keys) if name == "z" else None
        scores = [
            counts_score(name, (counts - d).astype(float), d.astype(float), order)
            for d in drawn
            if 0 < d.sum() < total
        ]
        _record(plan, col, name, scores)


def _record(plan: Plan, col: str, name: str, scores: list[float]) -> None:
    method = METHODS[name]
    plan.samples[col] = [magnitude(s, method) for s in scores]
    plan.methods[col] = name


def calibrate_profile(
    profile,
    chunk_rows: int,
    *,
    rounds: int,
    sigmas: float,
    method: str | None = None,
    frame: pd.DataFrame | None = None,
    contiguous: bool = False,
    seed: int = 0,
) -> Calibration:
    """Normal ranges of every column's drift magnitude from `profile` (a `ReferenceProfile`):
    `rounds` chunks of `chunk_rows` (at most half the reference), every other one a run of
    consecutive rows of `frame` when `contiguous`. Seeded: one reference, one calibration."""
    started = time.perf_counter()
    rows = profile.rows
    chunk = min(chunk_rows, rows // 2)
    rng = np.random.default_rng(seed)
    runs = (rounds + 1) // 2 if contiguous and frame is not None else 0
    starts = rng.integers(0, rows - chunk + 1, size=runs)
    plan = Plan(rows, chunk, starts, rounds - runs, rng, frame if runs else None)
    numeric_rounds(plan, profile.numeric, method)
    categorical_rounds(plan, profile.categorical, method)
    labels = {c: label(n, method) for c, n in plan.methods.items()}
    return Calibration(
        chunk_rows=chunk,
        rounds=rounds,
        chunks="contiguous and random" if runs else "random",
        columns={c: normal_range(v, sigmas) for c, v in plan.samples.items() if v},
        methods={c: labels[c] for c, v in plan.samples.items() if v},
        seconds=time.perf_counter() - started,
    )
