"""Load what a correction starts from: the reference set and the serving (champion) version."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine
from torch import nn

from correctors.kinds import adapter_for
from correctors.kinds.base import KindLoadError
from correctors.models.encoding import FeatureEncoder
from correctors.models.fitting import (
    ModelEncoding,
    ReferenceDataError,
    load_reference,
    model_encoding,
)
from correctors.models.modeling import build_model, load_state_dict
from correctors.models.runtime import OnnxModel
from correctors.settings import ModelDefinition
from storage.audit import record_event
from storage.db import session_scope
from storage.registry import ModelRegistry, RegistryError, sha256_file


@dataclass
class Champion:
    """The serving version: the model to correct (`native`, of its `kind`: for torch the module,
    also in `torch_model`), ONNX session to compare against."""

    version: str
    card: dict
    encoder: FeatureEncoder
    classes: list[str]
    torch_model: nn.Module | None
    onnx: OnnxModel
    kind: str = "torch"
    native: Any = None

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
    onnx = OnnxModel.load(registry, model, version)
    kind = card.get("kind", "torch")
    if kind == "torch":
        state = load_state_dict(registry.weights_path(model, version))
        torch_model = build_model(
            card["factory"], card["factory_kwargs"], state, python_path(registry, model, card)
        )
        return Champion(
            version, card, onnx.encoder, onnx.classes, torch_model, onnx, "torch", torch_model
        )
    path = registry.version_dir(model, version) / card["model_file"]
    if sha256_file(path) != card.get("model_file_sha256"):
        raise RegistryError(f"{model}/{version}: {path.name} does not match its card's sha256")
    native = adapter_for(kind).load(path, card.get("trusted_types") or [])
    return Champion(version, card, onnx.encoder, onnx.classes, None, onnx, kind, native)


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
    trained: Any,
    encoder: FeatureEncoder,
    card: dict,
) -> Path:
    """Write the model's file (a state dict, or a non-torch kind's native file), ONNX and card
    for a version; returns the ONNX path. A native file's name and sha256 are added to `card`
    (the caller's final card keeps them)."""
    vdir = registry.version_dir(model, version)
    vdir.mkdir(parents=True, exist_ok=True)
    kind = card.get("kind", "torch")
    adapter = adapter_for(kind)
    task = card.get("task", "classification")
    if kind == "torch":
        adapter.save(trained, registry.weights_path(model, version))
    else:
        adapter.save(trained, vdir / adapter.file_name)
        digest = sha256_file(vdir / adapter.file_name)
        card.update({"model_file": adapter.file_name, "model_file_sha256": digest})
    onnx_path = adapter.export(trained, encoder.width, registry.onnx_path(model, version), task)
    registry.write_card(model, version, {"model": model, "version": version, **card})
    return onnx_path


def configured_model(
    definition: ModelDefinition, encoding: ModelEncoding, reference: pd.DataFrame
) -> Any:
    """The model `weights` names: a torch module built by the factory, or another kind's
    model, refused unless it fits the configured features and classes."""
    if definition.kind != "torch":
        from correctors.kinds.fit import load_configured

        return load_configured(definition, encoding, reference)
    if definition.weights is None:
        raise KindLoadError("needed: the registry holds no version of this model yet", "weights")
    return build_model(
        definition.factory or "",
        definition.factory_kwargs,
        load_state_dict(definition.weights),
        definition.python_path,
    )


def reference_baseline(
    scores: np.ndarray, reference: pd.DataFrame, encoding: ModelEncoding
) -> dict:
    """The first version's quality on the reference: MAE, or accuracy."""
    if encoding.task == "regression":
        target = pd.to_numeric(reference["label"], errors="coerce").to_numpy()
        known = np.isfinite(target)
        return {"mae": float(np.abs(scores[known, 0] - target[known]).mean())}
    index = {c: i for i, c in enumerate(encoding.classes)}
    y = reference["label"].map(index)
    known = y.notna().to_numpy()
    return {"accuracy": float((scores[known].argmax(axis=1) == y[known].to_numpy()).mean())}


def bootstrap(
    engine: Engine, registry: ModelRegistry, model: str, definition: ModelDefinition
) -> str:
    """First start: register the configured model as v1 and make it ACTIVE."""
    if definition.weights is None:
        raise ReferenceDataError(
            f"models.{model}.weights is needed: the registry has no version yet", "weights"
        )
    reference = load_reference(definition)
    encoding = model_encoding(definition, reference=reference)
    first = configured_model(definition, encoding, reference)
    adapter = adapter_for(definition.kind)
    scores = adapter.scores(first, encoding.transform(reference), definition.task)
    baseline = reference_baseline(scores, reference, encoding)
    version = "v1"
    card = {
        "kind": definition.kind,
        "factory": definition.factory,
        "factory_kwargs": definition.factory_kwargs,
        "trusted_types": list(definition.trusted_types),
        "task": definition.task,
        "encoder": encoding.encoder.to_dict(),
        "classes": encoding.classes,
        "python_path": [str(p) for p in definition.python_path],
        "parent": None,
        "source": str(definition.weights),
        "baseline": {**baseline, "drift_reference": {"kind": "reference"}},
    }
    register_version(registry, model, version, first, encoding.encoder, card)
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
