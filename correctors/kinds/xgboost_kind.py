"""XGBoost boosters from their native JSON or UBJ file (`booster.save_model('model.json')`),
exported with onnxmltools (`convert_xgboost`). Classifiers must return probabilities
(`binary:logistic`, `multi:softprob`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from correctors.kinds.base import KindLoadError, refuse_pickle
from correctors.kinds.boosting import EARLY_STOPPING_ROUNDS, BoosterAdapter
from correctors.kinds.rows import Rows

if TYPE_CHECKING:
    import onnx

SUFFIXES = (".json", ".ubj")
PROBABILITY_OBJECTIVES = ("binary:logistic", "multi:softprob")
INTEGERS = ("max_depth", "max_bin")
KEPT = (
    "eta",
    "max_depth",
    "min_child_weight",
    "subsample",
    "colsample_bytree",
    "lambda",
    "alpha",
    "gamma",
    "max_bin",
)


def learner(model: Any) -> dict:
    return json.loads(model.save_config())["learner"]


class XgboostAdapter(BoosterAdapter):
    kind = "xgboost"
    file_name = "model.json"
    save_hint = "booster.save_model('model.json') (model.get_booster() for an XGBClassifier)"

    def load(self, path: Path, trusted: Sequence[str] = ()) -> Any:
        import xgboost as xgb

        refuse_pickle(path)
        if path.suffix.lower() not in SUFFIXES:
            raise KindLoadError(
                f"{path}: XGBoost models are read from their native JSON or UBJ file; save it "
                f"with {self.save_hint}",
                "weights",
            )
        try:
            booster = xgb.Booster(model_file=str(path))
        except Exception as exc:  # noqa: BLE001 - any failure is a load error to report
            raise KindLoadError(
                f"cannot load an XGBoost model from {path}: {' '.join(str(exc).split())[:300]}",
                "weights",
            ) from exc
        objective = learner(booster)["objective"]["name"]
        if not objective.startswith("reg:") and objective not in PROBABILITY_OBJECTIVES:
            raise KindLoadError(
                f"{path} was trained with objective {objective!r}, which returns no "
                f"probabilities: train it with one of {list(PROBABILITY_OBJECTIVES)}",
                "weights",
            )
        return booster

    def save(self, model: Any, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        model.save_model(str(path))

    def raw_predict(self, model: Any, x: np.ndarray) -> np.ndarray:
        import xgboost as xgb

        return np.asarray(model.predict(xgb.DMatrix(x)))

    def n_features(self, model: Any) -> int | None:
        return int(model.num_features())

    def n_classes(self, model: Any, task: str) -> int:
        if task == "regression":
            return 0
        declared = int(learner(model)["learner_model_param"].get("num_class", "0"))
        return declared if declared > 1 else 2

    def onnx_graph(self, model: Any, width: int, task: str) -> onnx.ModelProto:
        import onnxmltools
        from onnxmltools.convert.common.data_types import FloatTensorType

        return onnxmltools.convert_xgboost(
            model, initial_types=[("features", FloatTensorType([None, width]))]
        )

    def params(self, model: Any, task: str, n_classes: int, seed: int) -> dict:
        found = learner(model)
        trees = found["gradient_booster"].get("tree_train_param", {})
        params: dict = {k: float(trees[k]) for k in KEPT if k in trees}
        for name in INTEGERS:
            if name in params:
                params[name] = int(params[name])
        objective = found["objective"]["name"]
        if n_classes > 2:
            params["num_class"] = n_classes
        return {**params, "objective": objective, "nthread": 1, "seed": seed}

    def boost(
        self, params: dict, fit: Rows, val: Rows, rounds: int, init: Any | None
    ) -> tuple[Any, int]:
        import xgboost as xgb

        booster = xgb.train(
            params,
            xgb.DMatrix(fit.x, fit.y, weight=fit.w),
            num_boost_round=rounds,
            xgb_model=init,
            evals=[(xgb.DMatrix(val.x, val.y, weight=val.w), "validation")],
            early_stopping_rounds=EARLY_STOPPING_ROUNDS,
            verbose_eval=False,
        )
        best = int(booster.best_iteration) + 1
        return booster[:best], best
