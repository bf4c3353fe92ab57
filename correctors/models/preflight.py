"""A model checked before anything starts, so a wrong factory, kwargs or weights file fails in
`warden config check --files` and at the start of `warden run`, in a second, naming the key
and the fix, instead of minutes later inside the daemon with a traceback.

A model of another kind (scikit-learn, LightGBM, XGBoost) is loaded from its file, never
unpickled, and one encoded reference row goes through it (`correctors.kinds.fit`). For torch,
the steps, each needing the one before: the `python_path` folders exist; the encoding can be
fitted (reference readable, vocabularies valid); the factory's module imports; the factory
builds the model with `factory_kwargs`; the weights load into it; one encoded reference row
goes through it; its output has the width the task and classes need, and is finite.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from correctors.models.fitting import (
    ModelEncoding,
    ModelSetupError,
    load_reference,
    model_encoding,
)
from correctors.models.modeling import (
    FactoryImportError,
    ModelLoadError,
    load_factory,
    load_state_dict,
    state_dict_mismatch,
)
from correctors.settings import ModelDefinition


@dataclass(frozen=True)
class Problem:
    """One failed check: the key to fix (below `models.<name>.`) and what is wrong + the fix."""

    key: str
    message: str
    cause: BaseException | None = field(default=None, compare=False)  # for --debug

    def line(self, model: str) -> str:
        return f"models.{model}.{self.key}: {self.message}"


def check_model(name: str, definition: ModelDefinition, *, needs_weights: bool) -> list[Problem]:
    """The problems of one model (empty when it is ready); stops at the first blocking one.
    `needs_weights`: the registry holds no version yet, so `weights` must be set."""
    missing = [str(p) for p in definition.python_path if not Path(p).is_dir()]
    if missing:
        return [Problem("python_path", f"folder not found: {', '.join(missing)}")]
    try:
        reference = load_reference(definition)
        encoding = model_encoding(definition, reference=reference)
    except ModelSetupError as exc:
        return [Problem(exc.key, str(exc), exc)]
    except ValueError as exc:  # the encoder refused the data (too many categories, …)
        return [Problem("reference", str(exc), exc)]
    if definition.kind != "torch":
        return _native_problems(definition, encoding, reference, needs_weights)
    model, problem = _build(name, definition)
    if problem is not None:
        return [problem]
    assert model is not None
    x = torch.from_numpy(encoding.transform(reference.head(1)))
    problem = _shape_problem(name, model, definition, encoding, x)  # before weights: a wrong
    if problem is not None:  # n_inputs or n_classes is the cause, a weights mismatch the symptom
        return [problem]
    if definition.weights is not None:
        problem = _load_weights(model, definition)
        if problem is not None:
            return [problem]
    elif needs_weights:
        return [Problem("weights", "needed: the registry holds no version of this model yet")]
    return _finite_problems(model, encoding, x)


def _native_problems(
    definition: ModelDefinition,
    encoding: ModelEncoding,
    reference: pd.DataFrame,
    needs_weights: bool,
) -> list[Problem]:
    """A scikit-learn, LightGBM or XGBoost file: loaded (never unpickled), then one encoded
    reference row through it; inputs and classes must be the configured ones."""
    from correctors.kinds.fit import load_configured

    if definition.weights is None:
        needed = "needed: the registry holds no version of this model yet"
        return [Problem("weights", needed)] if needs_weights else []
    try:
        load_configured(definition, encoding, reference)
    except ModelSetupError as exc:
        return [Problem(exc.key, str(exc), exc)]
    return []


def _build(name: str, definition: ModelDefinition) -> tuple[nn.Module | None, Problem | None]:
    try:
        factory = load_factory(definition.factory or "", definition.python_path)
    except FactoryImportError as exc:
        if exc.not_found:
            where = (
                f"python_path {[str(p) for p in definition.python_path]} or PYTHONPATH"
                if definition.python_path
                else "PYTHONPATH or the installed packages"
            )
            return None, Problem(
                "factory",
                f"module {exc.module!r} not importable from {where}; add its folder to "
                f"PYTHONPATH or set models.{name}.python_path",
                exc,
            )
        return None, Problem("factory", f"{exc}; fix the module", exc)
    except ModelLoadError as exc:
        return None, Problem("factory", f"{exc}; name a function that returns the nn.Module", exc)
    try:
        model = factory(**definition.factory_kwargs)
    except Exception as exc:  # noqa: BLE001 - the user's factory: any failure is reported
        return None, Problem(
            "factory_kwargs",
            f"{definition.factory}(**{definition.factory_kwargs}) raised "
            f"{type(exc).__name__}: {exc}; the factory takes {_signature(factory)}",
            exc,
        )
    if not isinstance(model, nn.Module):
        return None, Problem(
            "factory",
            f"{definition.factory} returned {type(model).__name__}, not a torch nn.Module",
        )
    return model.eval(), None


def _signature(factory) -> str:
    try:
        return f"({', '.join(inspect.signature(factory).parameters)})"
    except (TypeError, ValueError):
        return "arguments it documents"


def _load_weights(model: nn.Module, definition: ModelDefinition) -> Problem | None:
    try:
        state = load_state_dict(definition.weights or "")
    except ModelLoadError as exc:
        return Problem("weights", f"{exc}; save it with torch.save(model.state_dict(), path)", exc)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        return Problem(
            "weights",
            f"do not fit the model {definition.factory}(**{definition.factory_kwargs}) builds: "
            f"{state_dict_mismatch(exc)}; save the state_dict of that model, or fix "
            "factory_kwargs",
            exc,
        )
    return None


@torch.no_grad()
def _shape_problem(
    name: str,
    model: nn.Module,
    definition: ModelDefinition,
    encoding: ModelEncoding,
    x: torch.Tensor,
) -> Problem | None:
    """One encoded reference row through the model: it must take it and return the width the
    task and classes need."""
    width, kwargs = encoding.width, definition.factory_kwargs
    shown = f"`warden model encoder {name} --config FILE` lists them"
    try:
        out = model(x)
    except Exception as exc:  # noqa: BLE001 - the user's forward: any failure is reported
        detail = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
        if "n_inputs" in kwargs and kwargs["n_inputs"] != width:
            return Problem(
                "factory_kwargs.n_inputs",
                f"is {kwargs['n_inputs']}, the {encoding.encoder.encoding} encoding gives "
                f"{width} inputs ({shown}): set n_inputs = {width} ({detail})",
                exc,
            )
        return Problem(
            "factory_kwargs",
            f"the model fails on one encoded reference row of {width} inputs "
            f"({encoding.encoder.encoding} encoding): {detail}; build it for {width} inputs "
            f"({shown})",
            exc,
        )
    if not isinstance(out, torch.Tensor):
        return Problem("factory", f"the model returns {type(out).__name__}, not a tensor")
    got = 1 if out.dim() == 1 else int(out.shape[-1]) if out.dim() == 2 else None
    wanted = encoding.outputs
    if got == wanted:
        return None
    shape = f"shape {tuple(out.shape)} for 1 row"
    if definition.task == "regression":
        return Problem(
            "task",
            f"regression needs one output per row, the model returns {shape}; make it return "
            'one value, or set task = "classification"',
        )
    origin = f"models.{name}.classes" if definition.classes else "the reference's labels"
    key = "factory_kwargs.n_classes" if "n_classes" in kwargs else "factory_kwargs"
    fix = f"set n_classes = {wanted}" if "n_classes" in kwargs else f"return {wanted} logits"
    return Problem(
        key,
        f"the model returns {shape}; the task has {wanted} classes {encoding.classes} "
        f"(from {origin}): {fix}",
    )


@torch.no_grad()
def _finite_problems(model: nn.Module, encoding: ModelEncoding, x: torch.Tensor) -> list[Problem]:
    """With its weights, the model's answer to the reference row must be a number."""
    if torch.isfinite(model(x)).all():
        return []
    if encoding.encoder.raw:
        return [
            Problem(
                "encoding",
                "the model returns NaN or infinity for an encoded reference row; with "
                'encoding = "raw" missing values arrive as NaN: handle them inside the model '
                "(e.g. torch.nan_to_num after its normalisation)",
            )
        ]
    return [Problem("weights", "the model returns NaN or infinity for a reference row")]
