"""Typed configuration (TOML → pydantic), validated at start; errors name the offending key."""

from __future__ import annotations

import hashlib
import os
import tomllib
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from correctors.settings import CorrectionConfig, ModelDefinition, Strict
from storage.retention import RetentionConfig

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
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
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    ssl_cafile: Path | None = Field(None, description="CA bundle that signed the brokers' certs")
    ssl_certfile: Path | None = Field(None, description="client certificate (mutual TLS)")
    ssl_keyfile: Path | None = Field(None, description="the client certificate's private key")
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_plain_username: str | None = None
    sasl_password_env: str | None = Field(
        None,
        description="name of the environment variable holding the SASL password "
        "(the password never sits in the file)",
    )

    @model_validator(mode="after")
    def _security(self) -> KafkaConfig:
        sasl = self.security_protocol.startswith("SASL_")
        ssl = self.security_protocol.endswith("SSL")
        if sasl:
            missing = [
                key
                for key in ("sasl_mechanism", "sasl_plain_username", "sasl_password_env")
                if not getattr(self, key)
            ]
            if missing:
                raise ValueError(
                    f"security_protocol {self.security_protocol} needs {', '.join(missing)}"
                )
        else:
            extra = [
                k
                for k in ("sasl_mechanism", "sasl_plain_username", "sasl_password_env")
                if getattr(self, k)
            ]
            if extra:
                raise ValueError(
                    f"{', '.join(extra)} only apply with security_protocol SASL_PLAINTEXT or "
                    f"SASL_SSL (not {self.security_protocol})"
                )
        if not ssl:
            extra = [k for k in SSL_FILE_KEYS if getattr(self, k) is not None]
            if extra:
                raise ValueError(
                    f"{', '.join(extra)} only apply with security_protocol SSL or SASL_SSL "
                    f"(not {self.security_protocol})"
                )
        if self.ssl_keyfile is not None and self.ssl_certfile is None:
            raise ValueError("ssl_keyfile needs ssl_certfile (the certificate it belongs to)")
        return self

    def sasl_password(self) -> str | None:
        """The SASL password from `sasl_password_env`; ConfigError when it is unset."""
        return read_secret("kafka.sasl_password_env", env=self.sasl_password_env)


class StorageConfig(Strict):
    url: str = Field(
        "sqlite:///warden.db",
        description="SQLAlchemy URL without a password; the password comes from password_env "
        "or password_file (an inline password is accepted for development only)",
    )
    password_env: str | None = Field(
        None, description="name of the environment variable holding the database password"
    )
    password_file: Path | None = Field(
        None, description="file whose content (stripped) is the database password"
    )
    registry: Path = Path("registry")
    reports: Path = Path("reports")
    retention: RetentionConfig = RetentionConfig()
    lock_timeout_s: float = Field(
        30.0, gt=0, description="SQLite lock wait / PostgreSQL connect timeout before a retry"
    )

    @model_validator(mode="after")
    def _password_source(self) -> StorageConfig:
        if self.password_env and self.password_file is not None:
            raise ValueError("set at most one of password_env and password_file")
        if self.password_env or self.password_file is not None:
            if self.url.startswith("sqlite"):
                raise ValueError("password_env / password_file do not apply to a SQLite url")
            if _url_password(self.url) is not None:
                raise ValueError(
                    "url carries a password and password_env/password_file is set: "
                    "remove it from the url"
                )
        return self

    def notes(self) -> list[str]:
        """Warnings for `warden config check` (valid, but not for production)."""
        if _url_password(self.url) is not None:
            return [
                "storage.url: carries an inline password; outside development use "
                "storage.password_env or storage.password_file"
            ]
        return []

    def password(self) -> str | None:
        """The database password from password_env / password_file, or None (then the url's
        own, if any, applies). ConfigError names the key when the source is unusable."""
        if self.password_env:
            return read_secret("storage.password_env", env=self.password_env)
        if self.password_file is not None:
            return read_secret("storage.password_file", file=self.password_file)
        return None

    def engine_url(self) -> str:
        """The url to connect with: `url` with the password from the environment or the file
        inserted. Pass it to `make_engine`, never to a log (use `storage.db.redact_url`)."""
        from storage.db import with_password

        return with_password(self.url, self.password())


