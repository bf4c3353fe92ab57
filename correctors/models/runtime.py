"""A registry version loaded for inference with onnxruntime: encoder + session + class names."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pandas as pd

from correctors.models.encoding import FeatureEncoder
from correctors.validation.export import onnx_session
from storage.registry import ModelRegistry


@dataclass
class OnnxModel:
    """What serving, checks and validation need to predict with one model version."""

    model: str
    version: str
    encoder: FeatureEncoder
    classes: list[str]
    session: ort.InferenceSession
    task: str = "classification"

    @classmethod
    def load(cls, registry: ModelRegistry, model: str, version: str) -> OnnxModel:
        registry.verify(model, version)
        card = registry.card(model, version)
        return cls(
            model=model,
            version=version,
            encoder=FeatureEncoder.from_dict(card["encoder"]),
            classes=[str(c) for c in card.get("classes") or []],
            session=onnx_session(Path(registry.onnx_path(model, version))),
            task=card.get("task", "classification"),
        )

    def proba_encoded(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {"features": x.astype(np.float32, copy=False)})[0]

    def proba(self, frame: pd.DataFrame) -> np.ndarray:
        return self.proba_encoded(self.encoder.transform(frame))

    def predict(self, frame: pd.DataFrame) -> tuple[list, np.ndarray]:
        """Class names and probabilities for each row of raw features; for regression, the
        predicted values (rounded to 6 digits) and the raw (n, 1) output."""
        out = self.proba(frame)
        return self.decode(out), out

    def decode(self, out: np.ndarray) -> list:
        if self.task == "regression":
            return [round(float(v), 6) for v in out[:, 0]]
        return [self.classes[i] for i in out.argmax(axis=1)]
