"""The configuration reference (markdown), generated from the pydantic models of the config.

`warden config reference --output docs/config-reference.md` writes it; a test compares the
committed file with `render()`, so the reference cannot drift from the schema. Every section
and key of `WardenConfig` is listed, recursively, with its type, constraints, default and the
Field description. The few rules that span several keys (model validators) are not Field
metadata; they are written out in `RULES` below.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterator
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Any, Literal

import annotated_types as at
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from watcher.config import NAME_PATTERN, WardenConfig

COMMAND = "warden config reference --output docs/config-reference.md"

# Rules checked by model validators (several keys at once), by class name.
RULES: dict[str, list[str]] = {
    "HttpConfig": [
        "With `enabled = true`, a `host` other than `127.0.0.1`, `localhost` or `::1` needs "
        "`token_env`.",
    ],
    "KafkaConfig": [
        '`security_protocol = "SASL_PLAINTEXT"` or `"SASL_SSL"` needs `sasl_mechanism`, '
        "`sasl_plain_username` and `sasl_password_env`, which apply to those two only.",
        "`ssl_cafile`, `ssl_certfile` and `ssl_keyfile` apply to `SSL` and `SASL_SSL` only, "
        "must be existing files, and `ssl_keyfile` needs `ssl_certfile`.",
    ],
    "StorageConfig": [
        "Set at most one of `password_env` and `password_file`; neither applies to a SQLite "
        "`url` or to a `url` that carries a password.",
    ],
    "AlertsConfig": ["Set at most one of `webhook_secret_env` and `webhook_secret_file`."],
    "ScheduleConfig": ["Set exactly one of `interval_seconds` or `cron`."],
    "PinnedWindow": ["`end` must be after `start`."],
    "ModelConfig": [
        "Declare at least one of `numeric_features`, `categorical_features`, `text_features`; "
        "a column may appear under one kind only.",
        "`reference` (and `weights`, when set) must be existing files when the config is "
        "loaded; relative paths are relative to the config file.",
    ],
}

# What a key means, for keys whose Field has no description (a Field description, once added,
# wins). Keyed by table path + key; `render()` refuses a note whose key no longer exists.
NOTES: dict[str, str] = {
    "kafka.bootstrap_servers": "comma-separated host:port list of the brokers",
    "kafka.group_id": "consumer group; daemons sharing it split the partitions between them",
    "kafka.predictions_topic": "prediction logs are consumed from here (and `warden serve` "
    "logs to it)",
    "kafka.labels_topic": "delayed labels `{prediction_id, label}` are consumed from here",
    "kafka.alerts_topic": "alerts are published here when `alerts.kafka` is true",
    "kafka.max_poll_records": "messages per consumer batch (one database transaction)",
    "kafka.poll_timeout_ms": "how long one poll waits for messages",
    "kafka.session_timeout_ms": "consumer group session timeout",
    "kafka.heartbeat_interval_ms": "consumer group heartbeat interval; a broker that misses "
    "three heartbeats is reported unreachable",
    "kafka.max_message_bytes": "larger messages become dead letters without being parsed",
    "kafka.security_protocol": "how clients connect to the brokers",
    "kafka.sasl_mechanism": "with SASL_PLAINTEXT or SASL_SSL",
    "kafka.sasl_plain_username": "with SASL_PLAINTEXT or SASL_SSL",
    "storage.registry": "the model registry folder (versions, ACTIVE pointer, history)",
    "storage.reports": "the folder for the HTML reports of checks",
    "storage.retention.max_age_days": "delete predictions, dead letters and parked labels "
    "older than this",
    "storage.retention.max_rows_per_model": "keep the newest N predictions per model",
    "storage.retention.batch_size": "rows per delete transaction",
    "storage.retention.interval_minutes": "how often retention runs",
    "alerts.log": "alerts as structured log lines",
    "alerts.kafka": "alerts as JSON on `kafka.alerts_topic`",
    "alerts.webhook_url": "POST each alert as JSON here, retried with backoff on connection "
    "errors, 5xx and 429",
    "alerts.webhook_timeout_s": "per request",
    "http.enabled": "serve /healthz, /readyz, /status and /metrics",
    "http.host": "address to bind",
    "models.<name>.factory": "`package.module:function` returning the torch `nn.Module` "
    '(required for kind = "torch", refused for the other kinds)',
    "models.<name>.factory_kwargs": "keyword arguments for the factory",
    "models.<name>.weights": "the model file registered as the first version `v1`: a state "
    "dict (loaded with `torch.load(weights_only=True)`), a skops file, a LightGBM text model or "
    "an XGBoost JSON/UBJ file, by `kind`; never unpickled; needed while the registry holds no "
    "version of the model",
    "models.<name>.task": "classification: one logit per class; regression: one output",
    "models.<name>.reference": "labelled reference set (CSV or Parquet), held out from training",
    "models.<name>.label_column": "the label's column in the reference set",
    "models.<name>.numeric_features": "standardised on the reference; missing values become "
    "the mean",
    "models.<name>.categorical_features": "one-hot over the reference's values plus one "
    "`<unknown>` slot for unseen and missing values",
    "models.<name>.checks.slice_min_rows": "smallest error slice judged",
    "models.<name>.checks.schedules.drift": "schedule of the drift check",
    "models.<name>.checks.schedules.error": "schedule of the quality and error-slice check",
    "models.<name>.checks.schedules.bias": "schedule of the per-group check",
    "models.<name>.checks.schedules.<kind>.interval_seconds": "run every N seconds",
    "models.<name>.checks.pinned_reference.start": "stored labelled predictions with "
    "`ts` ≥ start …",
    "models.<name>.checks.pinned_reference.end": "… and `ts` < end (UTC)",
    "models.<name>.correction.enabled": "fine-tune candidates when checks fail",
    "models.<name>.correction.epochs": "at most this many epochs",
    "models.<name>.correction.learning_rate": "Adam (AdamW with weight_decay) learning rate",
    "models.<name>.correction.batch_size": "rows per training step",
    "models.<name>.correction.early_stopping_fraction": "share of the fine-tuning set held "
    "out for early stopping",
    "models.<name>.correction.reference_holdout_fraction": "share of the reference kept out "
    "of replay for the no-forgetting check",
    "models.<name>.correction.parity_tolerance": "largest native model vs onnxruntime "
    "difference the gate accepts (a differing label fails however small)",
    "models.<name>.correction.seed": "seeds the splits, replay sampling and training",
    "models.<name>.approval.mode": "auto: a validated candidate is swapped in at once; "
    "manual: only the ids in `approved` are",
    "models.<name>.approval.approved": "candidate ids to swap in (manual mode); "
    "`warden approve ID` adds one",
}

INTRO = f"""\
# Configuration reference

