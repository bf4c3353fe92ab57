"""Sketched reference columns (KLL, beyond one machine's memory): every figure within the
error sketches.py states of the exact profile's, stored and loaded, and profiles fitted on
partitions merge into one that judges like the profile of all the rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from storage.registry import ModelRegistry
from watcher.checks.fast_drift import fast_drift
from watcher.checks.profile import fit_profile, load_profile, merge_profiles, save_profile
from watcher.checks.profile_calibration import calibrate_profile
from watcher.checks.sketches import GRID, rank_error

ROWS = 60_000


def frame(rows: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "x": rng.normal(shift, 1, rows),
            "skewed": rng.lognormal(shift, 1, rows),
            "few": rng.integers(0, 4, rows).astype(float),  # ≤ 20 values: kept exactly
            "colour": rng.choice(["red", "green", "blue"], rows),
        }
    )


NUMERIC, CATEGORICAL = ["x", "skewed", "few"], ["colour"]


def bound(method: str, ref, eps: float) -> float:
    """The error sketches.py states for each statistic."""
    e = eps + 1.0 / GRID
    if method == "wasserstein":
        return e * (ref.values[-1] - ref.values[0]) / ref.std
    return 2 * e * 30  # a bin share each, over at most ~30 sturges bins


@pytest.mark.parametrize("method", [None, "psi", "jensenshannon", "ks"])
def test_sketched_figures_within_the_stated_error(method):
    reference, window = frame(ROWS, 1), frame(20_000, 2, shift=0.05)
    exact = fit_profile(reference, NUMERIC, CATEGORICAL)
    sketched = fit_profile(reference, NUMERIC, CATEGORICAL, sketch_above=10_000)
    assert sketched.numeric["x"].sketch is not None and sketched.numeric["few"].sketch is None
    want = fast_drift(exact, window, NUMERIC, CATEGORICAL, method=method).columns
    got = fast_drift(sketched, window, NUMERIC, CATEGORICAL, method=method).columns
    eps = rank_error(sketched.numeric["x"].sketch)
    for col in ("x", "skewed"):
        assert got[col].method == want[col].method
        name = method or "wasserstein"
        if name == "ks":  # D within eps + 1/GRID: compare the p-values' verdicts and scale
            assert got[col].evidently_drifted == want[col].evidently_drifted
            continue
        assert abs(got[col].score - want[col].score) <= bound(name, sketched.numeric[col], eps)
        assert got[col].score == pytest.approx(want[col].score, rel=0.05, abs=1e-3)
    assert got["few"].score == want["few"].score and got["colour"].score == want["colour"].score


def test_a_sketched_profile_is_stored_loaded_and_calibrated(tmp_path):
    registry = ModelRegistry(tmp_path)
    registry.version_dir("m", "v1").mkdir(parents=True)
    reference = frame(ROWS, 3)
    profile = fit_profile(reference, NUMERIC, CATEGORICAL, sketch_above=10_000)
    save_profile(registry, "m", "v1", profile)
    loaded = load_profile(registry, "m", "v1", profile.fingerprint)
    assert loaded is not None and loaded.numeric["x"].sketch == profile.numeric["x"].sketch
    assert loaded.numeric["x"].std == pytest.approx(float(np.std(reference["x"])), rel=1e-12)
    window = frame(5000, 4)
    assert fast_drift(loaded, window, NUMERIC, CATEGORICAL).columns["x"].score == pytest.approx(
        fast_drift(profile, window, NUMERIC, CATEGORICAL).columns["x"].score, rel=1e-12
    )
    cal = calibrate_profile(loaded, 5000, rounds=200, sigmas=3)
    moved = fast_drift(loaded, frame(5000, 5, shift=0.3), NUMERIC, CATEGORICAL).columns
    assert moved["x"].magnitude > cal.columns["x"].high
    assert fast_drift(loaded, window, NUMERIC, CATEGORICAL).columns["x"].magnitude <= (
        cal.columns["x"].high
    )


def test_partition_profiles_merge_into_the_whole_references():
    whole = frame(ROWS, 6)
    halves = whole.iloc[: ROWS // 2], whole.iloc[ROWS // 2 :]
    exact = fit_profile(whole, NUMERIC, CATEGORICAL)
    parts = [fit_profile(h, NUMERIC, CATEGORICAL, sketch_above=10_000) for h in halves]
    merged = merge_profiles(*parts, sketch_above=10_000)
    assert merged.rows == ROWS and merged.numeric["x"].n == ROWS
    assert merged.numeric["x"].std == pytest.approx(exact.numeric["x"].std, rel=1e-12)
    assert merged.categorical["colour"].counts == exact.categorical["colour"].counts
    np.testing.assert_array_equal(merged.numeric["few"].values, exact.numeric["few"].values)
    window = frame(20_000, 7, shift=0.05)
    want = fast_drift(exact, window, NUMERIC, CATEGORICAL).columns
    got = fast_drift(merged, window, NUMERIC, CATEGORICAL).columns
    eps = rank_error(merged.numeric["x"].sketch)
    for col in ("x", "skewed"):
        assert abs(got[col].score - want[col].score) <= bound(
            "wasserstein", merged.numeric[col], eps
        )
    # exact partitions below the threshold merge exactly
    small = merge_profiles(*[fit_profile(h, NUMERIC, CATEGORICAL) for h in halves])
    np.testing.assert_array_equal(small.numeric["x"].values, exact.numeric["x"].values)
