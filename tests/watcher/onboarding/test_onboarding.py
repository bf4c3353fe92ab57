"""One encoder, one way: `warden model encoder` (the real CLI in a subprocess) and
`warden_encoder(config, model)` give the encoding the daemon registers a model with: width,
column order, class order; a fit on another file reaches the daemon only through
`encoder_file`. `warden model init` trains a first version on a labelled training set that
then passes every start-up check."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from correctors.models.champion import bootstrap
from correctors.models.fitting import ModelSetupError
from correctors.models.preflight import check_model
from storage.db import make_engine
from storage.registry import ModelRegistry
from watcher.config import load_config
from watcher.demo.credit import NORMAL, NUMERIC, generate
from watcher.demo.run import MODEL, write_config
from watcher.onboarding import warden_encoder


def warden(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(
        [str(Path(sys.executable).parent / "warden"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def add_line(config: Path, line: str) -> None:
    """A key under the model's table (after its `reference`)."""
    anchor = 'reference = "reference.csv"'
    config.write_text(config.read_text().replace(anchor, f"{anchor}\n{line}"))


@pytest.fixture()
def config(workdir, trained) -> Path:
    return write_config(workdir, "127.0.0.1:9", trained[1])


def test_the_python_call_is_the_encoding_the_daemon_registers(config):
    encoding = warden_encoder(config, MODEL)
    assert encoding.width == 17 and encoding.classes == ["0", "1"] and encoding.outputs == 2
    assert encoding.columns[:8] == NUMERIC and encoding.columns[8] == "region=east"
    assert encoding.columns[-1] == "plan=<unknown>"
    frame = generate(50, NORMAL, seed=3)
    assert encoding.targets(frame).tolist() == frame["label"].tolist()
    cfg = load_config(config)
    engine, registry = make_engine(cfg.storage.url), ModelRegistry(cfg.storage.registry)
    bootstrap(engine, registry, MODEL, cfg.models[MODEL])
    card = registry.card(MODEL, "v1")
    assert card["encoder"] == encoding.encoder.to_dict() and card["classes"] == encoding.classes
    with pytest.raises(ValueError, match=r"labels \['7'\] are not among the model's classes"):
        encoding.targets(frame.assign(label=7))
    engine.dispose()


def test_model_encoder_prints_width_columns_and_classes(config):
    done = warden("model", "encoder", MODEL, "--config", str(config), cwd=config.parent)
    assert done.returncode == 0, done.stderr
    assert f"models.{MODEL}: standard encoding fitted on {config.parent / 'reference.csv'}" in (
        done.stdout
    )
    assert "width: 17 inputs (float32) → 2 output(s) per row" in done.stdout
    assert "factory_kwargs = { n_inputs = 17, n_classes = 2 }" in done.stdout
    assert "one-hot: east, north, south, west, then <unknown>" in done.stdout
    assert "classes (output order, label as text): 0 = '0', 1 = '1'" in done.stdout
    as_json = warden("model", "encoder", MODEL, "-c", str(config), "--json", cwd=config.parent)
    doc = json.loads(as_json.stdout)
    assert doc["width"] == 17 and doc["columns"][:2] == ["income", "debt_ratio"]
    assert doc["encoding"] == "standard" and doc["classes"] == ["0", "1"]