SSL_FILE_KEYS = ("ssl_cafile", "ssl_certfile", "ssl_keyfile")


def _url_password(url: str) -> str | None:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).password
    except Exception:  # noqa: BLE001 - unparsable urls fail later, where they are used
        return None


def read_secret(key: str, *, env: str | None = None, file: Path | None = None) -> str | None:
    """A secret from an environment variable or a file (content stripped), never from the
    config itself. ConfigError names `key` when the variable is unset/empty or the file is
    unreadable/empty. The value is never part of any message."""
    if env:
        value = os.environ.get(env, "")
        if not value:
            raise ConfigError(f"{key}: environment variable {env!r} is not set or empty")
        return value
    if file is not None:
        try:
            value = Path(file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{key}: cannot read {file}: {exc.__class__.__name__}") from exc
        if not value:
            raise ConfigError(f"{key}: {file} is empty")
        return value
    return None


class AlertsConfig(Strict):
    log: bool = True
    kafka: bool = True
    webhook_url: str | None = None
    webhook_timeout_s: float = Field(5.0, gt=0)
    webhook_attempts: int = Field(5, gt=0, description="tries per alert, exponential backoff")
    webhook_secret_env: str | None = Field(
        None,
        description="name of the environment variable holding the HMAC-SHA256 key; the "
        "signature goes in the X-Warden-Signature header (the key never sits in the file)",
    )
    webhook_secret_file: Path | None = Field(
        None, description="or: a file holding the HMAC key (relative to this config file)"
    )
    file: Path | None = Field(None, description="append each alert as one JSON line here")

    @model_validator(mode="after")
    def _one_secret_source(self) -> AlertsConfig:
        if self.webhook_secret_env and self.webhook_secret_file:
            raise ValueError("set webhook_secret_env or webhook_secret_file, not both")
        return self


class HttpConfig(Strict):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(9464, ge=0, le=65535, description="0 picks a free port")
    token_env: str | None = Field(
        None, description="environment variable with the bearer token; required off localhost"
    )

    @model_validator(mode="after")
    def _token_off_localhost(self) -> HttpConfig:
        if self.enabled and self.host not in LOCAL_HOSTS and not self.token_env:
            raise ValueError(
                f"binding to {self.host} needs token_env (a bearer token) or host 127.0.0.1"
            )
        return self


class ScheduleConfig(Strict):
    """When one kind of check runs: every N seconds, or on a crontab line (UTC)."""

    interval_seconds: float | None = Field(None, gt=0)
    cron: str | None = Field(None, description='crontab, e.g. "*/5 * * * *" (UTC)')

    @model_validator(mode="after")
    def _one_trigger(self) -> ScheduleConfig:
        if (self.interval_seconds is None) == (self.cron is None):
            raise ValueError("set exactly one of interval_seconds or cron")
        if self.cron is not None:
            from apscheduler.triggers.cron import CronTrigger

            try:
                CronTrigger.from_crontab(self.cron, timezone="UTC")
            except ValueError as exc:
                raise ValueError(f"cron {self.cron!r}: {exc}") from exc
        return self


class SchedulesConfig(Strict):
    """Per check kind; a kind left out runs every `checks.interval_seconds`."""

    drift: ScheduleConfig | None = None
    error: ScheduleConfig | None = None
    bias: ScheduleConfig | None = None


class PinnedWindow(Strict):
    """An earlier stretch of stored traffic used as the reference instead of the reference set."""

    start: datetime
    end: datetime

    @model_validator(mode="after")
    def _ordered(self) -> PinnedWindow:
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self


class ChecksConfig(Strict):
    interval_seconds: float = Field(60.0, gt=0, description="default schedule of every kind")
    schedules: SchedulesConfig = SchedulesConfig()
    window: int = Field(2000, gt=0, description="the last N predictions form the current window")
    window_minutes: float | None = Field(
        None, gt=0, description="instead: the last T minutes (at most `window` rows)"
    )
    pinned_reference: PinnedWindow | None = Field(
        None, description="compare with this earlier window instead of the reference set"
    )
    min_rows: int = Field(200, gt=0, description="skip (with a recorded reason) below this")
    min_labelled: int = Field(200, gt=0, description="quality is checked from this many labels")
    thresholds: Literal["calibrated", "fixed"] = Field(
        "calibrated",
        description="calibrated: each figure's normal range is learnt from reference chunks "
        "of the window's size; fixed: the absolute thresholds below",
    )
    calibration_rounds: int = Field(
        12, ge=5, description="reference chunks drawn to calibrate drift (each one Evidently run)"
    )
    calibration_sigmas: float = Field(3.0, gt=0, description="width of a normal range")
    drift_method: str | None = Field(
        None, description="Evidently stattest for every column (e.g. psi, wasserstein, ks)"
    )
    drift_threshold: float | None = Field(None, gt=0, description="that method's threshold")
    drift_share: float = Field(0.3, gt=0, le=1, description="fixed: share of drifted columns")
    min_drifted_columns: int = Field(
        1, gt=0, description="calibrated: columns outside their normal range that fail the check"
    )
    max_accuracy_drop: float = Field(0.05, ge=0, le=1, description="fixed: vs the reference")
    min_accuracy: float | None = Field(None, ge=0, le=1, description="absolute floor, any mode")
    max_mae_increase: float = Field(0.25, ge=0, description="fixed, regression: vs reference")
    max_mae: float | None = Field(None, gt=0, description="absolute ceiling (regression)")
    group_attributes: list[str] | None = Field(
        None, description="group keys checked for bias (default: every key seen in `groups`)"
    )
    min_group_rows: int = Field(50, gt=0, description="smaller groups are reported, not judged")
    max_parity_gap: float = Field(0.1, ge=0, le=1, description="fixed: selection-rate gap")
    max_opportunity_gap: float = Field(0.1, ge=0, le=1, description="fixed: TPR gap")
    max_quality_gap: float = Field(0.1, ge=0, description="fixed: accuracy (or MAE) gap")
    bias_alpha: float = Field(
        0.01, gt=0, lt=1, description="a gap must also be significant in the window itself"
    )
    slice_bins: int = Field(5, ge=2, description="quantile bins per numeric feature")
    slice_min_rows: int = Field(30, gt=0)
    slice_alpha: float = Field(0.01, gt=0, lt=1, description="significance, Bonferroni-adjusted")
    resolve_after: int = Field(3, gt=0, description="clean checks that resolve an incident")
    cooldown_minutes: float = Field(
        30.0, ge=0, description="a kind that resolved this recently reopens without a new alert"
    )
    max_flagged_ids: int = Field(5000, gt=0, description="sample ids kept in an incident")


class ApprovalConfig(Strict):
    mode: Literal["auto", "manual"] = "manual"
    approved: list[str] = Field(default_factory=list)
    watch_checks: int = Field(
        3, ge=0, description="judged quality checks of a new champion watched after a swap"
    )
    watch_tolerance: float = Field(
        0.02,
        ge=0,
        description="roll back when live accuracy falls this far below the old champion's",
    )


class ModelConfig(ModelDefinition):
    """A monitored model: its definition plus how it is checked, corrected and approved."""

    checks: ChecksConfig = ChecksConfig()
    correction: CorrectionConfig = CorrectionConfig()
    approval: ApprovalConfig = ApprovalConfig()


class WardenConfig(Strict):
    kafka: KafkaConfig = KafkaConfig()
    storage: StorageConfig = StorageConfig()
    alerts: AlertsConfig = AlertsConfig()
    http: HttpConfig = HttpConfig()
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
            "password_file": fix(cfg.storage.password_file),
        }
    )
    kafka = cfg.kafka.model_copy(update={k: fix(getattr(cfg.kafka, k)) for k in SSL_FILE_KEYS})
    models = {
        name: m.model_copy(update={"reference": fix(m.reference), "weights": fix(m.weights)})
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
        if m.weights is not None and not m.weights.is_file():
            problems.append(f"  models.{name}.weights: file not found: {m.weights}")
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
