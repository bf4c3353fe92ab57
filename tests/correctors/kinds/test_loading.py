"""Loading a model of each kind from its file, and refusing what must not load, in one line
naming the config key: an untrusted type in a skops file, a pickle (never unpickled), a model
whose inputs are not the configured features."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from correctors.models.preflight import check_model
from correctors.settings import ModelDefinition

FEATURES = ["a", "b", "c"]


class Halves(ClassifierMixin, BaseEstimator):
    """A user's own estimator: a type skops does not trust by default."""

    def fit(self, x, y):
        self.classes_ = np.unique(y)
        self.n_features_in_ = x.shape[1]
        return self

    def predict_proba(self, x):
        return np.full((len(x), len(self.classes_)), 1.0 / len(self.classes_))


class Touches:
    """Unpickling this creates `path`: proof of whether anything was unpickled."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def rows(n: int = 300, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(n, 3)), columns=FEATURES)
    frame["label"] = (frame["a"] + frame["b"] > 0).astype(int)
    return frame


def definition(tmp_path: Path, kind: str, weights: Path, **extra) -> ModelDefinition:
    rows().to_csv(tmp_path / "reference.csv", index=False)
    return ModelDefinition(
        kind=kind,  # type: ignore[arg-type]
        weights=weights,
        reference=tmp_path / "reference.csv",
        numeric_features=extra.pop("features", FEATURES),
        encoding="raw",
        **extra,
    )


def lines(d: ModelDefinition) -> list[str]:
    return [p.line("m") for p in check_model("m", d, needs_weights=True)]


def test_a_skops_pipeline_loads_and_answers(tmp_path):
    frame = rows(seed=1)
    pipe = make_pipeline(StandardScaler(), LogisticRegression()).fit(frame[FEATURES], frame.label)
    sio.dump(pipe, tmp_path / "model.skops")
    assert lines(definition(tmp_path, "sklearn", tmp_path / "model.skops")) == []


def test_an_untrusted_type_is_refused_naming_it_and_the_key(tmp_path):
    frame = rows(seed=1)
    sio.dump(Halves().fit(frame[FEATURES].to_numpy(), frame.label), tmp_path / "model.skops")
    found = lines(definition(tmp_path, "sklearn", tmp_path / "model.skops"))
    assert len(found) == 1 and "\n" not in found[0]
    assert found[0].startswith("models.m.trusted_types: ")
    assert f"{__name__}.Halves" in found[0]
    trusted = [f"{__name__}.Halves"]
    d = definition(tmp_path, "sklearn", tmp_path / "model.skops", trusted_types=trusted)
    assert lines(d) == []


@pytest.mark.parametrize(
    ("kind", "name"),
    [
        ("sklearn", "model.skops"),
        ("sklearn", "model.pkl"),
        ("lightgbm", "model.txt"),
        ("xgboost", "model.json"),
    ],
)
def test_a_pickle_is_refused_and_never_unpickled(tmp_path, kind, name):
    marker = tmp_path / "unpickled"
    (tmp_path / name).write_bytes(pickle.dumps(Touches(marker)))
    found = lines(definition(tmp_path, kind, tmp_path / name))
    assert len(found) == 1 and found[0].startswith("models.m.weights: "), found
    assert "pickle" in found[0] or "never unpickles" in found[0]
    assert not marker.exists()


def test_inputs_that_are_not_the_configured_features_are_refused(tmp_path):
    frame = rows(seed=1)
    pipe = make_pipeline(StandardScaler(), LogisticRegression()).fit(frame[FEATURES], frame.label)
    sio.dump(pipe, tmp_path / "model.skops")
    found = lines(definition(tmp_path, "sklearn", tmp_path / "model.skops", features=["a", "b"]))
    assert len(found) == 1 and found[0].startswith("models.m.numeric_features: "), found
    assert "'c'" in found[0]  # the column the model was fitted on and the config lacks


def test_boosters_load_from_their_native_files_and_other_files_are_refused(tmp_path):
    import lightgbm as lgb
    import xgboost as xgb

    frame = rows(seed=1)
    x, y = frame[FEATURES].to_numpy(), frame.label.to_numpy()
    lgb.train({"objective": "binary", "verbose": -1}, lgb.Dataset(x, y), 10).save_model(
        str(tmp_path / "model.txt")
    )
    assert lines(definition(tmp_path, "lightgbm", tmp_path / "model.txt")) == []
    xgb.train({"objective": "binary:logistic"}, xgb.DMatrix(x, y), 10).save_model(
        str(tmp_path / "model.json")
    )
    assert lines(definition(tmp_path, "xgboost", tmp_path / "model.json")) == []
    softmax = xgb.train({"objective": "multi:softmax", "num_class": 2}, xgb.DMatrix(x, y), 5)
    softmax.save_model(str(tmp_path / "softmax.json"))
    found = lines(definition(tmp_path, "xgboost", tmp_path / "softmax.json"))
    assert len(found) == 1 and "multi:softmax" in found[0], found
    (tmp_path / "garbage.txt").write_text("not a model\n")
    found = lines(definition(tmp_path, "lightgbm", tmp_path / "garbage.txt"))
    assert len(found) == 1 and found[0].startswith("models.m.weights: "), found


def test_a_torch_model_still_needs_its_factory_and_other_kinds_refuse_one(tmp_path):
    from pydantic import ValidationError

    rows().to_csv(tmp_path / "reference.csv", index=False)
    with pytest.raises(ValidationError, match="factory is required"):
        ModelDefinition(reference=tmp_path / "reference.csv", numeric_features=FEATURES)
    with pytest.raises(ValidationError, match="factory is for kind"):
        ModelDefinition(
            kind="sklearn",
            factory="correctors.zoo:mlp_classifier",
            reference=tmp_path / "reference.csv",
            numeric_features=FEATURES,
        )
