"""The fast path's drift figures equal Evidently's own run on the same frames: every default
method and every configured one, numeric and categorical columns, missing values, a constant
column, unseen categories and tiny windows."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from watcher.checks.drift import run_drift
from watcher.checks.fast_drift import fast_drift, register_with_evidently

NUMERIC = ["wide", "few", "gappy", "constant", "skewed"]
CATEGORICAL = ["colour", "flag", "gappy_cat"]


def frame(rows: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    gappy = rng.normal(shift, 1, rows)
    gappy[rng.random(rows) < 0.15] = np.nan
    gappy[: min(2, rows)] = np.inf  # Evidently drops inf with NaN
    cats = rng.choice(["a", "b", "c", None], rows, p=[0.4, 0.3, 0.2, 0.1])
    return pd.DataFrame(
        {
            "wide": rng.normal(shift, 1, rows),
            "few": rng.integers(0, 4, rows).astype(float),  # ≤ 5 unique: chi-square / JS
            "gappy": gappy,
            "constant": np.full(rows, 3.0),
            "skewed": rng.lognormal(shift, 1, rows),
            "colour": rng.choice(
                ["red", "green", "blue"], rows, p=[0.5 - shift / 4, 0.3, 0.2 + shift / 4]
            ),
            "flag": rng.choice(["yes", "no"], rows, p=[0.7 - shift / 4, 0.3 + shift / 4]),
            "gappy_cat": cats,
        }
    )


def with_unseen(current: pd.DataFrame) -> pd.DataFrame:
    current = current.copy()
    current.loc[current.index[: max(1, len(current) // 20)], "colour"] = "violet"
    return current


CASES = [  # reference rows, current rows: p-value methods up to 1000 reference rows
    pytest.param(800, 300, id="small-reference"),
    pytest.param(3000, 2000, id="large-reference"),
    pytest.param(40, 6, id="tiny"),
]


def agree(reference: pd.DataFrame, current: pd.DataFrame, numeric, categorical, method=None):
    from watcher.checks.profile import fit_profile

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = run_drift(current, reference, numeric, categorical, method=method).columns
        ours = fast_drift(
            fit_profile(reference, numeric, categorical),
            current,
            numeric,
            categorical,
            method=method,
        ).columns
    assert set(ours) == set(theirs)
    for col, expected in theirs.items():
        got = ours[col]
        assert got.method == expected.method, col
        assert got.score == pytest.approx(expected.score, rel=1e-6, abs=1e-9), (col, got.method)
        assert got.evidently_drifted == expected.evidently_drifted, col
    return ours


@pytest.mark.parametrize(("ref_rows", "cur_rows"), CASES)
@pytest.mark.parametrize("shift", [0.0, 0.5])
def test_default_methods_match_evidently(ref_rows, cur_rows, shift):
    reference, current = frame(ref_rows, 1), with_unseen(frame(cur_rows, 2, shift))
    ours = agree(reference, current, NUMERIC, CATEGORICAL)
    expected = (
        {"wide": "K-S p_value", "few": "chi-square p_value", "flag": "Z-test p_value"}
        if ref_rows <= 1000
        else {
            "wide": "Wasserstein distance (normed)",
            "few": "Jensen-Shannon distance",
            "flag": "Jensen-Shannon distance",
        }
    )
    assert {c: ours[c].method for c in expected} == expected


@pytest.mark.parametrize("method", ["psi", "jensenshannon", "ks", "wasserstein"])
@pytest.mark.parametrize(("ref_rows", "cur_rows"), CASES[:2])
def test_configured_methods_match_evidently(method, ref_rows, cur_rows):
    reference, current = frame(ref_rows, 3), with_unseen(frame(cur_rows, 4, 0.3))
    categorical = [] if method in ("ks", "wasserstein") else CATEGORICAL  # numeric-only tests
    agree(reference, current, NUMERIC, categorical, method=method)


@pytest.mark.parametrize("method", ["chisquare", "z"])
def test_configured_count_tests_match_evidently_on_categories(method):
    reference, current = frame(2000, 5), frame(500, 6, 0.4)
    columns = ["flag"] if method == "z" else ["colour", "flag"]
    agree(reference, current, [], columns, method=method)


def test_evidently_pages_compute_the_same_figure_with_the_registered_methods():
    """`warden_<name>` inside Evidently gives the fast path's figure and Evidently's name."""
    register_with_evidently()
    reference, current = frame(3000, 7), with_unseen(frame(1500, 8, 0.3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for method in ("wasserstein", "psi", "jensenshannon", "ks"):
            mine = run_drift(current, reference, ["wide"], [], method=f"warden_{method}").columns
            theirs = run_drift(current, reference, ["wide"], [], method=method).columns
            assert mine["wide"].score == pytest.approx(theirs["wide"].score, rel=1e-9)
        mine = run_drift(current, reference, [], ["colour"], method="warden_jensenshannon").columns
        theirs = run_drift(current, reference, [], ["colour"], method="jensenshannon").columns
        assert mine["colour"].score == pytest.approx(theirs["colour"].score, rel=1e-9)
