"""`encoding = "raw"`: numeric features reach the model as float32 in the declared order
(missing → NaN), categorical ones as integer codes over the supplied (or learnt) vocabulary,
and a model with its own normalisation layer and embeddings goes through the whole loop:
the early checks, registration (ONNX export), parity, HTTP serving, a correction on shifted
traffic and the swap."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
import torch

from correctors.models.champion import bootstrap, load_champion, python_path
from correctors.models.encoding import FeatureEncoder
from correctors.models.preflight import check_model
from correctors.models.runtime import OnnxModel
from correctors.pipeline import Attempt, train_candidate
from correctors.settings import CorrectionConfig
from correctors.swap import swap
from correctors.training.finetune import fine_tune
from correctors.validation.export import parity
from storage.db import make_engine
from storage.queries import recent_window
from storage.registry import ModelRegistry
from tests.support import ROOT  # noqa: E402
from tests.support.helpers import store_frame
from tests.support.raw_models import normalised_tabular
from watcher.config import HttpConfig, load_config
from watcher.daemon.service import wait_for
from watcher.demo.credit import CATEGORICAL, NORMAL, NUMERIC, SHIFTED, generate
from watcher.demo.run import MODEL
from watcher.onboarding import warden_encoder
from watcher.serving.server import InferenceServer, encode_rows

PLANS = ["pro", "basic", "plus"]  # supplied, deliberately not sorted: codes follow this order
FRAME = pd.DataFrame(
    {
        "age": [20.0, None, 40.0, "n/a"],
        "plan": ["basic", "pro", None, "enterprise"],
        "note": ["great fast delivery", None, "broken", ""],
    }
)


def test_raw_layout_values_codes_and_missing():
    enc = FeatureEncoder.fit(
        FRAME, ["age"], ["plan"], ["note"], 16, encoding="raw", vocabularies={"plan": PLANS}
    )
    assert enc.width == 1 + 1 + 16 and enc.columns[:2] == ["age", "plan"]
    x = enc.transform(FRAME)
    assert x.dtype == np.float32
    assert x[0, 0] == 20.0 and np.isnan(x[1, 0]) and np.isnan(x[3, 0])  # as given; missing NaN
    assert x[:, 1].tolist() == [1.0, 0.0, 3.0, 3.0]  # basic=1, pro=0; missing, unseen → 3
    assert enc.clip_sd is None and enc.means["age"] == 30.0  # kept for the model's own layer
    learnt = FeatureEncoder.fit(FRAME, ["age"], ["plan"], encoding="raw")
    assert learnt.vocab["plan"] == ["basic", "enterprise", "pro"]  # the reference's, sorted


def test_raw_card_round_trip_and_old_cards_read_as_standard():
    enc = FeatureEncoder.fit(FRAME, ["age"], ["plan"], encoding="raw")
    again = FeatureEncoder.from_dict(enc.to_dict())
    assert again.raw and np.array_equal(again.transform(FRAME), enc.transform(FRAME), True)
    old = {k: v for k, v in FeatureEncoder.fit(FRAME, ["age"], ["plan"]).to_dict().items()}
    old.pop("encoding")
    assert not FeatureEncoder.from_dict(old).raw


def test_serving_encodes_raw_rows_as_training_does():
    enc = FeatureEncoder.fit(FRAME, ["age"], ["plan"], encoding="raw", vocabularies={"plan": PLANS})
    rows = [{"age": 33, "plan": "plus"}, {"age": None, "plan": None}, {"age": 1.5, "plan": "x"}]
    fast = encode_rows(enc, rows)
    assert np.array_equal(fast, enc.transform(pd.DataFrame(rows)), equal_nan=True)
    odd = [{"age": "61.5", "plan": 7}]  # the pandas path: its coercions apply
    assert np.array_equal(encode_rows(enc, odd), enc.transform(pd.DataFrame(odd)), True)


def write_config(folder: Path) -> Path:
    """A credit model with raw encoding, its own factory found through python_path, the plan
    vocabulary supplied, the region vocabulary learnt from the reference."""
    config = folder / "warden.toml"
    config.write_text(
        f"""
[kafka]
bootstrap_servers = "127.0.0.1:9"

[storage]
url = "sqlite:///warden.db"

[models.{MODEL}]
factory = "tests.support.raw_models:normalised_tabular"
factory_kwargs = {{ n_numeric = {len(NUMERIC)}, cardinalities = [4, 3] }}
python_path = ["{ROOT}"]
weights = "raw-v1.pt"
reference = "reference.csv"
encoding = "raw"
vocabularies = {{ plan = {PLANS} }}
numeric_features = {NUMERIC}
categorical_features = {CATEGORICAL}

