"""Build a user's torch model from its factory and load weights safely."""

from __future__ import annotations

import importlib
import re
import sys
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn


class ModelLoadError(RuntimeError):
    """The factory or the weights could not be loaded."""


class FactoryImportError(ModelLoadError):
    """The factory's module cannot be imported; `not_found` when the module itself (not one
    of its imports) is nowhere on sys.path, which `python_path` or PYTHONPATH fixes."""

    def __init__(self, message: str, *, module: str, not_found: bool) -> None:
        super().__init__(message)
        self.module, self.not_found = module, not_found


def add_python_path(folders: Iterable[str | Path]) -> None:
    """Put the configured folders first on sys.path (once each); spawned workers inherit it."""
    added = False
    for folder in reversed([str(f) for f in folders]):
        if folder not in sys.path:
            sys.path.insert(0, folder)
            added = True
    if added:
        importlib.invalidate_caches()


def load_factory(spec: str, python_path: Iterable[str | Path] = ()) -> Callable[..., nn.Module]:
    """Resolve `package.module:function`, with `python_path` folders on sys.path."""
    add_python_path(python_path)
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        parents = {".".join(module_name.split(".")[: i + 1]) for i in range(module_name.count("."))}
        if exc.name in {module_name, *parents}:
            raise FactoryImportError(
                f"cannot import model factory {spec!r}: no module named {exc.name!r}",
                module=module_name,
                not_found=True,
            ) from exc
        raise FactoryImportError(
            f"cannot import model factory {spec!r}: module {module_name!r} imports "
            f"{exc.name!r}, which is not installed",
            module=module_name,
            not_found=False,
        ) from exc
    except Exception as exc:  # noqa: BLE001 - a broken user module is a load error to report
        raise FactoryImportError(
            f"cannot import model factory {spec!r}: importing {module_name!r} raised "
            f"{type(exc).__name__}: {exc}",
            module=module_name,
            not_found=False,
        ) from exc
    factory = getattr(module, attr, None)
    if factory is None or not callable(factory):
        raise ModelLoadError(
            f"cannot import model factory {spec!r}: module {module_name!r} "
            f"({getattr(module, '__file__', '?')}) has no function {attr!r}"
        )
    return factory


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a state dict without unpickling arbitrary objects (weights_only=True)."""
    try:
        with warnings.catch_warnings():  # its pickle-protocol notes are noise next to the error
            warnings.simplefilter("ignore")
            state = torch.load(Path(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure here is a load error to report
        raise ModelLoadError(f"cannot load weights from {path}: {_load_failure(exc)}") from exc
    if not isinstance(state, dict):
        raise ModelLoadError(f"{path} does not hold a state dict")
    return state


def _load_failure(exc: Exception) -> str:
    """torch.load's reason on one line; its long weights_only advice cut to the cause."""
    text = str(exc)
    unpickler = re.search(r"WeightsUnpickler error:\s*(.+?)\s*(?:\n\s*\n|$)", text, re.S)
    if "Weights only load failed" in text:
        cause = " ".join(unpickler.group(1).split()) if unpickler else "refused"
        return (
            f"torch.load(weights_only=True) refused it ({cause}): not a state dict of tensors, "
            "or a pickle that would run code"
        )
    return " ".join(text.split())


def build_model(
    factory: str,
    kwargs: dict[str, Any],
    state: dict | None = None,
    python_path: Iterable[str | Path] = (),
) -> nn.Module:
    """`factory(**kwargs)` in eval mode, with `state` loaded when given."""
    try:
        model = load_factory(factory, python_path)(**kwargs)
    except ModelLoadError:
        raise
    except Exception as exc:  # noqa: BLE001 - the user's factory failing is a load error
        raise ModelLoadError(
            f"factory {factory!r} failed with factory_kwargs {kwargs}: {type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(model, nn.Module):
        raise ModelLoadError(f"factory {factory!r} returned {type(model).__name__}, not nn.Module")
    if state is not None:
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise ModelLoadError(
                f"weights do not fit the model from {factory!r}: {state_dict_mismatch(exc)}"
            ) from exc
    return model.eval()


_SIZE = re.compile(
    r"size mismatch for (\S+): copying a param with shape torch\.Size\((\[[^\]]*\])\) from "
    r"checkpoint, the shape in current model is torch\.Size\((\[[^\]]*\])\)\.?"
)


def state_dict_mismatch(exc: RuntimeError, shown: int = 3) -> str:
    """torch's multi-line load_state_dict error, on one short line: the first `shown`
    problems (`0.weight: [64, 17] in the file, [64, 20] in the model`) and how many more."""
    lines = [line.strip() for line in str(exc).splitlines()[1:] if line.strip()]
    items = [_SIZE.sub(r"\1: \2 in the file, \3 in the model", ln).rstrip(". ") for ln in lines]
    text = "; ".join(items[:shown]) or str(exc)
    return text + (f"; and {len(items) - shown} more" if len(items) > shown else "")


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
