"""The demo's first model of each kind, trained on encoded rows and saved as a user would save
it (a state dict, a skops file, a booster's native file), with the config lines that load it.

- `mlp`: the built-in torch MLP (`correctors.zoo:mlp_classifier`);
- `svc`: a scikit-learn `Pipeline(StandardScaler(), SVC(probability=True))`;
- `lightgbm`: a LightGBM booster, 100 rounds;
- `xgboost`: an XGBoost booster, 100 rounds (`binary:logistic` or `multi:softprob`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from correctors.kinds import adapter_for
from correctors.models.first_version import train_first_version
from correctors.zoo import mlp_classifier

DEMO_MODELS = ("mlp", "svc", "lightgbm", "xgboost")
KIND_OF = {"mlp": "torch", "svc": "sklearn", "lightgbm": "lightgbm", "xgboost": "xgboost"}
ROUNDS = 100


def train_first_model(model: str, folder: Path, x: np.ndarray, y: np.ndarray) -> str:
    """Train `model` on encoded rows `x` and class indices `y`, save it in `folder`; returns
    the config lines (`kind`, `factory`, `weights`) that load it."""
    n_classes = int(y.max()) + 1
    if model == "mlp":
        train_first_version(
            lambda: mlp_classifier(x.shape[1], n_classes),
            x,
            y,
            epochs=40,
            patience=5,
            weights=folder / "initial-weights.pt",
        )
        return (
            'factory = "correctors.zoo:mlp_classifier"\n'
            f"factory_kwargs = {{ n_inputs = {x.shape[1]}, n_classes = {n_classes} }}\n"
            'weights = "initial-weights.pt"'
        )
    adapter = adapter_for(KIND_OF[model])
    fitted = _fit(model, x, y, n_classes)
    adapter.save(fitted, folder / adapter.file_name)
    return f'kind = "{adapter.kind}"\nweights = "{adapter.file_name}"'


def _fit(model: str, x: np.ndarray, y: np.ndarray, n_classes: int):
    if model == "svc":
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler
        from sklearn.svm import SVC

        return make_pipeline(StandardScaler(), SVC(probability=True, random_state=0)).fit(x, y)
    if model == "lightgbm":
        import lightgbm as lgb

        params: dict = {"objective": "binary", "verbose": -1, "num_threads": 1, "seed": 0}
        if n_classes > 2:
            params = {**params, "objective": "multiclass", "num_class": n_classes}
        return lgb.train(params, lgb.Dataset(x, y), num_boost_round=ROUNDS)
    if model == "xgboost":
        import xgboost as xgb

        objective = {"objective": "binary:logistic"}
        if n_classes > 2:
            objective = {"objective": "multi:softprob", "num_class": n_classes}  # type: ignore[dict-item]
        params = {**objective, "nthread": 1, "seed": 0, "max_depth": 4}
        return xgb.train(params, xgb.DMatrix(x, y), num_boost_round=ROUNDS)
    raise ValueError(f"unknown demo model {model!r}: expected one of {list(DEMO_MODELS)}")
