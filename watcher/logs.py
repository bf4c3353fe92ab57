"""Structured logging: JSON lines for services (journald, containers), console for people."""

from __future__ import annotations

import logging
import sys

import structlog


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
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(level=logging.WARNING, stream=stream)
    for noisy in ("kafka", "apscheduler", "evidently", "httpx"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