Generated from the pydantic models of the config (`watcher/config/`,
`correctors/settings.py`, `storage/retention.py`) by
`{COMMAND}`. Do not edit it by hand: a test
compares it with the generator's output.

The config is one TOML file. Unknown keys are errors, and `warden config check FILE` names
the offending key (`models.credit.checks.window: …`). Relative paths are relative to the
config file's folder, as is a relative SQLite path in `storage.url`. A key left out takes its
default; *required* keys have none. Every section may be left out, and a model needs
`reference`, at least one list of features and, for a torch model, `factory`. The running
daemon re-reads the file when it changes; changes to `[kafka]` and `[storage]` take effect at
the next start.

Model names (`<name>` below) must match `{NAME_PATTERN}`.
"""


def render() -> str:
    """The whole reference as markdown (deterministic: no timestamps)."""
    sections = list(_sections(WardenConfig, ""))
    keys = {_join(path, name) for path, _cls, rows in sections for name, _i, _c in rows}
    stale = sorted(set(NOTES) - keys)
    if stale:
        raise KeyError(f"config_reference.NOTES names keys the schema lacks: {stale}")
    out = [INTRO, "## Sections\n"]
    for path, _cls, _rows in sections:
        out.append(f"- [`{_title(path)}`](#{_anchor(path)})")
    out.append("")
    for path, cls, rows in sections:
        out.append(f"## `{_title(path)}`\n")
        doc = _own_doc(cls)
        if doc:
            out.append(doc + "\n")
        for rule in RULES.get(cls.__name__, []):
            out.append(f"- {rule}")
        if RULES.get(cls.__name__):
            out.append("")
        out.append("| key | type | default | description |")
        out.append("|---|---|---|---|")
        for name, info, nested in rows:
            out.append(
                "| "
                + " | ".join(
                    [
                        f"`{name}`",
                        _cell(_type_text(info, nested)),
                        _cell(_default_text(info, nested)),
                        _cell(_prose(info.description or NOTES.get(_join(path, name), ""))),
                    ]
                )
                + " |"
            )
        out.append("")
    return "\n".join(out).rstrip("\n") + "\n"


# -- walking the models -----------------------------------------------------------------------


def _sections(
    cls: type[BaseModel], path: str
) -> Iterator[tuple[str, type[BaseModel], list[tuple[str, FieldInfo, str | None]]]]:
    """(table path, model class, [(key, field, child path or None)]) for `cls` and below.

    A key whose value is a table becomes its own section; several keys of one class share one
    section with a `<kind>` placeholder (`checks.schedules.<kind>`), and a dict of tables gets
    a `<name>` placeholder (`models.<name>`)."""
    rows: list[tuple[str, FieldInfo, str | None]] = []
    children: dict[type[BaseModel], list[str]] = {}
    mapped: dict[str, type[BaseModel]] = {}
    for name, info in cls.model_fields.items():
        target, is_map = _nested(info.annotation)
        if target is None:
            rows.append((name, info, None))
            continue
        if is_map:
            mapped[name] = target
        else:
            children.setdefault(target, []).append(name)
        rows.append((name, info, ""))  # filled in below, once placeholders are known
    child_path: dict[str, str] = {}
    for name in mapped:
        child_path[name] = _join(path, name, "<name>")
    for names in children.values():
        for name in names:
            child_path[name] = _join(path, "<kind>" if len(names) > 1 else name)
    rows = [(n, i, child_path[n] if c is not None else None) for n, i, c in rows]
    if path:  # the root holds tables only
        yield path, cls, rows
    seen: set[str] = set()
    for _name, info, child in rows:
        if child is None or child in seen:
            continue
        seen.add(child)
        target, _ = _nested(info.annotation)
        assert target is not None
        yield from _sections(target, child)


def _join(path: str, *parts: str) -> str:
    return ".".join(p for p in (path, *parts) if p)


def _nested(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """The model class a key holds (a table), and whether it is a dict of such tables."""
    for arg in _union_args(annotation):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg, False
        if typing.get_origin(arg) is dict:
            value = typing.get_args(arg)[1]
            if isinstance(value, type) and issubclass(value, BaseModel):
                return value, True
    return None, False


def _union_args(annotation: Any) -> list[Any]:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return [a for a in typing.get_args(annotation) if a is not type(None)]
    return [annotation]


def _optional(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(
        None
    ) in typing.get_args(annotation)


# -- cells ------------------------------------------------------------------------------------


def _type_text(info: FieldInfo, child: str | None) -> str:
    if child is not None:
        kind = "tables" if _nested(info.annotation)[1] else "table"
        text = f"{kind}: see [`{_title(child)}`](#{_anchor(child)})"
    else:
        text = " or ".join(_type_name(a) for a in _union_args(info.annotation))
    limits = _constraints(info)
    if limits:
        text += f", {limits}"
    if _optional(info.annotation):
        text += ", optional"
    return text


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " or ".join(f'`"{v}"`' if isinstance(v, str) else f"`{v}`" for v in tp.__args__)
    if origin is list:
        (item,) = typing.get_args(tp) or (Any,)
        return f"list of {_type_name(item)}"
    if origin is dict:
        return "table"
    if isinstance(tp, type) and issubclass(tp, Enum):
        return " or ".join(f"`{m.value!r}`" for m in tp)
    names = {
        str: "string",
        int: "integer",
        float: "number",
        bool: "boolean",
        Path: "path",
        datetime: "datetime (TOML offset date-time)",
        Any: "any",
    }
    return names.get(tp, getattr(tp, "__name__", str(tp)))


def _constraints(info: FieldInfo) -> str:
    parts = []
    for meta in info.metadata:
        if isinstance(meta, at.Gt):
            parts.append(f"> {meta.gt}")
        elif isinstance(meta, at.Ge):
            parts.append(f"≥ {meta.ge}")
        elif isinstance(meta, at.Lt):
            parts.append(f"< {meta.lt}")
        elif isinstance(meta, at.Le):
            parts.append(f"≤ {meta.le}")
        elif isinstance(meta, at.MinLen):
            parts.append(f"at least {meta.min_length} item(s)")
        elif isinstance(meta, at.MaxLen):
            parts.append(f"at most {meta.max_length} item(s)")
        elif getattr(meta, "pattern", None):
            parts.append(f"matching `{meta.pattern}`")
    return ", ".join(parts)


def _default_text(info: FieldInfo, child: str | None) -> str:
    if info.is_required():
        return "*required*"
    value = info.get_default(call_default_factory=True)
    if value is None or value is PydanticUndefined:
        return "unset"
    if child is not None and isinstance(value, BaseModel):
        return "(the table's defaults)"
    return f"`{_toml(value)}`"


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | Path):
        return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, Enum):
        return _toml(value.value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + "}"
    return repr(value)


def _prose(text: str) -> str:
    """Escape markdown emphasis characters outside `code spans` (crontab lines, formulas)."""
    parts = text.split("`")
    for i in range(0, len(parts), 2):  # even parts are outside code spans
        parts[i] = parts[i].replace("*", "\\*")
    return "`".join(parts)


def _cell(text: str) -> str:
    """Table cells: one line, pipes escaped."""
    return " ".join(text.split()).replace("|", "\\|")


# -- titles -----------------------------------------------------------------------------------


def _title(path: str) -> str:
    return f"[{path}]"


def _anchor(path: str) -> str:
    """GitHub's heading anchor for `## [path]`: lower case, punctuation but - and _ dropped."""
    keep = [c for c in _title(path).lower() if c.isalnum() or c in "-_ "]
    return "".join(keep).replace(" ", "-")


def _own_doc(cls: type[BaseModel]) -> str:
    """The class's own docstring (not an inherited one), as one paragraph."""
    doc = cls.__dict__.get("__doc__")
    return " ".join(doc.split()) if doc else ""
