"""`warden model init`: a first version of a factory's model for users without a trained torch
model, trained on a labelled training set (not the reference, which stays held out to measure
it) with the daemon's own encoding, early stopping and a progress bar; the weights are
written and the config lines to add are returned."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from watcher.config import ConfigError, WardenConfig

EpochCallback = Callable[[int, float, float], None]


@dataclass
class FirstVersion:
    """What `init_model` did: the file, the kwargs it used and how the model scores."""

    weights: Path
    factory_kwargs: dict[str, Any]
    training_rows: int
    epochs_run: int
    stopped_by: str
    seconds: float
    metric: str
    reference_score: float

    def config_lines(self, name: str, config_dir: Path) -> list[str]:
        """The lines to put under `[models.<name>]` (weights relative to the config)."""
        try:
            weights = self.weights.resolve().relative_to(config_dir.resolve())
        except ValueError:
            weights = self.weights.resolve()
        kwargs = ", ".join(f"{k} = {_toml(v)}" for k, v in self.factory_kwargs.items())
        return [f"[models.{name}]", f"factory_kwargs = {{ {kwargs} }}", f'weights = "{weights}"']


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return repr(value)


def sized_kwargs(factory, kwargs: dict[str, Any], width: int, outputs: int, task: str) -> dict:
    """`factory_kwargs` with `n_inputs` (and, for classification, `n_classes`) filled in when
    the factory takes them and the config leaves them out; a wrong value is refused."""
    params = inspect.signature(factory).parameters
    wanted = {"n_inputs": width}
    if task != "regression":
        wanted["n_classes"] = outputs
    out = dict(kwargs)
    for key, value in wanted.items():
        if key in out and out[key] != value:
            raise ConfigError(
                f"factory_kwargs.{key}: is {out[key]}, the encoding needs {value}; "
                f"set {key} = {value} or leave it out"
            )
        if key in params and key not in out:
            out[key] = value
    return out


def init_model(
    cfg: WardenConfig,
    name: str,
    training: Path,
    weights: Path,
    *,
    epochs: int = 100,
    patience: int = 5,
    seed: int = 0,
    on_epoch: EpochCallback | None = None,
) -> FirstVersion:
    """Train `models.<name>`'s factory on `training` and save its state dict to `weights`."""

    from correctors.models.first_version import train_first_version
    from correctors.models.fitting import load_reference, model_encoding, read_frame
    from correctors.models.modeling import build_model, load_factory, predict_outputs

    if name not in cfg.models:
        raise ConfigError(f"no models.{name} (have: {', '.join(cfg.models) or 'none'})")
    definition = cfg.models[name]
    if definition.kind != "torch":
        from correctors.kinds import adapter_for

        hint = adapter_for(definition.kind).save_hint
        raise ConfigError(
            f"models.{name}.kind: `warden model init` trains torch factories; train the "
            f"{definition.kind} model on `warden_encoder(config, {name!r})` with its own "
            f"framework and save it with {hint}"
        )
    reference = load_reference(definition)
    encoding = model_encoding(definition, reference=reference)
    frame = read_frame(training, definition, "--train")
    factory = load_factory(definition.factory or "", definition.python_path)
    try:
        kwargs = sized_kwargs(
            factory, definition.factory_kwargs, encoding.width, encoding.outputs, encoding.task
        )
    except ConfigError as exc:
        raise ConfigError(f"models.{name}.{exc}") from exc
    result = train_first_version(
        lambda: build_model(definition.factory or "", kwargs, None, definition.python_path),
        encoding.transform(frame),
        encoding.targets(frame),
        epochs=epochs,
        patience=patience,
        seed=seed,
        weights=weights,
        on_epoch=on_epoch,
    )
    out = predict_outputs(result.model, encoding.transform(reference), encoding.task)
    truth = encoding.targets(reference)
    if encoding.task == "regression":
        metric, score = "mae", float(np.abs(out[:, 0] - truth).mean())
    else:
        metric, score = "accuracy", float((out.argmax(axis=1) == truth).mean())
    return FirstVersion(
        weights=weights,
        factory_kwargs=kwargs,
        training_rows=len(frame),
        epochs_run=result.epochs_run,
        stopped_by=result.stopped_by,
        seconds=result.seconds,
        metric=metric,
        reference_score=score,
    )
