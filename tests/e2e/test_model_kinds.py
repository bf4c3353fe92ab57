"""Each model kind end to end through the real broker: tabular regression (a 1–5 rating) and
text classification (hashed bag of words). Served predictions and delayed labels go through
Kafka into the store; the error check fails on the shifted stream; the correction produces a
validated candidate that does better on the present truth."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sqlalchemy import func, select

from correctors.models.champion import bootstrap
from correctors.models.encoding import FeatureEncoder
from correctors.models.modeling import load_factory
from correctors.models.runtime import OnnxModel
from correctors.pipeline import Attempt, train_candidate
from correctors.settings import CorrectionConfig
from correctors.training.finetune import fine_tune
from storage.db import make_engine
from storage.queries import recent_window
from storage.registry import ModelRegistry
from storage.tables import Prediction
from watcher.checks.checker import ModelChecker
from watcher.config import load_config
from watcher.daemon.service import wait_for
from watcher.demo import ratings, reviews
from watcher.demo.credit import prediction_messages
from watcher.intake.consumer import Ingestor
from watcher.kafka.clients import make_producer
from watcher.kafka.wire import encode


@dataclass
class Kind:
    task: str
    factory: str
    numeric: list[str]
    categorical: list[str]
    text: list[str]
    generate: Callable[[int, bool, int], pd.DataFrame]  # rows, shifted?, seed
    extra: str = ""  # per-model config lines

    def kwargs(self, width: int) -> dict:
        return (
            {"n_inputs": width}
            if self.task == "regression"
            else {"n_inputs": width, "n_classes": 2}
        )

    def targets(self, frame: pd.DataFrame) -> np.ndarray:
        y = frame["label"].to_numpy()
        return y.astype(np.float32) if self.task == "regression" else y.astype(np.int64)


KINDS = {
    "ratings": Kind(
        "regression",
        "correctors.zoo:mlp_regressor",
        ratings.NUMERIC,
        ratings.CATEGORICAL,
        [],
        lambda n, shifted, seed: ratings.generate_ratings(
            n, ratings.RATINGS_SHIFTED if shifted else ratings.RATINGS_NORMAL, seed
        ),
        "forgetting_tolerance = 0.05\n",
    ),
    "reviews": Kind(
        "classification",
        "correctors.zoo:mlp_classifier",
        ["stars_shown"],
        ["channel"],
        ["review"],
        lambda n, shifted, seed: reviews.generate_reviews(
            n, reviews.REVIEWS_SHIFTED if shifted else reviews.REVIEWS_NORMAL, seed
        ),
        # the shifted reviews' new wording contradicts ~5 % of the reference: right at the
        # default shift_min_share, so the region is excluded on some Kafka arrival orders and
        # guarded on others (4.8 % seen); this test is about the kinds, not that cliff
        "forgetting_tolerance = 0.05\n",
    ),
}


def build(folder: Path, name: str, kind: Kind, kafka_cfg) -> Path:
    """Reference set, initial weights trained on other rows, and a config for this model."""
    kind.generate(4000, False, 0).to_csv(folder / "reference.csv", index=False)
    training = kind.generate(4000, False, 100)
    encoder = FeatureEncoder.fit(training, kind.numeric, kind.categorical, kind.text)
    torch.manual_seed(0)
    model = load_factory(kind.factory)(**kind.kwargs(encoder.width))
    settings = CorrectionConfig(epochs=40, patience=5, seed=0, worker=False)
    result = fine_tune(model, encoder.transform(training), kind.targets(training), settings)
    torch.save(result.model.state_dict(), folder / "weights.pt")
    kwargs = ", ".join(f"{k} = {v}" for k, v in kind.kwargs(encoder.width).items())
    config = folder / "warden.toml"
    config.write_text(
        f"""
[kafka]
bootstrap_servers = "{kafka_cfg.bootstrap_servers}"

