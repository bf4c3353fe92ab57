"""Build a user's torch model from its factory and load weights safely."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn


class ModelLoadError(RuntimeError):
    """The factory or the weights could not be loaded."""


def load_factory(spec: str) -> Callable[..., nn.Module]:
    """Resolve `package.module:function`."""
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
        return getattr(module, attr)
    except (ImportError, AttributeError) as exc:
        raise ModelLoadError(f"cannot import model factory {spec!r}: {exc}") from exc


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a state dict without unpickling arbitrary objects (weights_only=True)."""
    try:
        state = torch.load(Path(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure here is a load error to report
        raise ModelLoadError(f"cannot load weights from {path}: {exc}") from exc
    if not isinstance(state, dict):
        raise ModelLoadError(f"{path} does not hold a state dict")
    return state


def build_model(factory: str, kwargs: dict[str, Any], state: dict | None = None) -> nn.Module:
    model = load_factory(factory)(**kwargs)
    if not isinstance(model, nn.Module):
        raise ModelLoadError(f"factory {factory!r} returned {type(model).__name__}, not nn.Module")
    if state is not None:
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise ModelLoadError(f"weights do not fit the model from {factory!r}: {exc}") from exc
    return model.eval()


@torch.no_grad()
def predict_proba(model: nn.Module, x: np.ndarray, batch: int = 8192) -> np.ndarray:
    """Class probabilities from a logits model, on CPU or wherever the model lives."""
    device = next(model.parameters()).device
    model.eval()
    out = []
    for start in range(0, len(x), batch):
        chunk = torch.from_numpy(x[start : start + batch]).to(device)
        out.append(torch.softmax(model(chunk), dim=1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)


@torch.no_grad()
def predict_outputs(model: nn.Module, x: np.ndarray, task: str, batch: int = 8192) -> np.ndarray:
    """What the served model returns: class probabilities, or (regression) one value per row
    as an (n, 1) array."""
    if task != "regression":
        return predict_proba(model, x, batch)
    device = next(model.parameters()).device
    model.eval()
    out = [
        model(torch.from_numpy(x[start : start + batch]).to(device)).reshape(-1, 1).cpu().numpy()
        for start in range(0, len(x), batch)
    ]
    return np.concatenate(out) if out else np.zeros((0, 1), dtype=np.float32)
