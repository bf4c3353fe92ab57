"""The one answer to "what does this model take and return": the encoder the daemon fits (or the
fitted one the config names) and the class order, for the daemon, `warden model encoder` and
users' training scripts alike.

The daemon fits the encoder on the reference at a model's first start; `encoder_file` makes it
use one fitted elsewhere (`warden model encoder --fit-on TRAINING --output DIR` writes it).
Classes are `classes` from the config, else the reference's label strings, sorted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from correctors.models.encoding import FeatureEncoder
from correctors.settings import ModelDefinition, vocabulary_problem

FORMAT = "warden-encoder/1"


class ModelSetupError(ValueError):
    """A model's data, files or settings cannot be used; `key` is the config key to fix."""

    def __init__(self, message: str, key: str) -> None:
        super().__init__(message)
        self.key = key


class ReferenceDataError(ModelSetupError):
    """The reference set cannot be used (missing file or columns)."""

    def __init__(self, message: str, key: str = "reference") -> None:
        super().__init__(message, key)


def label_text(value: Any) -> str:
    """Labels as stored labels are: 1, 1.0 and "1" are the same class."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def read_frame(path: str | Path, definition: ModelDefinition, key: str) -> pd.DataFrame:
    """A CSV or Parquet file with every feature and the label column; rows without a label
    dropped, labels as text in `label`."""
    path = Path(path)
    try:
        frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    except FileNotFoundError as exc:
        raise ReferenceDataError(f"file not found: {path}", key) from exc
    except Exception as exc:  # noqa: BLE001 - any unreadable file is reported with its key
        raise ReferenceDataError(f"cannot read {path}: {type(exc).__name__}: {exc}", key) from exc
    missing = [c for c in [*definition.features, definition.label_column] if c not in frame]
    if missing:
        raise ReferenceDataError(f"{path} lacks columns {missing}", key)
    frame = frame.dropna(subset=[definition.label_column]).reset_index(drop=True)
    frame["label"] = frame[definition.label_column].map(label_text)
    return frame


def load_reference(definition: ModelDefinition) -> pd.DataFrame:
    """The labelled reference set (CSV or Parquet), labels as text like stored labels."""
    return read_frame(definition.reference, definition, "reference")


def model_classes(definition: ModelDefinition, reference: pd.DataFrame) -> list[str]:
    """The model's output order: `classes`, else the reference's labels sorted as text."""
    if definition.task == "regression":
        return []
    return list(definition.classes or sorted(reference["label"].unique()))


def supplied_vocabularies(definition: ModelDefinition) -> dict[str, list[str]]:
    """`vocabularies`, or the JSON object in `vocabularies_file`."""
    if definition.vocabularies_file is None:
        return dict(definition.vocabularies)
    path = definition.vocabularies_file
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelSetupError(f"cannot read {path}: {exc}", "vocabularies_file") from exc
    if not isinstance(data, dict):
        raise ModelSetupError(f"{path}: expected a JSON object", "vocabularies_file")
    for column, values in data.items():
        problem = vocabulary_problem(column, values, definition.categorical_features)
        if problem:
            raise ModelSetupError(f"{path}: {problem}", "vocabularies_file")
    return data


@dataclass
class ModelEncoding:
    """What a model is trained on and answers in: the daemon's encoder and the class order."""

    encoder: FeatureEncoder
    task: str
    classes: list[str]
    label_column: str
    fitted_on: str

    @property
    def width(self) -> int:
        return self.encoder.width

    @property
    def columns(self) -> list[str]:
        return self.encoder.columns

    @property
    def outputs(self) -> int:
        """What the model must return per row: one logit per class, or one value."""
        return 1 if self.task == "regression" else len(self.classes)

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        """The model's input for rows of raw features (float32, `width` columns)."""
        return self.encoder.transform(frame)

    def targets(self, frame: pd.DataFrame) -> np.ndarray:
        """Training targets for `frame`'s label column: class indices in the model's output
        order (int64), or the values (float32) for regression."""
        labels = frame[self.label_column]
        if labels.isna().any():
            raise ValueError(
                f"{int(labels.isna().sum())} rows have no {self.label_column!r}; drop them first"
            )
        if self.task == "regression":
            return pd.to_numeric(labels, errors="raise").to_numpy(dtype=np.float32)
        text = labels.map(label_text)
        unknown = sorted(set(text) - set(self.classes))
        if unknown:
            raise ValueError(
                f"labels {unknown} are not among the model's classes {self.classes} "
                "(the reference's labels, or `classes` in the config)"
            )
        index = {c: i for i, c in enumerate(self.classes)}
        return text.map(index).to_numpy(dtype=np.int64)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "encoding": self.encoder.encoding,
            "width": self.width,
            "columns": self.columns,
            "task": self.task,
            "classes": self.classes,
            "label_column": self.label_column,
            "fitted_on": self.fitted_on,
            "encoder": self.encoder.to_dict(),
        }

    def save(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1) + "\n", encoding="utf-8")
        return path


def read_encoder_file(definition: ModelDefinition) -> FeatureEncoder:
    """The encoder `encoder_file` holds, refused when it no longer matches the config."""
    path = Path(definition.encoder_file or "")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        encoder = FeatureEncoder.from_dict(data["encoder"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelSetupError(
            f"cannot read a fitted encoder from {path}: {exc}", "encoder_file"
        ) from exc
    declared = (
        definition.numeric_features,
        definition.categorical_features,
        definition.text_features,
        definition.encoding,
    )
    stored = (encoder.numeric, encoder.categorical, encoder.text, encoder.encoding)
    supplied = supplied_vocabularies(definition)
    stale = [c for c, values in supplied.items() if encoder.vocab.get(c) != list(values)]
    if declared != stored or stale or (encoder.text and encoder.buckets != definition.text_buckets):
        raise ModelSetupError(
            f"{path} was fitted for other features, encoding or vocabularies than the config "
            "declares now; rerun `warden model encoder --fit-on FILE --output DIR`",
            "encoder_file",
        )
    return encoder


def model_encoding(
    definition: ModelDefinition,
    fit_on: str | Path | pd.DataFrame | None = None,
    reference: pd.DataFrame | None = None,
) -> ModelEncoding:
    """The encoding the daemon uses for `definition` (fitted on `fit_on` instead, if given);
    `reference`: the reference set, when the caller has read it already."""
    reference = load_reference(definition) if reference is None else reference
    classes = model_classes(definition, reference)
    if fit_on is None and definition.encoder_file is not None:
        encoder, fitted_on = read_encoder_file(definition), str(definition.encoder_file)
    else:
        if fit_on is None:
            frame, fitted_on = reference, str(definition.reference)
        elif isinstance(fit_on, pd.DataFrame):
            absent = [c for c in definition.features if c not in fit_on]
            if absent:
                raise ReferenceDataError(f"the frame lacks columns {absent}", "--fit-on")
            frame, fitted_on = fit_on, "a data frame"
        else:
            frame, fitted_on = read_frame(fit_on, definition, "--fit-on"), str(fit_on)
        encoder = FeatureEncoder.fit(
            frame,
            definition.numeric_features,
            definition.categorical_features,
            definition.text_features,
            definition.text_buckets,
            encoding=definition.encoding,
            vocabularies=supplied_vocabularies(definition),
        )
    return ModelEncoding(encoder, definition.task, classes, definition.label_column, fitted_on)