[storage]
url = "sqlite:///warden.db"

[http]
port = 0

[models.{name}]
factory = "{kind.factory}"
factory_kwargs = {{ {kwargs} }}
weights = "weights.pt"
reference = "reference.csv"
task = "{kind.task}"
numeric_features = {kind.numeric!r}
categorical_features = {kind.categorical!r}
text_features = {kind.text!r}

[models.{name}.checks]
window = 1500
min_rows = 300
min_labelled = 200
calibration_rounds = 6

[models.{name}.correction]
min_flagged = 50
{kind.extra}""".replace("'", '"'),
        encoding="utf-8",
    )
    return config


def labelled(engine) -> int:
    with engine.connect() as conn:
        query = select(func.count()).select_from(Prediction).where(Prediction.label.is_not(None))
        return conn.execute(query).scalar_one()


def stream(kafka_cfg, registry, name: str, kind: Kind, frame: pd.DataFrame) -> None:
    """Serve with the ACTIVE version; prediction logs, then labels as later messages."""
    served = OnnxModel.load(registry, name, registry.active(name))
    preds, scores = served.predict(frame)
    features = [*kind.numeric, *kind.categorical, *kind.text]
    msgs = prediction_messages(frame, name, served.version, preds, scores, features)
    producer = make_producer(kafka_cfg)
    for msg in msgs:
        producer.send(
            kafka_cfg.predictions_topic, key=msg["prediction_id"].encode(), value=encode(msg)
        )
    producer.flush()
    for msg, label in zip(msgs, frame["label"], strict=True):
        value = float(label) if kind.task == "regression" else int(label)
        label_msg = encode({"prediction_id": msg["prediction_id"], "label": value})
        producer.send(kafka_cfg.labels_topic, key=msg["prediction_id"].encode(), value=label_msg)
    producer.close()


@pytest.mark.slow
@pytest.mark.timeout(400)
@pytest.mark.parametrize("name", sorted(KINDS))
def test_model_kind_end_to_end_through_the_broker(name, tmp_path, kafka_cfg):
    kind = KINDS[name]
    cfg = load_config(build(tmp_path, name, kind, kafka_cfg))
    model_cfg = cfg.models[name]
    engine, registry = make_engine(cfg.storage.url), ModelRegistry(cfg.storage.registry)
    bootstrap(engine, registry, name, model_cfg)
    stop = threading.Event()
    ingestor = Ingestor(kafka_cfg, engine, stop)
    thread = threading.Thread(target=ingestor.run, daemon=True)
    thread.start()
    try:
        stream(kafka_cfg, registry, name, kind, kind.generate(1500, True, 7))
        assert wait_for(lambda: labelled(engine) >= 1500, 60), ingestor.stats
    finally:
        stop.set()
        thread.join(30)

    checker = ModelChecker(name, engine, registry, cfg.storage.reports)
    error = next(o for o in checker.run(model_cfg) if o.kind == "error")
    assert not error.passed, error.summary
    metric = "mae" if kind.task == "regression" else "accuracy"
    assert error.figures["headline"] == metric

    window = recent_window(engine, name, 2000, labelled_only=True)
    cand = train_candidate(engine, registry, Attempt(name, model_cfg, model_cfg.correction, window))
    assert cand.status == "validated", (cand.verdict["reasons"], cand.verdict["shifted_region"])
    champ = cand.champion_metrics[f"recent_holdout_{metric}"]
    new = cand.candidate_metrics[f"recent_holdout_{metric}"]
    assert (new < champ) if metric == "mae" else (new > champ), (champ, new)
    assert registry.card(name, cand.version)["task"] == kind.task
    served = OnnxModel.load(registry, name, cand.version)  # the ONNX serves the same kind
    preds, _ = served.predict(kind.generate(5, True, 8))
    assert all(isinstance(p, float) for p in preds) if metric == "mae" else set(preds) <= {"0", "1"}
