"""Which reference rows leave the no-forgetting guard, on River's synthetic streams (rules
nobody here wrote): a covariate shift excludes nothing, a rule changed everywhere excludes what it
contradicts, a passing sub-population leaves what it does not reach guarded."""

from __future__ import annotations

import itertools
import json
import time
from functools import cache

import numpy as np
import pytest
from river.datasets import synth
from scipy import stats

from correctors.validation.regions import adjust_p, fisher_p, region_shift

SEEDS = (1, 2, 3)
N_REF, N_RECENT = 20_000, 5_000
SINE = synth.Sine


def take(stream, n: int, keys: list | None = None) -> tuple[np.ndarray, np.ndarray]:
    rows, labels = [], []
    for x, y in itertools.islice(stream, n):
        keys = keys or sorted(x)
        rows.append([float(x[k]) for k in keys])
        labels.append(y)
    return np.array(rows, dtype=np.float32), np.array(labels)


@cache
def sea(variant: int, seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    x, y = take(synth.SEA(variant=variant, noise=0.1, seed=seed), n)
    return x, y.astype(int)


@cache
def sine(function: int, seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    return take(SINE(classification_function=function, seed=seed), n)


@cache
def agrawal(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Agrawal's loan stream encoded as an encoder would: numerics standardised by fixed scales,
    the categorical inputs (education level, car, zip code) one-hot."""
    raw, y = take(synth.Agrawal(classification_function=2, seed=seed), n)
    keys = sorted(next(iter(synth.Agrawal(seed=0)))[0])
    col = {k: raw[:, i] for i, k in enumerate(keys)}
    numeric = [
        (col[k] - col[k].mean()) / col[k].std()
        for k in ("age", "commission", "hvalue", "hyears", "loan", "salary")
    ]
    onehot = [
        (col[k][:, None] == np.unique(col[k])[None, :]).astype(np.float32)
        for k in ("elevel", "car", "zipcode")
    ]
    x = np.column_stack([*numeric, *onehot]).astype(np.float32)
    return x, y


def split(x: np.ndarray, y: np.ndarray, keep: np.ndarray, n: int):
    return x[keep][:n], y[keep][:n]


def sine_label(function: int, x: np.ndarray) -> np.ndarray:
    rule = {
        0: SINE._classification_function_zero,
        1: SINE._classification_function_one,
        2: SINE._classification_function_two,
        3: SINE._classification_function_three,
    }[function]
    return np.array([rule(a, b) for a, b in x])


# --- (1) covariate shift only: the rule holds, the inputs moved -------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_covariate_shift_on_sea_excludes_almost_nothing(seed):
    """Recent rows only from the corner x0 < 4 (same rule, 10 % label noise): ≤ 2 % excluded.
    Seed 2 is the trap: one boundary region's reference rate is 0.61 and its 24 recent rows, all
    at one end of it, 0.08; comparing them with the reference beside them excludes nothing."""
    x_ref, y_ref = sea(0, seed, N_REF)
    x_new, y_new = sea(0, seed + 100, 8 * N_RECENT)
    x_rec, y_rec = split(x_new, y_new, x_new[:, 0] < 4, N_RECENT)
    result = region_shift(x_ref, y_ref, x_rec, y_rec, "classification")
    assert result.excluded_share <= 0.02, result.summary
    assert 0.3 <= result.reached_share <= 0.7  # the corner, and the regions straddling its edge


@pytest.mark.parametrize("seed", SEEDS)
def test_covariate_shift_on_sine_excludes_almost_nothing(seed):
    """Sine (no label noise, a curved boundary): recent rows only where x1 > 0.6."""
    x_ref, y_ref = sine(0, seed, N_REF)
    x_new, y_new = sine(0, seed + 100, 4 * N_RECENT)
    x_rec, y_rec = split(x_new, y_new, x_new[:, 1] > 0.6, N_RECENT)
    result = region_shift(x_ref, y_ref, x_rec, y_rec, "classification")
    assert result.excluded_share <= 0.02, result.summary


@pytest.mark.parametrize("seed", SEEDS)
def test_covariate_shift_on_agrawal_excludes_almost_nothing(seed):
    """Agrawal's loan rule (40 encoded inputs, one-hot among them): recent applicants under 40."""
    x, y = agrawal(seed, N_REF + 4 * N_RECENT)
    x_ref, y_ref = x[:N_REF], y[:N_REF]
    young = x[N_REF:, 0] < np.quantile(x[:, 0], 0.35)
    x_rec, y_rec = split(x[N_REF:], y[N_REF:], young, N_RECENT)
    result = region_shift(x_ref, y_ref, x_rec, y_rec, "classification")
    assert result.excluded_share <= 0.02, result.summary


# --- (2) the labelling rule changes everywhere -----------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_labels_reversed_everywhere_excludes_nearly_all(seed):
    """SEA with every recent label reversed: ≥ 90 % of the reference leaves the guard."""
    x_ref, y_ref = sea(0, seed, N_REF)
    x_rec, y_rec = sea(0, seed + 100, N_RECENT)
    result = region_shift(x_ref, y_ref, x_rec, 1 - y_rec, "classification")
    assert result.excluded_share >= 0.9, result.summary
    assert result.reached_share >= 0.95


@pytest.mark.parametrize("seed", SEEDS)
def test_sine_reversed_excludes_nearly_all(seed):
    """SINE1 → its reversal (River's function 1): every reference label is contradicted; ≥ 92 %
    excluded (what is left lies in regions too thinly reached to test)."""
    x_ref, y_ref = sine(0, seed, N_REF)
    x_rec, y_rec = sine(1, seed + 100, N_RECENT)
    result = region_shift(x_ref, y_ref, x_rec, y_rec, "classification")
    assert result.excluded_share >= 0.92, result.summary


@pytest.mark.parametrize("seed", SEEDS)
def test_sine_boundary_change_excludes_the_contradicted_rows(seed):
    """SINE1 → SINE2 (another boundary; 27 % of the inputs change label): ≥ 85 % of those rows
    excluded, ≤ 17 % of the others (regions straddling the new boundary go whole, and thin
    ones beside a differing sibling go with it: measured 15–16 %)."""
    x_ref, y_ref = sine(0, seed, N_REF)
    x_rec, y_rec = sine(2, seed + 100, N_RECENT)
    result = region_shift(x_ref, y_ref, x_rec, y_rec, "classification")
    differ = sine_label(0, x_ref) != sine_label(2, x_ref)
    assert result.mask[differ].mean() >= 0.85, result.summary
    assert result.mask[~differ].mean() <= 0.17, result.summary


@pytest.mark.parametrize("seed", SEEDS)
def test_sea_threshold_change_excludes_the_contradicted_band(seed):
    """SEA threshold 8 → 9.5 (variant 3): 13 % of the inputs change label, in a diagonal band
    under 10 % label noise. ≥ 55 % of the band is excluded, ≤ 13 % of the rest (measured 11–12 %,
    of which 7 points are thin regions beside a differing sibling): a band one unit wide crosses
    regions that it fills only in part, the weakest case here."""
    x_ref, y_ref = sea(0, seed, N_REF)
    x_rec, y_rec = sea(3, seed + 100, N_RECENT)
    result = region_shift(x_ref, y_ref, x_rec, y_rec, "classification")
    total = x_ref[:, 0] + x_ref[:, 1]
    band = (total > 8) & (total <= 9.5)
    assert result.mask[band].mean() >= 0.55, result.summary
    assert result.mask[~band].mean() <= 0.13, result.summary


@pytest.mark.parametrize("seed", SEEDS)
def test_stagger_rule_change_excludes_exactly_the_contradicted_cells(seed):
    """STAGGER's categorical rule 0 → 1 (one-hot inputs): the cells whose label changed go,
    the others stay."""
    ref, y_ref = take(synth.STAGGER(classification_function=0, seed=seed), N_REF)
    rec, y_rec = take(synth.STAGGER(classification_function=1, seed=seed + 100), N_RECENT)
    x_ref, x_rec = onehot_stagger(ref), onehot_stagger(rec)
    result = region_shift(x_ref, y_ref, x_rec, y_rec, "classification")
    differ = stagger(0, ref) != stagger(1, ref)
    assert result.mask[differ].mean() >= 0.95, result.summary
    assert result.mask[~differ].mean() <= 0.05, result.summary


def onehot_stagger(raw: np.ndarray) -> np.ndarray:
    return np.column_stack([(raw[:, i : i + 1] == np.arange(3)) for i in range(3)]).astype(float)


def stagger(function: int, raw: np.ndarray) -> np.ndarray:
    """River's own STAGGER rule on (color, shape, size), the sorted keys of its rows."""
    rule = [
        synth.STAGGER._classification_function_zero,
        synth.STAGGER._classification_function_one,
        synth.STAGGER._classification_function_two,
    ][function]
    return np.array([rule(size, color, shape) for color, shape, size in raw])


# --- (3) recent traffic covers only part of the space, same rule there -----------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_passing_subpopulation_excludes_nothing_and_guards_the_rest(seed):
    """Recent rows from x0 < 3 and x1 < 5 only (15 % of the space), same rule: nothing excluded,
    and at least 70 % of the reference (what it does not reach) stays guarded."""
    x_ref, y_ref = sea(0, seed, N_REF)
    x_new, y_new = sea(0, seed + 100, 8 * N_RECENT)
    inside = (x_new[:, 0] < 3) & (x_new[:, 1] < 5)
    x_rec, y_rec = split(x_new, y_new, inside, N_RECENT)
    result = region_shift(x_ref, y_ref, x_rec, y_rec, "classification")
    assert result.excluded_share <= 0.02, result.summary
    assert result.reached_share <= 0.30, result.summary
    assert "stays guarded" in result.summary


# --- (4) a sub-population whose rule differs only there --------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_rule_change_in_a_subpopulation_stays_where_it_reaches(seed):
    """Recent rows only from x0 < 4, their labels reversed there: ≥ 85 % of the reference in
    x0 < 3.5 excluded, ≤ 5 % of the reference in x0 > 4.5, and nothing in unreached regions."""
    x_ref, y_ref = sea(0, seed, N_REF)
    x_new, y_new = sea(0, seed + 100, 8 * N_RECENT)
    x_rec, y_rec = split(x_new, y_new, x_new[:, 0] < 4, N_RECENT)
    result = region_shift(x_ref, y_ref, x_rec, 1 - y_rec, "classification")
    assert result.mask[x_ref[:, 0] < 3.5].mean() >= 0.85, result.summary
    assert result.mask[x_ref[:, 0] > 4.5].mean() <= 0.05, result.summary
    assert all(row.reached for row in result.regions if row.excluded)
    assert result.excluded_share <= result.reached_share


@pytest.mark.parametrize("seed", SEEDS)
def test_sine_rule_change_in_a_subpopulation_stays_where_it_reaches(seed):
    """Sine: recent rows only where x1 > 0.6 follow SINE2 there: ≥ 75 % of the contradicted
    reference rows with x1 > 0.65 excluded, ≤ 5 % of the reference below x1 = 0.55."""
    x_ref, y_ref = sine(0, seed, N_REF)
    x_new, y_new = sine(2, seed + 100, 4 * N_RECENT)
    x_rec, y_rec = split(x_new, y_new, x_new[:, 1] > 0.6, N_RECENT)
    result = region_shift(x_ref, y_ref, x_rec, y_rec, "classification")
    differ = sine_label(0, x_ref) != sine_label(2, x_ref)
    assert result.mask[differ & (x_ref[:, 1] > 0.65)].mean() >= 0.75, result.summary
    assert result.mask[x_ref[:, 1] < 0.55].mean() <= 0.05, result.summary


# --- (5) regression ---------------------------------------------------------------------------


@cache
def friedman_inputs(seed: int, n: int) -> np.ndarray:
    return take(synth.Friedman(seed=seed), n)[0]


def linear(x: np.ndarray, seed: int, changed: bool) -> np.ndarray:
    """y = 3·x0 + 2·x1 + noise (sd 0.2) on Friedman's ten uniform inputs; changed: the slope on
    x1 is −2 where x0 > 0.5."""
    noise = np.random.default_rng(seed).normal(0, 0.2, len(x))
    slope = np.where(changed & (x[:, 0] > 0.5), -2.0, 2.0)
    return 3 * x[:, 0] + slope * x[:, 1] + noise


@pytest.mark.parametrize("seed", SEEDS)
def test_regression_slope_change_in_part_of_the_space(seed):
    """Where x0 > 0.5 the target moves by 4·x1: ≥ 85 % of the rows there with x1 > 0.3 (a move
    of ≥ 6 noise sd) excluded, ≤ 5 % where x0 < 0.4."""
    x_ref = friedman_inputs(seed, N_REF)
    x_rec = friedman_inputs(seed + 100, N_RECENT)
    y_ref, y_rec = linear(x_ref, seed, False), linear(x_rec, seed + 100, True)
    result = region_shift(x_ref, y_ref, x_rec, y_rec, "regression")
    moved = (x_ref[:, 0] > 0.5) & (x_ref[:, 1] > 0.3)
    assert result.mask[moved].mean() >= 0.85, result.summary
    assert result.mask[x_ref[:, 0] < 0.4].mean() <= 0.05, result.summary
    assert "recent targets differ" in result.summary


@pytest.mark.parametrize("seed", SEEDS)
def test_regression_covariate_shift_excludes_almost_nothing(seed):
    """Same linear rule, recent rows only where x0 < 0.3 and x1 > 0.5: ≤ 2 % excluded."""
    x_ref = friedman_inputs(seed, N_REF)
    x_new = friedman_inputs(seed + 100, 8 * N_RECENT)
    keep = (x_new[:, 0] < 0.3) & (x_new[:, 1] > 0.5)
    x_rec = x_new[keep][:N_RECENT]
    y_ref, y_rec = linear(x_ref, seed, False), linear(x_rec, seed + 100, False)
    result = region_shift(x_ref, y_ref, x_rec, y_rec, "regression")
    assert result.excluded_share <= 0.02, result.summary


def friedman(x: np.ndarray) -> np.ndarray:
    """Friedman's function, River's FriedmanDrift before its change."""
    return (
        10 * np.sin(np.pi * x[:, 0] * x[:, 1])
        + 20 * (x[:, 2] - 0.5) ** 2
        + 10 * x[:, 3]
        + 5 * x[:, 4]
    )


def friedman_lea(x: np.ndarray) -> np.ndarray:
    """After FriedmanDrift's last local change: other functions in two corners (River's source)."""
    r1 = (x[:, 1] < 0.3) & (x[:, 2] < 0.3)
    r2 = (x[:, 1] > 0.7) & (x[:, 2] > 0.7)
    a = 10 * x[:, 0] * x[:, 1] + 20 * (x[:, 2] - 0.5) + 10 * x[:, 3] + 5 * x[:, 4]
    b = 10 * np.cos(x[:, 0] * x[:, 1]) + 20 * (x[:, 2] - 0.5) + np.exp(x[:, 3]) + 5 * x[:, 4] ** 2
    return np.where(r1, a, np.where(r2, b, friedman(x)))


@pytest.mark.parametrize("seed", SEEDS)
def test_friedman_local_drift_is_the_resolution_limit(seed):
    """River's FriedmanDrift ('lea', noise sd 1): after its last change the target differs in two
    corners of ten inputs (x1, x2 < 0.3 and x1, x2 > 0.7); 15 % of the reference moves by more
    than 2. Regions of ~150 reference rows in ten inputs straddle those corners: measured 45–61 %
    of the moved rows excluded, and 17–25 % of the rows well away from the corners (outside
    x1, x2 < 0.4 and x1, x2 > 0.6) with them (25 % since recent-dense regions are split to half,
    not a quarter, of the usual size). The bounds below are today's, not the goal."""
    stream = synth.FriedmanDrift(
        drift_type="lea", position=(N_REF, N_REF + 1, N_REF + 2), seed=seed
    )
    x, y = take(stream, N_REF + 2 + N_RECENT)
    x_ref, y_ref = x[:N_REF].astype(float), y[:N_REF].astype(float)
    x_rec, y_rec = x[N_REF + 2 :].astype(float), y[N_REF + 2 :].astype(float)
    assert np.std(y_rec - friedman_lea(x_rec)) == pytest.approx(1.0, abs=0.1)  # read River right
    result = region_shift(x_ref, y_ref, x_rec, y_rec, "regression")
    moved = np.abs(friedman_lea(x_ref) - friedman(x_ref)) > 2
    near = ((x_ref[:, 1] < 0.4) & (x_ref[:, 2] < 0.4)) | ((x_ref[:, 1] > 0.6) & (x_ref[:, 2] > 0.6))
    assert result.mask[moved].mean() >= 0.40, result.summary
    assert result.mask[~near].mean() <= 0.27, result.summary


@pytest.mark.parametrize("seed", SEEDS)
def test_refining_places_the_difference_more_finely(seed):
    """refine=3 halves differing regions and keeps halves that test alike guarded. SINE1 → SINE2:
    ≤ 7 % of the unchanged rows excluded (11–12 % without) and ≥ 80 % of the changed ones still;
    labels reversed everywhere: still ≥ 85 % excluded (93–95 % without)."""
    x_ref, y_ref = sine(0, seed, N_REF)
    x_rec, y_rec = sine(2, seed + 100, N_RECENT)
    result = region_shift(x_ref, y_ref, x_rec, y_rec, "classification", refine=3)
    differ = sine_label(0, x_ref) != sine_label(2, x_ref)
    assert result.mask[~differ].mean() <= 0.07, result.summary
    assert result.mask[differ].mean() >= 0.80, result.summary
    x_sea, y_sea = sea(0, seed, N_REF)
    x_new, y_new = sea(0, seed + 100, N_RECENT)
    reversed_ = region_shift(x_sea, y_sea, x_new, 1 - y_new, "classification", refine=3)
    assert reversed_.excluded_share >= 0.85, reversed_.summary
    excluded = [r for r in reversed_.regions if r.excluded]
    assert all(r.excluded_rows <= r.reference_near for r in excluded)
    assert sum(r.excluded_rows for r in excluded) == reversed_.excluded_rows


# --- (6) tiny and odd inputs ------------------------------------------------------------------


def test_no_recent_rows_keeps_everything_guarded():
    x_ref, y_ref = sea(0, 1, 2_000)
    result = region_shift(x_ref, y_ref, np.empty((0, 3)), np.empty(0), "classification")
    assert not result.mask.any() and result.mask.shape == (2_000,)
    assert result.reached_share == 0.0 and result.tested_regions == 0
    assert result.summary.startswith("excluded 0 of 2,000 reference rows (0.0%)")
    assert "100% of the reference lies where recent traffic does not reach" in result.summary


def test_empty_and_single_reference():
    empty = region_shift(np.empty((0, 3)), np.empty(0), np.ones((5, 3)), np.ones(5), "regression")
    assert empty.mask.shape == (0,) and empty.excluded_share == 0.0
    one = region_shift(np.ones((1, 3)), [1], np.ones((5, 3)), [0] * 5, "classification")
    assert one.mask.tolist() == [False]


def test_one_class_only_on_both_sides_excludes_nothing():
    x_ref, _ = sea(0, 1, 4_000)
    x_rec, _ = sea(0, 2, 1_000)
    result = region_shift(x_ref, np.ones(4_000), x_rec, np.ones(1_000), "classification")
    assert not result.mask.any()
    assert all(np.isnan(r.p_value) or r.p_value == 1.0 for r in result.regions)


def test_a_class_the_reference_never_had_is_a_difference():
    """String labels; recent rows all carry a label unseen in the reference."""
    x_ref, _ = sea(0, 1, 4_000)
    x_rec, _ = sea(0, 2, 1_000)
    result = region_shift(
        x_ref, np.array(["a"] * 4_000), x_rec, np.array(["b"] * 1_000), "classification"
    )
    assert result.excluded_share >= 0.8
    assert result.excluded_share == result.reached_share


def test_constant_and_duplicate_columns_are_harmless():
    x_ref, y_ref = sea(0, 1, 4_000)
    x_rec, y_rec = sea(0, 2, 1_000)
    pad = np.column_stack
    result = region_shift(
        pad([x_ref, np.full(4_000, 7.0), x_ref[:, 0]]),
        y_ref,
        pad([x_rec, np.full(1_000, 7.0), x_rec[:, 0]]),
        y_rec,
        "classification",
    )
    assert result.excluded_share <= 0.02
    assert result.reached_share >= 0.7  # 1,000 recent rows: some regions get fewer than 10


def test_constant_target_regression():
    x_ref, x_rec = friedman_inputs(1, 2_000), friedman_inputs(2, 500)
    same = region_shift(x_ref, np.ones(2_000), x_rec, np.ones(500), "regression")
    moved = region_shift(x_ref, np.ones(2_000), x_rec, np.full(500, 2.0), "regression")
    assert same.excluded_share == 0.0
    assert moved.tested_regions > 0 and moved.excluded_regions == moved.tested_regions
    assert moved.excluded_rows == sum(r.reference_near for r in moved.regions if r.tested)


def test_too_few_recent_rows_to_test_stay_guarded():
    x_ref, y_ref = sea(0, 1, 4_000)
    x_rec, y_rec = sea(0, 2, 9)
    result = region_shift(x_ref, y_ref, x_rec, 1 - y_rec, "classification")
    assert not result.mask.any() and result.tested_regions == 0


def test_non_finite_inputs_are_refused():
    with pytest.raises(ValueError, match="finite"):
        region_shift(np.array([[np.nan]]), [0], np.zeros((1, 1)), [0], "classification")
    with pytest.raises(ValueError, match="one label per input row"):
        region_shift(np.zeros((3, 1)), [0, 1], np.zeros((1, 1)), [0], "classification")


# --- the result and its parts ------------------------------------------------------------------


def test_result_table_and_dict_agree_with_the_mask():
    x_ref, y_ref = sea(0, 1, N_REF)
    x_rec, y_rec = sea(3, 101, N_RECENT)
    result = region_shift(x_ref, y_ref, x_rec, y_rec, "classification")
    excluded = [r for r in result.regions if r.excluded]
    assert sum(r.excluded_rows for r in excluded) == result.excluded_rows == result.mask.sum()
    assert all(r.excluded_rows == r.reference_near <= r.reference_rows for r in excluded)
    assert sum(r.reference_rows for r in result.regions) == N_REF
    assert sum(r.recent_rows for r in result.regions) == N_RECENT
    alone = [r for r in excluded if not r.pooled]
    assert all(r.adjusted_p < 0.01 and r.tested for r in alone)
    assert all(r.reached and r.reference_value - r.recent_value >= 0.1 for r in excluded)
    as_dict = json.loads(json.dumps(result.as_dict()))  # JSON-ready as it is
    assert as_dict["excluded_rows"] == result.excluded_rows
    assert as_dict["excluded_regions"] == len(excluded)
    assert len(as_dict["regions"]) == len(result.regions)
    untested = [r for r in as_dict["regions"] if not r["tested"]]
    assert all(r["p_value"] is None for r in untested)
    assert f"in {len(alone)} of {result.tested_regions} tested regions" in result.summary


def test_same_seed_same_answer():
    x_ref, y_ref = sea(0, 1, 4_000)
    x_rec, y_rec = sea(3, 2, 1_000)
    a = region_shift(x_ref, y_ref, x_rec, y_rec, "classification", seed=5)
    b = region_shift(x_ref, y_ref, x_rec, y_rec, "classification", seed=5)
    assert np.array_equal(a.mask, b.mask)


def test_fisher_p_matches_scipy():
    rng = np.random.default_rng(0)
    for _ in range(300):
        n_a, n_b = (int(v) for v in rng.integers(1, 200, 2))
        k_a, k_b = int(rng.integers(0, n_a + 1)), int(rng.integers(0, n_b + 1))
        want = stats.fisher_exact([[k_a, n_a - k_a], [k_b, n_b - k_b]])[1]
        assert fisher_p(k_a, n_a, k_b, n_b) == pytest.approx(want, rel=1e-9, abs=1e-300)


def test_adjusted_p_values():
    p = np.array([0.01, 0.04, 0.03, 0.005])
    assert adjust_p(p, "bh") == pytest.approx([0.02, 0.04, 0.04, 0.02])
    assert adjust_p(p, "holm") == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert adjust_p(np.array([]), "bh").shape == (0,)


def test_runtime_20k_reference_5k_recent_20_inputs():
    """Under a second on one core for 20k × 5k × 20 (asserted at 3 s: the CI host is shared)."""
    x, y = take(synth.Hyperplane(seed=1, n_features=20), N_REF + N_RECENT)
    region_shift(x[:2_000], y[:2_000], x[-500:], y[-500:], "classification")  # warm imports
    start = time.perf_counter()
    region_shift(x[:N_REF], y[:N_REF], x[N_REF:], y[N_REF:], "classification")
    assert time.perf_counter() - start < 3.0


def test_few_recent_rows_in_one_corner_leave_the_rest_guarded():
    """40 recent rows, all in one corner (x1 < 2.5) and all with reversed labels: regions grow
    with few recent rows, but hold an eighth of the reference at most, so the rows far from
    that corner stay guarded (one region of everything once excluded all of it)."""
    x_ref, y_ref = sea(0, 1, 4_000)
    x_rec, y_rec = sea(0, 2, 4_000)
    corner = x_rec[:, 0] < 2.5
    x_rec, y_rec = x_rec[corner][:40], 1 - y_rec[corner][:40]
    result = region_shift(x_ref, y_ref, x_rec, y_rec, "classification", min_reference_rows=3)
    assert len(result.regions) >= 4  # regions of an eighth at most (splits land where they can)
    far = x_ref[:, 0] > 5.0
    assert result.mask[far].mean() <= 0.05, result.summary
