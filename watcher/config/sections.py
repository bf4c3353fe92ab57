"""Service-wide config sections: Kafka, storage, alerts, HTTP, and how secrets are read."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from correctors.settings import Strict
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
    undecodable_retries: int = Field(
        2,
        ge=0,
        description="re-fetches of a record batch the client cannot decode (codec library "
        "missing or unknown, corrupt batch, failed CRC) before its offset range is "
        "dead-lettered and skipped",
    )
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
