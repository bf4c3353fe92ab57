"""The checks' quality figures (numpy) equal Evidently's on the same frames: binary, multiclass
(macro averages, a class never predicted), regression, and the per-group subset."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from watcher.checks.quality import evidently_quality, numpy_quality


def labelled(rows: int, classes: list[str], seed: int, never_predicted: str | None = None):
    rng = np.random.default_rng(seed)
    target = rng.choice(classes, rows)
    pred = np.where(rng.random(rows) < 0.7, target, rng.choice(classes, rows))
    if never_predicted is not None:
        pred = np.where(pred == never_predicted, classes[0], pred)
    return pd.DataFrame({"target": target, "prediction": pred})


CASES = [
    pytest.param(["0", "1"], None, id="binary"),
    pytest.param(["a", "b", "c"], None, id="multiclass"),
    pytest.param(["a", "b", "c"], "c", id="multiclass-class-never-predicted"),
]


@pytest.mark.parametrize("per_group", [False, True])
@pytest.mark.parametrize(("classes", "never"), CASES)
def test_classification_figures_equal_evidently(classes, never, per_group):
    frame = labelled(700, classes, seed=len(classes), never_predicted=never)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = evidently_quality(frame, "classification", classes, per_group).figures
    ours = numpy_quality(frame, "classification", classes, per_group).figures
    assert set(ours) == set(theirs)
    for name, value in theirs.items():
        assert ours[name] == pytest.approx(value, rel=1e-9, abs=1e-12), name


@pytest.mark.parametrize("per_group", [False, True])
def test_regression_figures_equal_evidently(per_group):
    rng = np.random.default_rng(9)
    target = rng.normal(10, 3, 500)
    frame = pd.DataFrame({"target": target, "prediction": target + rng.normal(0.5, 1, 500)})
    theirs = evidently_quality(frame, "regression", [], per_group).figures
    ours = numpy_quality(frame, "regression", [], per_group).figures
    assert set(ours) == set(theirs)
    for name, value in theirs.items():
        assert ours[name] == pytest.approx(value, rel=1e-9), name
