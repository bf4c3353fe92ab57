"""Load what a correction starts from: the reference set and the serving (champion) version."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sqlalchemy import Engine
from torch import nn

from correctors.models.encoding import FeatureEncoder
from correctors.models.fitting import (
    ReferenceDataError,
    load_reference,
    model_encoding,
)
from correctors.models.modeling import build_model, load_state_dict, predict_outputs, predict_proba
from correctors.models.runtime import OnnxModel
from correctors.settings import ModelDefinition
from correctors.validation.export import export_onnx
from storage.audit import record_event
from storage.db import session_scope
from storage.registry import ModelRegistry


@dataclass
class Champion:
    """The serving version: torch weights to fine-tune from, ONNX session to compare against."""

    version: str
    card: dict
    encoder: FeatureEncoder
    classes: list[str]
    torch_model: nn.Module
    onnx: OnnxModel

    @property
    def task(self) -> str:
        return self.onnx.task

    def class_index(self, labels: pd.Series) -> pd.Series:
        """Training targets: class indices, or (regression) the label values as floats;
        NaN where a label is unusable."""
        if self.task == "regression":
            return pd.to_numeric(labels, errors="coerce")
        index = {c: i for i, c in enumerate(self.classes)}
        return labels.map(index)


def load_champion(registry: ModelRegistry, model: str, version: str) -> Champion:
    card = registry.card(model, version)
    state = load_state_dict(registry.weights_path(model, version))
    torch_model = build_model(
        card["factory"], card["factory_kwargs"], state, python_path(registry, model, card)
    )
    onnx = OnnxModel.load(registry, model, version)
    return Champion(version, card, onnx.encoder, onnx.classes, torch_model, onnx)


def python_path(registry: ModelRegistry, model: str, card: dict) -> list[str]:
    """The folders the factory was imported from: the card's, else its ancestors' (a
    candidate's card may not repeat them)."""
    seen: set[str] = set()
    while card.get("python_path") is None and card.get("parent") and card["parent"] not in seen:
        seen.add(card["parent"])
        card = registry.card(model, card["parent"])
    return list(card.get("python_path") or [])


def register_version(
    registry: ModelRegistry,
    model: str,
    version: str,
    torch_model: nn.Module,
    encoder: FeatureEncoder,
    card: dict,
) -> Path:
    """Write weights, ONNX and card for a version; returns the ONNX path."""
    vdir = registry.version_dir(model, version)
    vdir.mkdir(parents=True, exist_ok=True)
    torch.save(torch_model.state_dict(), registry.weights_path(model, version))
    task = card.get("task", "classification")
    onnx_path = export_onnx(torch_model, encoder.width, registry.onnx_path(model, version), task)
    registry.write_card(model, version, {"model": model, "version": version, **card})
    return onnx_path


def bootstrap(
    engine: Engine, registry: ModelRegistry, model: str, definition: ModelDefinition
) -> str:
    """First start: register the configured weights as v1 and make it ACTIVE."""
    if definition.weights is None:
        raise ReferenceDataError(
            f"models.{model}.weights is needed: the registry has no version yet", "weights"
        )
    reference = load_reference(definition)
    encoding = model_encoding(definition)
    encoder, classes = encoding.encoder, encoding.classes
    regression = definition.task == "regression"
    torch_model = build_model(
        definition.factory,
        definition.factory_kwargs,
        load_state_dict(definition.weights),
        definition.python_path,
    )
    x = encoder.transform(reference)
    if regression:
        target = pd.to_numeric(reference["label"], errors="coerce").to_numpy()
        known = np.isfinite(target)
        outputs = predict_outputs(torch_model, x[known], "regression")[:, 0]
        baseline = {"mae": float(np.abs(outputs - target[known]).mean())}
    else:
        index = {c: i for i, c in enumerate(classes)}
        y = reference["label"].map(index)
        known = y.notna().to_numpy()
        hits = predict_proba(torch_model, x[known]).argmax(axis=1) == y[known].to_numpy()
        baseline = {"accuracy": float(hits.mean())}
    version = "v1"
    card = {
        "factory": definition.factory,
        "factory_kwargs": definition.factory_kwargs,
        "task": definition.task,
        "encoder": encoder.to_dict(),
        "classes": classes,
        "python_path": [str(p) for p in definition.python_path],
        "parent": None,
        "source": str(definition.weights),
        "baseline": {**baseline, "drift_reference": {"kind": "reference"}},
    }
    register_version(registry, model, version, torch_model, encoder, card)
    registry.activate(model, version, actor="daemon")
    with session_scope(engine) as session:
        record_event(
            session,
            "model_registered",
            actor="daemon",
            model=model,
            subject=version,
            **{f"reference_{k}": v for k, v in baseline.items()},
        )
        record_event(session, "activated", actor="daemon", model=model, subject=version)
    return version
