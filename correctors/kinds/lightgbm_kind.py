"""LightGBM boosters from their native text model (`booster.save_model('model.txt')`),
exported with onnxmltools (`convert_lightgbm`, no ZipMap).

LightGBM compares features with its split thresholds in double precision; the ONNX tree
ensemble compares the float32 input with float32 thresholds. A row whose value lies between a
threshold and its float32 rounding goes the other way in ONNX: on the demo's data 2 rows in
2,000 differed by 0.036 in probability. Every numerical threshold is therefore rounded to
float32 when a booster is loaded or trained (`float32_thresholds`): the native model and its
ONNX file then take the same branch on every float32 input, which is all serving sends."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from correctors.kinds.base import KindLoadError, refuse_pickle
from correctors.kinds.boosting import EARLY_STOPPING_ROUNDS, BoosterAdapter
from correctors.kinds.rows import Rows

if TYPE_CHECKING:
    import onnx

# the champion's settings carried into a continuation or a refit; the rest are defaults
KEPT = (
    "learning_rate",
    "num_leaves",
    "max_depth",
    "min_data_in_leaf",
    "min_sum_hessian_in_leaf",
    "feature_fraction",
    "bagging_fraction",
    "bagging_freq",
    "lambda_l1",
    "lambda_l2",
)


class LightgbmAdapter(BoosterAdapter):
    kind = "lightgbm"
    file_name = "model.txt"
    save_hint = "booster.save_model('model.txt') (model.booster_ for an LGBMClassifier)"

    def load(self, path: Path, trusted: Sequence[str] = ()) -> Any:
        import lightgbm as lgb

        refuse_pickle(path)
        try:
            return float32_thresholds(lgb.Booster(model_file=str(path)))
        except Exception as exc:  # noqa: BLE001 - any failure is a load error to report
            raise KindLoadError(
                f"cannot load a LightGBM text model from {path} ({type(exc).__name__}: "
                f"{' '.join(str(exc).split())}); save it with {self.save_hint}",
                "weights",
            ) from exc

    def save(self, model: Any, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        model.save_model(str(path))

    def raw_predict(self, model: Any, x: np.ndarray) -> np.ndarray:
        return np.asarray(model.predict(x))

    def n_features(self, model: Any) -> int | None:
        return int(model.num_feature())

    def n_classes(self, model: Any, task: str) -> int:
        if task == "regression":
            return 0
        per_round = int(model.num_model_per_iteration())
        return 2 if per_round == 1 else per_round

    def onnx_graph(self, model: Any, width: int, task: str) -> onnx.ModelProto:
        import onnxmltools
        from onnxmltools.convert.common.data_types import FloatTensorType

        return onnxmltools.convert_lightgbm(
            model, initial_types=[("features", FloatTensorType([None, width]))], zipmap=False
        )

    def params(self, model: Any, task: str, n_classes: int, seed: int) -> dict:
        loaded = dict(model.params or {})
        params = {k: loaded[k] for k in KEPT if k in loaded}
        if task == "regression":
            objective: dict = {"objective": loaded.get("objective", "regression")}
        elif n_classes > 2:
            objective = {"objective": "multiclass", "num_class": n_classes}
        else:
            objective = {"objective": "binary"}
        return {
            **params,
            **objective,
            "verbose": -1,
            "num_threads": 1,
            "seed": seed,
            "deterministic": True,
        }

    def boost(
        self, params: dict, fit: Rows, val: Rows, rounds: int, init: Any | None
    ) -> tuple[Any, int]:
        import lightgbm as lgb

        train_set = lgb.Dataset(fit.x, fit.y, weight=fit.w, free_raw_data=False)
        valid = lgb.Dataset(val.x, val.y, weight=val.w, reference=train_set)
        booster = lgb.train(
            params,
            train_set,
            num_boost_round=rounds,
            init_model=init,
            valid_sets=[valid],
            callbacks=[lgb.early_stopping(EARLY_STOPPING_ROUNDS, verbose=False)],
        )
        best = int(booster.best_iteration or booster.current_iteration())
        cut = lgb.Booster(model_str=booster.model_to_string(num_iteration=best))
        return float32_thresholds(cut), best


def float32_thresholds(booster: Any) -> Any:
    """The booster with each numerical split threshold rounded to float32 (unchanged when it
    has categorical splits, whose thresholds are indices)."""
    import lightgbm as lgb

    text = booster.model_to_string()
    if "cat_boundaries=" in text:
        return booster
    lines = [
        "threshold=" + " ".join(repr(float(np.float32(v))) for v in line[10:].split())
        if line.startswith("threshold=")
        else line
        for line in text.split("\n")
        if not line.startswith("tree_sizes=")  # byte counts the new text no longer has
    ]
    return lgb.Booster(model_str="\n".join(lines))
