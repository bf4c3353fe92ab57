"""Shared test steps: a bootstrapped model and labelled traffic stored as intake stores it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from correctors.models.champion import bootstrap
from correctors.models.runtime import OnnxModel
from storage.db import make_engine
from storage.intake import write_batch
from storage.registry import ModelRegistry
from watcher.config import load_config
from watcher.demo.credit import Shift, generate, prediction_messages
from watcher.demo.run import MODEL, write_config
from watcher.kafka.wire import encode, parse_prediction


def setup_model(workdir: Path, width: int, bootstrap_server: str = "127.0.0.1:9", **kw):
    config = write_config(workdir, bootstrap_server, width, **kw)
    cfg = load_config(config)
    engine = make_engine(cfg.storage.engine_url())
    registry = ModelRegistry(cfg.storage.registry)
    bootstrap(engine, registry, MODEL, cfg.models[MODEL])
    return config, cfg, engine, registry


def store_traffic(
    engine, registry, n: int, shift: Shift, seed: int, labelled: bool = True, poison: float = 0.0
):
    """Score rows with the ACTIVE version and store them (with labels) through the intake path.
    `poison`: the share of labels replaced by coin flips (a broken labelling pipeline)."""
    frame = generate(n, shift, seed=seed)
    if poison:
        rng = np.random.default_rng(seed + 1)
        hit = rng.random(n) < poison
        frame.loc[hit, "label"] = rng.integers(0, 2, size=int(hit.sum()))
    return store_frame(engine, registry, frame, labelled)


def store_frame(engine, registry, frame, labelled: bool = True, ts=None):
    """Score `frame` with the ACTIVE version and store it through the intake path (stamped
    `ts` instead of now, when given)."""
    version = registry.active(MODEL)
    preds, scores = OnnxModel.load(registry, MODEL, version).predict(frame)
    msgs = prediction_messages(frame, MODEL, version, preds, scores)
    for msg, label in zip(msgs, frame["label"], strict=True):
        if labelled:
            msg["label"] = int(label)
        if ts is not None:
            msg["ts"] = ts.isoformat()
    write_batch(engine, [parse_prediction(encode(m), 10**6) for m in msgs], [], [])
    return frame
