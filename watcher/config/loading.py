"""Reading a config file: TOML → validated models, relative paths resolved against the file,
the files it names checked; errors name every offending key."""

from __future__ import annotations

import hashlib
import tomllib
from pathlib import Path

from pydantic import ValidationError

from watcher.config.models import WardenConfig
from watcher.config.sections import SSL_FILE_KEYS, ConfigError


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
            "password_file": fix(cfg.storage.password_file),
        }
    )
    kafka = cfg.kafka.model_copy(update={k: fix(getattr(cfg.kafka, k)) for k in SSL_FILE_KEYS})
    models = {
        name: m.model_copy(
            update={
                "reference": fix(m.reference),
                "weights": fix(m.weights),
                "vocabularies_file": fix(m.vocabularies_file),
                "encoder_file": fix(m.encoder_file),
                "python_path": [fix(p) for p in m.python_path],
            }
        )
        for name, m in cfg.models.items()
    }
    alerts = cfg.alerts.model_copy(
        update={
            "file": fix(cfg.alerts.file),
            "webhook_secret_file": fix(cfg.alerts.webhook_secret_file),
        }
    )
    return cfg.model_copy(
        update={"kafka": kafka, "storage": storage, "alerts": alerts, "models": models}
    )


def _check_files(cfg: WardenConfig) -> list[str]:
    problems = []
    for key in SSL_FILE_KEYS:
        path = getattr(cfg.kafka, key)
        if path is not None and not path.is_file():
            problems.append(f"  kafka.{key}: file not found: {path}")
    for name, m in cfg.models.items():
        if not m.reference.is_file():
            problems.append(f"  models.{name}.reference: file not found: {m.reference}")
        for key in ("weights", "vocabularies_file", "encoder_file"):
            path = getattr(m, key)
            if path is not None and not path.is_file():
                problems.append(f"  models.{name}.{key}: file not found: {path}")
        for folder in m.python_path:
            if not folder.is_dir():
                problems.append(f"  models.{name}.python_path: folder not found: {folder}")
    return problems


def load_config(path: str | Path, *, check_files: bool = True) -> WardenConfig:
    """Read, validate and resolve a config file, or raise ConfigError naming every bad key.
    `check_files=False` skips the existence checks (a config written for another machine)."""
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
    problems = _check_files(cfg) if check_files else []
    if problems:
        raise ConfigError("\n".join([f"{path}: invalid configuration", *problems]))
    return cfg


def missing_files(cfg: WardenConfig) -> list[str]:
    """The files the config names that do not exist here (see `warden config check`)."""
    return [p.strip() for p in _check_files(cfg)]


def fingerprint(path: str | Path) -> str:
    """Content hash used to notice edits (mtime alone misses same-second writes)."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except FileNotFoundError:
        return ""
