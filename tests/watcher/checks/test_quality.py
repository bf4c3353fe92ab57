"""Quality and group figures from Evidently agree with a direct numpy computation, for
classification and regression, and error slices find where errors were planted."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from watcher.checks.quality import direct_quality, evidently_quality, gaps, group_quality
from watcher.checks.slices import bin_edges, find_error_slices


def classification_frame(n: int = 3000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    target = rng.choice(["0", "1"], size=n, p=[0.6, 0.4])
    group = rng.choice(["A", "B", "C"], size=n)
    wrong = rng.random(n) < np.where(group == "C", 0.3, 0.1)  # C suffers
    prediction = np.where(wrong, np.where(target == "1", "0", "1"), target)
    return pd.DataFrame({"target": target, "prediction": prediction, "groups.g": group})


def test_classification_figures_match_direct_computation():
    frame = classification_frame()
    got = evidently_quality(frame, "classification", ["0", "1"]).figures
    direct = direct_quality(frame, "classification", ["0", "1"])
    t, p = frame["target"], frame["prediction"]
    assert got["accuracy"] == pytest.approx(direct["accuracy"])
    assert got["recall"] == pytest.approx(direct["tpr"])
    assert got["precision"] == pytest.approx(((p == "1") & (t == "1")).sum() / (p == "1").sum())
    assert got["selection_rate"] == pytest.approx(direct["selection_rate"])
    assert set(got["f1_by_class"]) == {"0", "1"}

    groups = group_quality(frame, "groups.g", "classification", ["0", "1"], min_rows=50)
    for name, part in frame.groupby("groups.g"):
        expect = direct_quality(part, "classification", ["0", "1"])
        assert groups[name]["accuracy"] == pytest.approx(expect["accuracy"])
        assert groups[name]["tpr"] == pytest.approx(expect["tpr"])
        assert groups[name]["selection_rate"] == pytest.approx(expect["selection_rate"])
    found = gaps(groups, "classification")
    assert found["accuracy_gap"]["disadvantaged"] == "C"
    accs = [groups[g]["accuracy"] for g in groups]
    assert found["accuracy_gap"]["value"] == pytest.approx(max(accs) - min(accs))


def test_regression_figures_match_direct_computation():
    rng = np.random.default_rng(1)
    target = rng.uniform(1, 5, size=2000)  # a 1–5 rating
    group = rng.choice(["x", "y"], size=2000)
    prediction = target + rng.normal(scale=np.where(group == "y", 0.9, 0.3))
    frame = pd.DataFrame({"target": target, "prediction": prediction, "groups.g": group})
    got = evidently_quality(frame, "regression", []).figures
    direct = direct_quality(frame, "regression", [])
    for name in ("mae", "rmse", "r2"):
        assert got[name] == pytest.approx(direct[name], rel=1e-9), name
    groups = group_quality(frame, "groups.g", "regression", [], min_rows=50)
    found = gaps(groups, "regression")
    assert found["mae_gap"]["disadvantaged"] == "y"
    assert found["mae_gap"]["value"] == pytest.approx(groups["y"]["mae"] - groups["x"]["mae"])


def test_error_slices_find_the_planted_slice_and_nothing_in_noise():
    rng = np.random.default_rng(2)
    n = 4000
    frame = pd.DataFrame({"age": rng.uniform(18, 90, n), "plan": rng.choice(["a", "b", "c"], n)})
    errors = pd.Series(rng.random(n) < 0.08)
    planted = (frame["plan"] == "c") & (frame["age"] > 70)
    errors |= planted & pd.Series(rng.random(n) < 0.5)
    edges = {"age": bin_edges(pd.Series(rng.uniform(18, 90, n)), 5)}
    found = find_error_slices(
        frame, errors, numeric=["age"], categorical=["plan"], edges=edges, min_rows=30, alpha=0.01
    )
    assert {(s.column, s.value if s.column == "plan" else "old") for s in found[:2]} == {
        ("plan", "c"),
        ("age", "old"),
    }
    top_age = next(s for s in found if s.column == "age")
    assert top_age.low > 70 - 15 and top_age.high == np.inf
    assert top_age.as_dict()["high"] is None  # JSON-safe
    assert top_age.mask(frame).sum() == top_age.rows
    noise = pd.Series(rng.random(n) < 0.08)
    assert not find_error_slices(
        frame, noise, numeric=["age"], categorical=["plan"], edges=edges, min_rows=30, alpha=0.01
    )
