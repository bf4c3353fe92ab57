"""Typed configuration (TOML → pydantic), validated at start; errors name the offending key."""

from __future__ import annotations

import hashlib
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator

from correctors.settings import CorrectionConfig, ModelDefinition, Strict
from storage.retention import RetentionConfig

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"


class ConfigError(ValueError):
    """The config file is unusable; the message names each offending key."""


class KafkaConfig(Strict):
    bootstrap_servers: str = "127.0.0.1:9092"
    group_id: str = "warden"
    predictions_topic: str = "predictions"
    labels_topic: str = "labels"
    alerts_topic: str = "warden.alerts"
    max_poll_records: int = Field(2000, gt=0)
    poll_timeout_ms: int = Field(500, gt=0)
    session_timeout_ms: int = Field(6000, gt=0)
    heartbeat_interval_ms: int = Field(1000, gt=0)
    max_message_bytes: int = Field(1_000_000, gt=0)


class StorageConfig(Strict):
    url: str = "sqlite:///warden.db"
    registry: Path = Path("registry")
    reports: Path = Path("reports")
    retention: RetentionConfig = RetentionConfig()
    lock_timeout_s: float = Field(
        30.0, gt=0, description="SQLite lock wait / PostgreSQL connect timeout before a retry"
    )


class AlertsConfig(Strict):
    log: bool = True
    kafka: bool = True
    webhook_url: str | None = None
    webhook_timeout_s: float = Field(5.0, gt=0)


class ChecksConfig(Strict):
    interval_seconds: float = Field(60.0, gt=0)
    window: int = Field(2000, gt=0, description="the last N predictions form the current window")
    min_rows: int = Field(200, gt=0, description="skip (with a recorded reason) below this")
    min_labelled: int = Field(200, gt=0, description="quality is checked from this many labels")
    drift_share: float = Field(0.3, gt=0, le=1, description="share of drifted columns that fails")
    max_accuracy_drop: float = Field(0.05, ge=0, le=1, description="vs the reference accuracy")


class ApprovalConfig(Strict):
    mode: Literal["auto", "manual"] = "manual"
    approved: list[str] = Field(default_factory=list)


class ModelConfig(ModelDefinition):
    """A monitored model: its definition plus how it is checked, corrected and approved."""

    checks: ChecksConfig = ChecksConfig()
    correction: CorrectionConfig = CorrectionConfig()
    approval: ApprovalConfig = ApprovalConfig()


class WardenConfig(Strict):
    kafka: KafkaConfig = KafkaConfig()
    storage: StorageConfig = StorageConfig()
    alerts: AlertsConfig = AlertsConfig()
    models: dict[str, ModelConfig] = Field(default_factory=dict)

    @field_validator("models")
    @classmethod
    def _model_names(cls, models: dict[str, ModelConfig]) -> dict[str, ModelConfig]:
        import re

        for name in models:
            if not re.match(NAME_PATTERN, name):
                raise ValueError(f"model name {name!r} must match {NAME_PATTERN}")
        return models


def _format_errors(path: Path, exc: ValidationError) -> str:
    lines = [f"{path}: invalid configuration"]
    for err in exc.errors():
        key = ".".join(str(part) for part in err["loc"]) or "<root>"
        lines.append(f"  {key}: {err['msg']}")
    return "\n".join(lines)


def _resolve_paths(cfg: WardenConfig, base: Path) -> WardenConfig:
    """Relative paths in the file are relative to the file, not to wherever the daemon starts."""

    def fix(p: Path | None) -> Path | None:
        return None if p is None else (p if p.is_absolute() else (base / p).resolve())

    url = cfg.storage.url
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        rel = url[len("sqlite:///") :]
        if rel and rel != ":memory:":
            url = f"sqlite:///{(base / rel).resolve()}"
    storage = cfg.storage.model_copy(
        update={
            "url": url,
            "registry": fix(cfg.storage.registry),
            "reports": fix(cfg.storage.reports),
        }
    )
    models = {
        name: m.model_copy(update={"reference": fix(m.reference), "weights": fix(m.weights)})
        for name, m in cfg.models.items()
    }
    return cfg.model_copy(update={"storage": storage, "models": models})


def _check_files(cfg: WardenConfig) -> list[str]:
    problems = []
    for name, m in cfg.models.items():
        if not m.reference.is_file():
            problems.append(f"  models.{name}.reference: file not found: {m.reference}")
        if m.weights is not None and not m.weights.is_file():
            problems.append(f"  models.{name}.weights: file not found: {m.weights}")
    return problems


def load_config(path: str | Path) -> WardenConfig:
    """Read, validate and resolve a config file, or raise ConfigError naming every bad key."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: config file not found") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    try:
        cfg = WardenConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_errors(path, exc)) from exc
    cfg = _resolve_paths(cfg, path.resolve().parent)
    problems = _check_files(cfg)
    if problems:
        raise ConfigError("\n".join([f"{path}: invalid configuration", *problems]))
    return cfg


def fingerprint(path: str | Path) -> str:
    """Content hash used to notice edits (mtime alone misses same-second writes)."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except FileNotFoundError:
        return ""