[models.{MODEL}.correction]
min_flagged = 50
""".replace("'", '"')
    )
    return config


def with_gaps(frame: pd.DataFrame, seed: int) -> pd.DataFrame:
    """5 % of incomes missing: the raw encoding passes NaN, the model's layer handles it."""
    frame = frame.copy()
    frame.loc[np.random.default_rng(seed).random(len(frame)) < 0.05, "income"] = np.nan
    return frame


def train(config: Path) -> FeatureEncoder:
    """What a user's training script does: the daemon's encoding, the statistics for the
    model's normalisation layer, and the weights."""
    training = with_gaps(generate(4000, NORMAL, seed=100), 1)
    encoding = warden_encoder(config, MODEL)
    assert encoding.width == len(NUMERIC) + len(CATEGORICAL) and encoding.classes == ["0", "1"]
    torch.manual_seed(0)
    model = normalised_tabular(len(NUMERIC), [4, 3])
    x = encoding.transform(training)
    numeric = x[:, : len(NUMERIC)]
    model.mean.copy_(torch.from_numpy(np.nanmean(numeric, axis=0)))
    model.std.copy_(torch.from_numpy(np.nanstd(numeric, axis=0)))
    settings = CorrectionConfig(epochs=40, patience=5, seed=0, worker=False)
    result = fine_tune(model, x, encoding.targets(training), settings)
    torch.save(result.model.state_dict(), config.parent / "raw-v1.pt")
    return encoding.encoder


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_raw_model_with_its_own_normalisation_goes_through_the_whole_loop(tmp_path):
    with_gaps(generate(4000, NORMAL, seed=0), 2).to_csv(tmp_path / "reference.csv", index=False)
    config = write_config(tmp_path)
    encoder = train(config)
    cfg = load_config(config)
    definition = cfg.models[MODEL]
    assert check_model(MODEL, definition, needs_weights=True) == []
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(  # the CLI finds the factory through python_path alone
        [str(Path(sys.executable).parent / "warden"), "config", "check", "--files", str(config)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr

    engine, registry = make_engine(cfg.storage.url), ModelRegistry(cfg.storage.registry)
    bootstrap(engine, registry, MODEL, definition)  # registers v1: ONNX export
    card = registry.card(MODEL, "v1")
    assert card["encoder"]["encoding"] == "raw" and card["encoder"]["vocab"]["plan"] == PLANS
    champion = load_champion(registry, MODEL, "v1")
    reference = pd.read_csv(tmp_path / "reference.csv")
    x_ref = encoder.transform(reference)
    assert np.isnan(x_ref).any()  # the missing incomes reach the model as NaN …
    assert parity(champion.torch_model, registry.onnx_path(MODEL, "v1"), x_ref) < 1e-4  # … alike
    assert card["baseline"]["accuracy"] > 0.85

    shifted = with_gaps(generate(2000, SHIFTED, seed=7), 3)
    rows = shifted[NUMERIC + CATEGORICAL].head(50).astype(object)
    rows = rows.where(rows.notna(), None).to_dict(orient="records")
    rows[0]["plan"] = "platinum"  # unseen: the unknown code
    server = InferenceServer(registry, MODEL, HttpConfig(port=0))
    server.start()
    try:
        with httpx.Client(base_url=server.url) as http:
            answer = http.post("/predict", json={"rows": rows}).json()
            assert answer["version"] == "v1"
            _, probs = OnnxModel.load(registry, MODEL, "v1").predict(pd.DataFrame(rows))
            np.testing.assert_allclose(answer["scores"], probs, atol=1e-6)

            store_frame(engine, registry, shifted)  # served, then labelled
            window = recent_window(engine, MODEL, 2000, labelled_only=True)
            candidate = train_candidate(
                engine,
                registry,
                Attempt(
                    MODEL,
                    definition,
                    definition.correction,
                    window,
                    drifted_columns=("utilization", "income"),
                ),
            )
            assert candidate.status == "validated", candidate.verdict
            assert candidate.verdict["parity_max_abs_diff"] < 1e-4
            before = candidate.champion_metrics["recent_holdout_accuracy"]
            after = candidate.candidate_metrics["recent_holdout_accuracy"]
            assert after > before + 0.1, (before, after)
            assert registry.card(MODEL, candidate.version)["encoder"]["encoding"] == "raw"
            new_card = registry.card(MODEL, candidate.version)  # the factory's folder, inherited
            assert python_path(registry, MODEL, new_card) == [str(ROOT)]

            swap(engine, registry, candidate.id, actor="operator")
            assert registry.active(MODEL) == candidate.version

            def served_by_new() -> bool:
                return http.post("/predict", json={"rows": rows}).json()["version"] != "v1"

            assert wait_for(served_by_new, 30), "the server did not follow ACTIVE"
    finally:
        server.stop()
        engine.dispose()
