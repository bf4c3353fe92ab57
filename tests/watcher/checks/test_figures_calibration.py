"""The quality and gap calibration as matrix products gives `calibrate()`'s normal ranges with
`direct_quality` and `direct_gaps` on the same chunks (same seed, same draws)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from watcher.checks.calibration import calibrate
from watcher.checks.figures_calibration import calibrate_figures_fast
from watcher.checks.groups import direct_gaps
from watcher.checks.quality import direct_quality


def labelled(rows: int, task: str, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    group = rng.choice(["F", "M", "X", None], rows, p=[0.4, 0.45, 0.1, 0.05])
    if task == "regression":
        target = rng.normal(5, 2, rows)
        pred = target + rng.normal(np.where(group == "F", 0.8, 0.2), 1)
        return pd.DataFrame({"target": target, "prediction": pred, "groups.sex": group})
    target = rng.choice(["0", "1"], rows, p=[0.6, 0.4])
    wrong = rng.random(rows) < np.where(group == "F", 0.25, 0.1)
    pred = np.where(wrong, np.where(target == "1", "0", "1"), target)
    return pd.DataFrame({"target": target, "prediction": pred, "groups.sex": group})


@pytest.mark.parametrize("contiguous", [False, True])
@pytest.mark.parametrize("task", ["classification", "regression"])
def test_same_ranges_as_calibrate_with_direct_figures(task, contiguous):
    frame, classes = labelled(4000, task, seed=3), ["0", "1"]
    cfg = SimpleNamespace(task=task, checks=SimpleNamespace(min_group_rows=50))
    expected = calibrate(
        frame,
        500,
        rounds=40,
        sigmas=3.0,
        contiguous=contiguous,
        quality=lambda chunk: direct_quality(chunk, task, classes),
        group_gaps=lambda chunk: {
            "groups.sex": {
                g: v["value"] for g, v in direct_gaps(chunk, "groups.sex", cfg, classes).items()
            }
        },
    )
    got = calibrate_figures_fast(
        frame,
        500,
        task=task,
        classes=classes,
        attributes=["groups.sex"],
        min_group_rows=50,
        rounds=40,
        sigmas=3.0,
        contiguous=contiguous,
    )
    assert set(got.quality) == set(expected.quality)
    for name, normal in expected.quality.items():
        assert got.quality[name].as_dict() == pytest.approx(normal.as_dict(), rel=1e-9), name
    assert set(got.gaps["groups.sex"]) == set(expected.gaps["groups.sex"])
    for gap, normal in expected.gaps["groups.sex"].items():
        assert got.gaps["groups.sex"][gap].as_dict() == pytest.approx(normal.as_dict(), rel=1e-9)
