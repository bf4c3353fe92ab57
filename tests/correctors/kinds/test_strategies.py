"""Each kind's strategies on a multiclass and a regression task whose rule changed in one
region: every strategy trains, and the best beats the champion on fresh rows of the new rule
while holding the old rule elsewhere (the gate itself is exercised in test_kind_corrections)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from correctors.kinds import adapter_for
from correctors.settings import CorrectionConfig
from correctors.training.dataset import Prepared

WIDTH = 5


def rule(x: np.ndarray, task: str, new: bool) -> np.ndarray:
    """Old rule everywhere; the new one differs where x0 > 0.5."""
    score = x[:, 1] + 0.5 * x[:, 2]
    if new:
        score = np.where(x[:, 0] > 0.5, -score, score)
    if task == "regression":
        return (2.0 * score + 1.0).astype(np.float32)
    return np.digitize(score, [-0.6, 0.6]).astype(np.int64)


def rows(n: int, seed: int, task: str, new: bool) -> tuple[np.ndarray, np.ndarray]:
    x = np.random.default_rng(seed).normal(size=(n, WIDTH)).astype(np.float32)
    return x, rule(x, task, new)


def champion(kind: str, task: str, x: np.ndarray, y: np.ndarray):
    if kind == "sklearn":
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler
        from sklearn.svm import SVC, SVR

        final = SVR() if task == "regression" else SVC(probability=True, random_state=0)
        return make_pipeline(StandardScaler(), final).fit(x, y)
    if kind == "lightgbm":
        import lightgbm as lgb

        params = (
            {"objective": "regression"}
            if task == "regression"
            else {"objective": "multiclass", "num_class": 3}
        )
        return lgb.train({**params, "verbose": -1, "seed": 0}, lgb.Dataset(x, y), 80)
    import xgboost as xgb

    params = (
        {"objective": "reg:squarederror"}
        if task == "regression"
        else {"objective": "multi:softprob", "num_class": 3}
    )
    return xgb.train({**params, "max_depth": 4, "seed": 0}, xgb.DMatrix(x, y), 80)


def prepared(task: str) -> Prepared:
    """Recent rows of the new rule, replayed reference rows outside the changed region."""
    x_win, y_win = rows(1200, 1, task, new=True)
    x_ref, y_ref = rows(2000, 2, task, new=False)
    outside = x_ref[:, 0] <= 0.5
    train_x = np.concatenate([x_win, x_ref[outside][:1200]])
    train_y = np.concatenate([y_win, y_ref[outside][:1200]])
    retrain_x = np.concatenate([x_win, x_ref[outside]])
    retrain_y = np.concatenate([y_win, y_ref[outside]])
    return Prepared(
        x_win,
        y_win,
        x_ref,
        y_ref,
        train_x,
        train_y,
        [],
        {},
        {"recent_train_rows": len(y_win)},
        (0, 0),
        retrain_x,
        retrain_y,
        [],
    )


def quality(scores: np.ndarray, y: np.ndarray, task: str) -> float:
    if task == "regression":
        return -float(np.abs(scores[:, 0] - y).mean())
    return float((scores.argmax(axis=1) == y).mean())


@pytest.mark.parametrize("task", ["classification", "regression"])
@pytest.mark.parametrize("kind", ["sklearn", "lightgbm", "xgboost"])
def test_strategies_learn_the_new_rule_and_keep_the_old_one(kind, task):
    adapter = adapter_for(kind)
    x_old, y_old = rows(3000, 0, task, new=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        model = champion(kind, task, x_old, y_old)
        trained, failures = adapter.train(model, prepared(task), CorrectionConfig(), task)
    assert not failures, failures
    x_new, y_new = rows(2000, 9, task, new=True)
    changed = x_new[:, 0] > 0.5
    before = quality(adapter.scores(model, x_new, task), y_new, task)
    outside_before = quality(adapter.scores(model, x_new[~changed], task), y_new[~changed], task)
    best = max(trained, key=lambda t: quality(t.outputs(x_new), y_new, task))  # type: ignore[misc]
    assert best.outputs is not None
    after = quality(best.outputs(x_new), y_new, task)
    outside_after = quality(best.outputs(x_new[~changed]), y_new[~changed], task)
    margin = 0.1 if task == "regression" else 0.05
    assert after > before + margin, (best.label, before, after)
    kept = 0.15 if task == "regression" else 0.03
    assert outside_after >= outside_before - kept, (best.label, outside_before, outside_after)
    for item in trained:
        assert item.summary["rows"] > 0 and item.summary["seconds"] >= 0
