"""The wire schema of DESIGN.md: decode and validate one Kafka message, or say why not.

Anything that fails here becomes a dead letter with the reason; nothing raises out of `parse_*`.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError, field_validator

from storage.tables import utcnow

Scalar = float | int | str | StrictBool | None
PAYLOAD_KEEP = 2000  # characters of a bad payload kept in the dead-letter row


class BadMessage(ValueError):
    """A message that cannot be stored as data; the text is the dead-letter reason."""


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False, strict=False)


class PredictionLog(_Message):
    prediction_id: str = Field(min_length=1, max_length=128)
    model: str = Field(min_length=1, max_length=128)
    model_version: str = Field(min_length=1, max_length=128)
    ts: datetime
    features: dict[str, Scalar]
    prediction: int | str | float
    scores: list[float] | None = None
    groups: dict[str, str | int] | None = None
    label: int | str | float | None = None

    @field_validator("features")
    @classmethod
    def _finite_features(cls, value: dict[str, Scalar]) -> dict[str, Scalar]:
        for key, item in value.items():
            if isinstance(item, float) and (item != item or item in (float("inf"), float("-inf"))):
                raise ValueError(f"feature {key!r} is not a finite number")
        return value


class LabelMessage(_Message):
    prediction_id: str = Field(min_length=1, max_length=128)
    label: int | str | float


def _reject_constant(name: str) -> Any:
    raise BadMessage(f"non-finite number {name} in JSON")


def _decode(raw: bytes | None, max_bytes: int) -> Any:
    if raw is None:
        raise BadMessage("empty message (null value)")
    if len(raw) > max_bytes:
        raise BadMessage(f"message of {len(raw)} bytes exceeds the {max_bytes}-byte limit")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadMessage(f"not UTF-8: {exc}") from exc
    if "\\u0000" in text:
        raise BadMessage("NUL character (\\u0000) in JSON text: not storable")
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise BadMessage(f"not valid JSON: {exc}") from exc


def _validation_reason(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        key = ".".join(str(p) for p in err["loc"]) or "<message>"
        parts.append(f"{key}: {err['msg']}")
    return "schema: " + "; ".join(parts)


def _label_text(value: int | str | float) -> str:
    """Labels are stored as text; 1, 1.0 and "1" must mean the same class."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def _validated(raw: bytes | None, max_bytes: int, schema: type[_Message]) -> Any:
    """Decode one message and validate it against `schema`, or raise BadMessage."""
    data = _decode(raw, max_bytes)
    if not isinstance(data, dict):
        raise BadMessage(f"expected a JSON object, got {type(data).__name__}")
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        raise BadMessage(_validation_reason(exc)) from exc


def parse_prediction(raw: bytes | None, max_bytes: int) -> dict[str, Any]:
    """Return a row for the predictions table, or raise BadMessage."""
    msg = _validated(raw, max_bytes, PredictionLog)
    ts = msg.ts.astimezone(UTC) if msg.ts.tzinfo else msg.ts.replace(tzinfo=UTC)
    label = None if msg.label is None else _label_text(msg.label)
    return {
        "prediction_id": msg.prediction_id,
        "model": msg.model,
        "model_version": msg.model_version,
        "ts": ts,
        "features": msg.features,
        "prediction": _label_text(msg.prediction),
        "scores": msg.scores,
        "groups": msg.groups,
        "label": label,
        "labelled_at": utcnow() if label is not None else None,
    }


def parse_label(raw: bytes | None, max_bytes: int) -> dict[str, Any]:
    """Return {prediction_id, label}, or raise BadMessage."""
    msg = _validated(raw, max_bytes, LabelMessage)
    return {"prediction_id": msg.prediction_id, "label": _label_text(msg.label)}


def dead_letter(topic: str, partition: int, offset: int, reason: str, raw: bytes | None) -> dict:
    """A dead-letter row: where the message was, why it failed, and a truncated copy."""
    text = "" if raw is None else raw[: PAYLOAD_KEEP * 4].decode("utf-8", errors="replace")
    return {
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "reason": reason[:1000],
        "payload": text[:PAYLOAD_KEEP].replace("\x00", "\\x00"),  # PostgreSQL text has no NUL
    }


def encode(message: dict[str, Any]) -> bytes:
    """Serialise a message the way producers should (ISO timestamps, UTF-8)."""
    return json.dumps(message, default=_default, separators=(",", ":")).encode("utf-8")


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    raise TypeError(f"cannot encode {type(value).__name__}")
