"""A configured model file of a non-torch kind, loaded and proven to fit the configured
features and classes (one encoded reference row through it), at the first start and in
`warden config check --files` alike: a mismatch is one line naming the key to fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from correctors.kinds import adapter_for
from correctors.kinds.base import KindAdapter, KindLoadError
from correctors.models.fitting import ModelEncoding
from correctors.settings import ModelDefinition


def load_configured(
    definition: ModelDefinition, encoding: ModelEncoding, reference: pd.DataFrame
) -> Any:
    """The model in `weights`, refused (KindLoadError) unless it fits the encoding."""
    if definition.weights is None:
        raise KindLoadError("needed: the registry holds no version of this model yet", "weights")
    adapter = adapter_for(definition.kind)
    model = adapter.load(Path(definition.weights), definition.trusted_types)
    check_fits(adapter, model, encoding, encoding.transform(reference.head(1)))
    return model


def check_fits(adapter: KindAdapter, model: Any, encoding: ModelEncoding, x: np.ndarray) -> None:
    """Inputs, classes and the answer to one encoded row, as the config declares them."""
    _check_inputs(adapter, model, encoding)
    if encoding.task != "regression":
        _check_classes(adapter, model, encoding)
    try:
        out = adapter.scores(model, x, encoding.task)
    except Exception as exc:  # noqa: BLE001 - the user's model: any failure is reported
        raise KindLoadError(
            f"the model fails on one encoded reference row of {encoding.width} inputs: "
            f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}",
            "weights",
        ) from exc
    if out.shape[1] != encoding.outputs:
        raise KindLoadError(
            f"the model returns {out.shape[1]} columns per row, the task needs "
            f"{encoding.outputs} ({encoding.task}, classes {encoding.classes})",
            "task" if encoding.task == "regression" else "classes",
        )
    if not np.isfinite(out).all():
        raise KindLoadError("the model returns NaN or infinity for a reference row", "weights")


def _check_inputs(adapter: KindAdapter, model: Any, encoding: ModelEncoding) -> None:
    names = getattr(model, "feature_names_in_", None)
    if names is not None and [str(n) for n in names] != encoding.columns:
        fitted, declared = [str(n) for n in names], encoding.columns
        extra = [n for n in fitted if n not in declared]
        absent = [n for n in declared if n not in fitted]
        detail = f"fitted on {extra} not declared, declared {absent} not fitted on"
        if not extra and not absent:
            detail = f"the same columns in another order: fitted on {fitted}"
        raise KindLoadError(
            f"the model's inputs do not match the configured features ({detail})",
            "numeric_features",
        )
    count = adapter.n_features(model)
    if count is not None and count != encoding.width:
        raise KindLoadError(
            f"the model takes {count} inputs, the {encoding.encoder.encoding} encoding of the "
            f"configured features gives {encoding.width} ({encoding.columns[:12]}): declare "
            "the features it was fitted on, in that order",
            "numeric_features",
        )


def _check_classes(adapter: KindAdapter, model: Any, encoding: ModelEncoding) -> None:
    own = adapter.classes(model)
    indices = [str(i) for i in range(len(encoding.classes))]
    if own is None or own == encoding.classes or own == indices:
        return
    raise KindLoadError(
        f"the model's classes {own} are not the task's {encoding.classes} in that order: set "
        f"classes = {own}",
        "classes",
    )
