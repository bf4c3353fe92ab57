"""Normal ranges on an ordered reference: a seasonal input read as drift when the reference
was chunked at random; with contiguous chunks a window of the same seasons is normal."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from watcher.checks.calibration import calibrate


@dataclass
class Found:
    magnitude: float
    method: str = "ks"


def ks_drift(chunk: pd.DataFrame, rest: pd.DataFrame) -> dict:
    """Kolmogorov-Smirnov distance of each column (a real drift statistic, fast)."""
    return {c: Found(float(stats.ks_2samp(chunk[c], rest[c]).statistic)) for c in chunk}


def seasonal(n: int, phase: float, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 2000 * 2 * np.pi + phase  # one season every 2,000 rows
    return pd.DataFrame({"temperature": 10 * np.sin(t) + rng.normal(0, 2, n)})


def test_contiguous_chunks_keep_a_seasonal_window_normal():
    reference = seasonal(8000, 0.0, seed=1)
    window = seasonal(8000, 0.0, seed=2).iloc[:1000]  # half a season of consecutive rows
    magnitude = ks_drift(window, reference)["temperature"].magnitude
    shuffled = calibrate(reference, 1000, rounds=12, sigmas=3, drift=ks_drift, contiguous=False)
    ordered = calibrate(reference, 1000, rounds=12, sigmas=3, drift=ks_drift, contiguous=True)
    assert magnitude > shuffled.columns["temperature"].high  # random chunks: "drift"
    assert magnitude <= ordered.columns["temperature"].high  # contiguous chunks: normal
    assert ordered.summary()["chunks"] == "contiguous and random"
    assert shuffled.summary()["chunks"] == "random"
    # a real shift still stands out against the contiguous calibration
    shifted = window + 15
    assert (
        ks_drift(shifted, reference)["temperature"].magnitude > ordered.columns["temperature"].high
    )
