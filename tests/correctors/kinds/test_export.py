"""Each kind, each task (binary, multiclass, regression): the model saved and loaded back answers
the same, its ONNX file has the served layout (input `features`, one output), and onnxruntime
matches the native model on real rows: labels equal, probabilities within 1e-5 (regression
values within 1e-5 of their magnitude: the ONNX graph computes in float32)."""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import pytest

from correctors.kinds import adapter_for
from correctors.models.encoding import FeatureEncoder
from watcher.demo.credit import CATEGORICAL, NORMAL, NUMERIC, SHIFTED, generate

TASKS = ("binary", "multiclass", "regression")


def real_rows(seed: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Encoded demo credit rows (normal and shifted) and a target per task."""
    frame = generate(1500, NORMAL, seed=seed)
    frame = frame._append(generate(500, SHIFTED, seed=seed + 1), ignore_index=True)
    encoder = FeatureEncoder.fit(generate(2000, NORMAL, seed=0), NUMERIC, CATEGORICAL)
    x = encoder.transform(frame)
    targets = {
        "binary": frame["label"].to_numpy().astype(np.int64),
        "multiclass": np.digitize(x[:, 0] + x[:, 2], [-0.5, 0.5]).astype(np.int64),
        "regression": (x[:, 0] * 2.0 - x[:, 1] + 0.5 * x[:, 2] ** 2).astype(np.float32),
    }
    return x, targets


def fit(kind: str, task: str, x: np.ndarray, y: np.ndarray):
    if kind == "sklearn":
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler
        from sklearn.svm import SVC, SVR

        final = {
            "binary": SVC(probability=True, random_state=0),
            "multiclass": LogisticRegression(max_iter=500),
            "regression": SVR(),
        }[task]
        return make_pipeline(StandardScaler(), final).fit(x, y)
    if kind == "lightgbm":
        import lightgbm as lgb

        params = {
            "binary": {"objective": "binary"},
            "regression": {"objective": "regression"},
            "multiclass": {"objective": "multiclass", "num_class": 3},
        }[task]
        booster = lgb.train({**params, "verbose": -1}, lgb.Dataset(x, y), 60)
        return booster
    import xgboost as xgb

    params = {
        "binary": {"objective": "binary:logistic"},
        "regression": {"objective": "reg:squarederror"},
        "multiclass": {"objective": "multi:softprob", "num_class": 3},
    }[task]
    return xgb.train({**params, "max_depth": 4}, xgb.DMatrix(x, y), 60)


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("kind", ["sklearn", "lightgbm", "xgboost"])
def test_export_and_parity_on_real_rows(tmp_path, kind, task):
    x, targets = real_rows(seed=5)
    served_task = "regression" if task == "regression" else "classification"
    adapter = adapter_for(kind)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # SVC(probability=True) in 1.9
        model = fit(kind, task, x, targets[task])
    adapter.save(model, tmp_path / adapter.file_name)
    loaded = adapter.load(tmp_path / adapter.file_name, [])
    if kind != "lightgbm":  # LightGBM's thresholds are rounded to float32 on load, by design
        np.testing.assert_array_equal(
            adapter.scores(loaded, x, served_task), adapter.scores(model, x, served_task)
        )
    path = adapter.export(loaded, x.shape[1], tmp_path / "model.onnx", served_task)
    graph = onnx.load(str(path)).graph
    assert [i.name for i in graph.input] == ["features"]
    assert [o.name for o in graph.output] == ["probabilities"]
    check = adapter.parity(loaded, path, x, served_task)
    assert check.rows == len(x)
    # float32 arithmetic in ONNX: a regression value of magnitude m is exact to ~m × 1e-6
    scale = max(1.0, float(np.abs(adapter.scores(loaded, x, served_task)).max()))
    assert check.max_abs_diff < 1e-5 * (scale if task == "regression" else 1.0), check
    assert check.label_mismatches == 0
    width = {"binary": 2, "multiclass": 3, "regression": 1}[task]
    assert adapter.scores(loaded, x[:3], served_task).shape == (3, width)
