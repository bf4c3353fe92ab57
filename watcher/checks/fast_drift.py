"""The drift check's fast path: each column of the window against the fitted reference profile
with Evidently's own statistics (stattests.py), in numpy, without Evidently on the way.

The same implementations are registered with Evidently as `warden_<name>` (display names as
Evidently's own), so an incident page rendered by Evidently names and computes the very figure
the check judged."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import pandas as pd

from watcher.checks.drift import ColumnDrift, DriftResult
from watcher.checks.stattests import (
    METHODS,
    CategoricalRef,
    NumericRef,
    categorical_counts,
    choose,
    counts_score,
    finite_sorted,
    label,
    magnitude,
    numeric_score,
    numeric_unique_count,
    sortable_keys,
    verdict,
)

REGISTERED_PREFIX = "warden_"
THREADED_ROWS = 20_000  # windows from this size spread their columns over the cores


def fast_methods() -> set[str]:
    """Configured `drift_method`s the fast path computes itself (others go to Evidently)."""
    return set(METHODS)


def numeric_drift(
    ref: NumericRef, values: Any, method: str | None, threshold: float | None
) -> ColumnDrift | None:
    """One numeric column; None when either side has no finite value (Evidently refuses)."""
    cur = finite_sorted(values)
    if not len(cur) or not len(ref.values):
        return None
    name = choose(method, True, ref.n, numeric_unique_count(ref, cur))
    return _column(name, numeric_score(name, ref, cur), method, threshold)


def categorical_drift(
    ref: CategoricalRef, values: pd.Series, method: str | None, threshold: float | None
) -> ColumnDrift | None:
    """One categorical column (NaN dropped, as Evidently does)."""
    current = values.dropna().value_counts(sort=False).to_dict()
    if not current or not ref.counts:
        return None
    r, c, keys = categorical_counts(ref, current)
    name = choose(method, False, ref.rows, len(keys))
    order = sortable_keys(keys) if name == "z" else None
    return _column(name, counts_score(name, r, c, order), method, threshold)


def _column(name: str, score: float, configured: str | None, threshold: float | None):
    method = METHODS[name]
    return ColumnDrift(
        score=score,
        method=label(name, configured),  # what Evidently's report names it
        magnitude=magnitude(score, method),
        evidently_drifted=verdict(method, score, threshold or method.threshold),
        stattest=name,
    )


def fast_drift(
    profile: Any,
    current: pd.DataFrame,
    numeric: list[str],
    categorical: list[str],
    *,
    method: str | None = None,
    threshold: float | None = None,
) -> DriftResult:
    """Drift of every column in `numeric` + `categorical` against `profile` (a
    `ReferenceProfile`): Evidently's figures, verdicts and method names. Columns of a large
    window run on threads (numpy's sorts and searches release the GIL)."""
    jobs = {
        c: partial(numeric_drift, profile.numeric[c], current[c], method, threshold)
        for c in numeric
    }
    for col in categorical:
        jobs[col] = partial(
            categorical_drift, profile.categorical[col], current[col], method, threshold
        )
    found: dict[str, ColumnDrift] = {}
    for col, drift in zip(jobs, _run(jobs, len(current)), strict=True):
        if drift is not None:
            found[col] = drift
    share = sum(c.evidently_drifted for c in found.values()) / max(1, len(found))
    return DriftResult(found, share, None)


def _run(jobs: Mapping[str, Callable[[], ColumnDrift | None]], rows: int) -> list:
    """Every job's result in order; on threads from `THREADED_ROWS` rows."""
    if rows < THREADED_ROWS or len(jobs) < 2:
        return [job() for job in jobs.values()]
    with ThreadPoolExecutor(max_workers=min(len(jobs), os.cpu_count() or 1)) as pool:
        return list(pool.map(lambda job: job(), jobs.values()))


# -- the same implementations inside Evidently (for its pages) ------------------------------
def _evidently_impl(name: str):
    def impl(reference: pd.Series, current: pd.Series, feature_type: Any, threshold: float):
        if str(getattr(feature_type, "value", feature_type)) == "num":
            ref = NumericRef.of(finite_sorted(reference))
            score = numeric_score(name, ref, finite_sorted(current))
        else:
            counts = CategoricalRef(reference.value_counts(sort=False).to_dict())
            r, c, keys = categorical_counts(counts, current.value_counts(sort=False).to_dict())
            score = counts_score(name, r, c, sortable_keys(keys) if name == "z" else None)
        return score, verdict(METHODS[name], score, threshold)

    return impl


def register_with_evidently() -> None:
    """Register every fast method with Evidently as `warden_<name>` (idempotent)."""
    from evidently.legacy.calculations.stattests.registry import (
        StatTest,
        _registered_stat_tests,
        register_stattest,
    )
    from evidently.legacy.core import ColumnType

    for name, method in METHODS.items():
        key = REGISTERED_PREFIX + name
        if key in _registered_stat_tests:
            continue
        test = StatTest(
            name=key,
            display_name=method.display,
            allowed_feature_types=[ColumnType.Numerical, ColumnType.Categorical],
            default_threshold=method.threshold,
        )
        register_stattest(test, default_impl=_evidently_impl(name))


def page_method(figures: dict[str, Any]) -> str | None:
    """The registered method an incident page uses for one column: the one the check used."""
    name = figures.get("stattest")
    return REGISTERED_PREFIX + name if name in METHODS else None
