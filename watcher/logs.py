"""Structured logging: JSON lines for services (journald, containers), console for people.

Secrets never reach a log line: `redact_secrets` (a structlog processor, also applied to the
standard-library records of the libraries we use) masks the value of every key that looks
secret (password, secret, token, authorization, api_key, ...; keys naming where a secret lives,
`*_env` / `*_file`, are kept), hides passwords inside URLs (`postgresql://user:***@host`) and
bearer tokens in any string, nested dicts and lists included."""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

import structlog
from structlog.typing import EventDict, WrappedLogger

MASK = "***"
SECRET_KEY = re.compile(
    r"passw(or)?d|pwd|secret|token|authorization|api[_-]?key|apikey|credential|private[_-]?key",
    re.IGNORECASE,
)
#   scheme://user:PASSWORD@host  (the password may not hold an unescaped "@", "/" or blank)
_URL_PASSWORD = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*:)[^@/\s]+(?=@)")
_BEARER = re.compile(r"(?P<head>\bBearer\s+)[^\s\"',;]+", re.IGNORECASE)


def secret_key(key: object) -> bool:
    """A key whose value is a secret (not one naming where it lives: `token_env`)."""
    if not isinstance(key, str) or key.lower().endswith(("_env", "_file", "_path")):
        return False
    return bool(SECRET_KEY.search(key))


def redact_text(text: str) -> str:
    """`text` with URL passwords and bearer tokens masked."""
    if "://" in text:
        text = _URL_PASSWORD.sub(rf"\g<head>{MASK}", text)
    if "earer" in text:
        text = _BEARER.sub(rf"\g<head>{MASK}", text)
    return text


def redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {
            k: (MASK if secret_key(k) and _maskable(v) else redact_value(v))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return type(value)(redact_value(v) for v in value)
    return value


def _maskable(value: Any) -> bool:
    """Flags and absent values say nothing about a secret; everything else is masked."""
    return value is not None and not isinstance(value, bool)


def redact_secrets(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: mask secret-looking keys and passwords inside strings."""
    return redact_value(event_dict)


class RedactingFilter(logging.Filter):
    """The same masking for standard-library records (kafka-python, SQLAlchemy, httpx)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken record is the logging module's to report
            return True
        redacted = redact_text(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def configure(*, json_lines: bool = True, level: str = "INFO", stream=None) -> None:
    stream = stream or sys.stderr
    renderer = (
        structlog.processors.JSONRenderer()
        if json_lines
        else structlog.dev.ConsoleRenderer(colors=stream.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact_secrets,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(level=logging.WARNING, stream=stream)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
    for noisy in ("kafka", "apscheduler", "evidently", "httpx"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
