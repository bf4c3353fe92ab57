"""Serving with onnxruntime that follows the registry's ACTIVE pointer.

A swap loads the new session beside the old one and switches between requests, so no request
sees a half-loaded model; the pointer itself is replaced atomically by the registry.
"""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd

from correctors.runtime import OnnxModel
from storage.registry import ModelRegistry


class ActiveModel:
    def __init__(self, registry: ModelRegistry, model: str) -> None:
        self.registry, self.model = registry, model
        self._lock = threading.Lock()
        self._current: OnnxModel | None = None

    def current(self) -> OnnxModel:
        """The serving version, reloaded only when ACTIVE names another one."""
        version = self.registry.active(self.model)
        if version is None:
            raise RuntimeError(f"model {self.model!r} has no ACTIVE version")
        loaded = self._current
        if loaded is None or loaded.version != version:
            fresh = OnnxModel.load(self.registry, self.model, version)  # beside the old one
            with self._lock:
                self._current = loaded = fresh
        return loaded

    def predict(self, frame: pd.DataFrame) -> tuple[str, list[str], np.ndarray]:
        served = self.current()
        labels, probs = served.predict(frame)
        return served.version, labels, probs
