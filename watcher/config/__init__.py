"""Typed configuration (TOML → pydantic), validated at start; errors name the offending key.

Import from here: `sections` holds the service-wide sections (Kafka, storage, alerts, HTTP),
`models` what each monitored model is checked, corrected and approved by, `loading` reads a
file, resolves its relative paths and checks the files it names, `reference` renders
`docs/config-reference.md` from these models.
"""

from watcher.config.loading import fingerprint, load_config, missing_files
from watcher.config.models import (
    ApprovalConfig,
    ChecksConfig,
    ModelConfig,
    PinnedWindow,
    ScheduleConfig,
    SchedulesConfig,
    WardenConfig,
)
from watcher.config.sections import (
    LOCAL_HOSTS,
    NAME_PATTERN,
    SSL_FILE_KEYS,
    AlertsConfig,
    ConfigError,
    HttpConfig,
    KafkaConfig,
    StorageConfig,
    read_secret,
)

__all__ = [
    "LOCAL_HOSTS",
    "NAME_PATTERN",
    "SSL_FILE_KEYS",
    "AlertsConfig",
    "ApprovalConfig",
    "ChecksConfig",
    "ConfigError",
    "HttpConfig",
    "KafkaConfig",
    "ModelConfig",
    "PinnedWindow",
    "ScheduleConfig",
    "SchedulesConfig",
    "StorageConfig",
    "WardenConfig",
    "fingerprint",
    "load_config",
    "missing_files",
    "read_secret",
]