def test_a_fit_elsewhere_reaches_the_daemon_only_through_encoder_file(config):
    training = config.parent / "training.csv"
    generate(3000, NORMAL, seed=100).assign(income=lambda f: f["income"] + 10).to_csv(
        training, index=False
    )
    out = config.parent / "enc"
    done = warden(
        "model", "encoder", MODEL, "--config", str(config), "--fit-on", str(training),
        "--output", str(out), cwd=config.parent,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert 'encoder_file = "enc/encoder.json"' in done.stdout
    saved = json.loads((out / "encoder.json").read_text())
    assert saved["fitted_on"] == str(training) and saved["width"] == 17
    assert abs(saved["encoder"]["means"]["income"] - pd.read_csv(training)["income"].mean()) < 1e-9
    reference_fit = warden_encoder(config, MODEL)
    assert reference_fit.encoder.means["income"] != saved["encoder"]["means"]["income"]

    add_line(config, 'encoder_file = "enc/encoder.json"')
    cfg = load_config(config)
    assert warden_encoder(cfg, MODEL).encoder.to_dict() == saved["encoder"]
    engine, registry = make_engine(cfg.storage.url), ModelRegistry(cfg.storage.registry)
    bootstrap(engine, registry, MODEL, cfg.models[MODEL])
    assert registry.card(MODEL, "v1")["encoder"] == saved["encoder"]
    engine.dispose()

    stale = cfg.models[MODEL].model_copy(update={"numeric_features": NUMERIC[:-1]})
    with pytest.raises(ModelSetupError, match="was fitted for other features") as caught:
        warden_encoder(cfg.model_copy(update={"models": {MODEL: stale}}), MODEL)
    assert caught.value.key == "encoder_file"
    [problem] = check_model(MODEL, stale, needs_weights=False)
    assert problem.key == "encoder_file"


def test_vocabularies_fix_the_code_order_and_a_wrong_one_names_the_key(config):
    cfg = load_config(config)
    base = cfg.models[MODEL]
    given = base.model_copy(update={"vocabularies": {"plan": ["pro", "plus", "basic"]}})
    encoding = warden_encoder(cfg.model_copy(update={"models": {MODEL: given}}), MODEL)
    assert encoding.columns[-4:] == ["plan=pro", "plan=plus", "plan=basic", "plan=<unknown>"]
    (config.parent / "vocab.json").write_text(json.dumps({"plan": ["pro", "pro"]}))
    add_line(config, 'vocabularies_file = "vocab.json"')
    done = warden("config", "check", "--files", str(config), cwd=config.parent)
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"models.{MODEL}.vocabularies_file: {config.parent / 'vocab.json'}: plan: "
        "values listed twice: ['pro']"
    )
    bad = config.read_text().replace(
        'vocabularies_file = "vocab.json"', "vocabularies = { x = [] }"
    )
    config.write_text(bad)
    done = warden("config", "check", str(config), cwd=config.parent)
    assert done.returncode == 2 and "vocabularies.x: not one of categorical_features" in done.stdout


@pytest.mark.slow
def test_model_init_trains_a_first_version_that_passes_the_checks(config, tmp_path):
    training = config.parent / "train.csv"
    generate(3000, NORMAL, seed=100).to_csv(training, index=False)
    text = config.read_text().replace("{ n_inputs = 17, n_classes = 2 }", "{ hidden = 32 }")
    config.write_text(text.replace('weights = "initial-weights.pt"\n', ""))
    started = time.monotonic()
    done = warden("model", "init", MODEL, "--config", str(config), "--train", str(training),
                  cwd=config.parent)  # fmt: skip
    seconds = time.monotonic() - started
    assert done.returncode == 0, done.stdout + done.stderr
    assert "factory_kwargs = { hidden = 32, n_inputs = 17, n_classes = 2 }" in done.stdout
    assert 'weights = "credit-v1.pt"' in done.stdout and (config.parent / "credit-v1.pt").is_file()
    score = float(done.stdout.split("reference accuracy ")[1].split(";")[0])
    assert score > 0.85, done.stdout
    assert seconds < 120, seconds
    config.write_text(
        config.read_text().replace(
            "{ hidden = 32 }",
            '{ hidden = 32, n_inputs = 17, n_classes = 2 }\nweights = "credit-v1.pt"',
        )
    )
    checked = warden("config", "check", "--files", str(config), cwd=config.parent)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    wrong = config.read_text().replace("n_inputs = 17", "n_inputs = 16")
    config.write_text(wrong)
    refused = warden("model", "init", MODEL, "-c", str(config), "--train", str(training),
                     cwd=config.parent)  # fmt: skip
    assert refused.returncode == 2
    assert refused.stderr.strip() == (
        f"models.{MODEL}.factory_kwargs.n_inputs: is 16, the encoding needs 17; set n_inputs "
        "= 17 or leave it out"
    )


def test_unknown_model_is_one_line(config):
    done = warden("model", "encoder", "nosuch", "--config", str(config), cwd=config.parent)
    assert done.returncode == 2
    assert done.stderr.strip() == f"{config}: no models.nosuch (have: {MODEL})"
