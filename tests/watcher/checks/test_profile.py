"""The reference profile: stored beside the card and loaded (not refitted) by the next checker,
with the calibrations it learnt; its bootstrap calibration measures what Evidently would."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import wasserstein_distance

from storage.registry import PROFILE_ARRAYS, PROFILE_JSON, ModelRegistry
from tests.support.helpers import setup_model, store_traffic
from watcher.checks.checker import ModelChecker
from watcher.checks.fast_drift import fast_drift
from watcher.checks.profile import fit_profile, load_profile, save_profile
from watcher.checks.profile_calibration import calibrate_profile, wasserstein_rounds
from watcher.demo.credit import COVARIATE_ONLY, NORMAL
from watcher.demo.run import MODEL


def reference(rows: int, seed: int = 0, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    gappy = rng.normal(shift, 1, rows)
    gappy[rng.random(rows) < 0.1] = np.nan
    return pd.DataFrame(
        {
            "x": rng.normal(shift, 1, rows),
            "gappy": gappy,
            "colour": rng.choice(
                ["red", "green", "blue"], rows, p=[0.5 - shift / 4, 0.3, 0.2 + shift / 4]
            ),
        }
    )


def test_a_stored_profile_gives_the_same_figures_and_only_for_its_reference(tmp_path):
    registry = ModelRegistry(tmp_path)
    registry.version_dir("m", "v1").mkdir(parents=True)
    ref, window = reference(5000), reference(2000, seed=1, shift=0.3)
    profile = fit_profile(ref, ["x", "gappy"], ["colour"], quality={"accuracy": 0.9})
    profile.calibrations["drift:1024"] = calibrate_profile(profile, 1000, rounds=200, sigmas=3)
    save_profile(registry, "m", "v1", profile)
    assert (registry.version_dir("m", "v1") / PROFILE_JSON).is_file()
    assert (registry.version_dir("m", "v1") / PROFILE_ARRAYS).is_file()

    loaded = load_profile(registry, "m", "v1", profile.fingerprint)
    assert loaded is not None and loaded.loaded and loaded.quality == {"accuracy": 0.9}
    before = fast_drift(profile, window, ["x", "gappy"], ["colour"]).columns
    after = fast_drift(loaded, window, ["x", "gappy"], ["colour"]).columns
    assert {c: d.score for c, d in after.items()} == {c: d.score for c, d in before.items()}
    assert loaded.calibrations["drift:1024"].columns == profile.calibrations["drift:1024"].columns
    assert load_profile(registry, "m", "v1", "another reference") is None


def test_bootstrap_wasserstein_equals_scipy_on_every_chunk():
    rng = np.random.default_rng(2)
    values = np.sort(rng.lognormal(0, 1, 3000))
    masks = rng.random((20, 3000)) < 0.3
    got = wasserstein_rounds(masks, values[:, None])[:, 0]
    norm = np.std(values)  # the whole reference's std (see wasserstein_rounds)
    expected = [wasserstein_distance(values[~m], values[m]) / norm for m in masks]
    np.testing.assert_allclose(got, expected, rtol=1e-4)


def test_large_columns_calibrate_on_a_grid_like_the_exact_bootstrap(monkeypatch):
    """Above 2 × CAL_GRID values the random chunks come from a grid of order statistics,
    scaled by √(grid / n): the same mean (10 %) and spread (25 %: 200 rounds' own noise in
    a standard deviation is ~5 %, and two draws' highs differ by ~15 % between seeds)."""
    import watcher.checks.profile_calibration as pc

    ref = reference(60_000, seed=8)
    profile = fit_profile(ref, ["x"], [])
    grid = calibrate_profile(profile, 20_000, rounds=200, sigmas=3).columns["x"]
    monkeypatch.setattr(pc, "CAL_GRID", 10**9)
    exact = calibrate_profile(profile, 20_000, rounds=200, sigmas=3).columns["x"]
    assert grid.mean == pytest.approx(exact.mean, rel=0.1)
    assert grid.std == pytest.approx(exact.std, rel=0.25)


@pytest.mark.parametrize("contiguous", [False, True])
def test_calibration_holds_reference_chunks_and_flags_a_shift(contiguous):
    ref = reference(20_000, seed=3)
    profile = fit_profile(ref, ["x", "gappy"], ["colour"])
    cal = calibrate_profile(profile, 2000, rounds=200, sigmas=3, frame=ref, contiguous=contiguous)
    assert {c: r.samples for c, r in cal.columns.items()} == {"x": 200, "gappy": 200, "colour": 200}
    assert cal.methods["x"] == "Wasserstein distance (normed)"
    assert cal.methods["colour"] == "Jensen-Shannon distance"
    same = fast_drift(profile, reference(2000, seed=4), ["x", "gappy"], ["colour"]).columns
    moved = fast_drift(profile, reference(2000, seed=5, shift=0.5), ["x", "gappy"], ["colour"])
    for col in ("x", "gappy", "colour"):
        assert same[col].magnitude <= cal.columns[col].high, col
        assert moved.columns[col].magnitude > cal.columns[col].high, col


@pytest.mark.slow
def test_the_next_checker_loads_the_profile_and_its_calibrations(workdir, trained):
    _, cfg, engine, registry = setup_model(workdir, trained[1])
    store_traffic(engine, registry, 1500, COVARIATE_ONLY, seed=21)
    model_cfg = cfg.models[MODEL]
    first = ModelChecker(MODEL, engine, registry, cfg.storage.reports)
    drift = first.run(model_cfg, ("drift",))[0]
    assert not drift.passed
    version = registry.active(MODEL)
    assert version is not None
    assert first.baseline(model_cfg, version).profile.loaded is False

    second = ModelChecker(MODEL, engine, registry, cfg.storage.reports)
    profile = second.baseline(model_cfg, version).profile
    assert profile.loaded and any(k.startswith("drift:") for k in profile.calibrations)
    again = second.run(model_cfg, ("drift",))[0]
    assert again.figures["columns"] == drift.figures["columns"]
    assert again.figures["calibration"]["rounds"] >= 200


@pytest.mark.slow
def test_demo_traffic_is_judged_by_the_profile(workdir, trained):
    """A clean demo window: no column outside its calibrated range, Evidently's methods."""
    _, cfg, engine, registry = setup_model(workdir, trained[1])
    store_traffic(engine, registry, 1500, NORMAL, seed=22)
    drift = ModelChecker(MODEL, engine, registry, cfg.storage.reports).run(
        cfg.models[MODEL], ("drift",)
    )[0]
    assert drift.passed, drift.summary
    methods = {f["method"] for f in drift.figures["columns"].values()}
    assert methods <= {"Wasserstein distance (normed)", "Jensen-Shannon distance"}
