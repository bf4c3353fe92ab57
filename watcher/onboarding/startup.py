"""Start-up that fails early and briefly: before the daemon is even imported, `preflight` loads
the config, checks every model (factory, kwargs, weights, one encoded reference row, output
width), then waits up to `daemon.startup_timeout_s` for the database and the broker. Each
expected failure becomes one line naming the key (or the address tried) and the fix, and a
non-zero exit code; `guarded` prints it, or, with `--debug`, lets the traceback through.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import structlog
import typer

from watcher.config import ConfigError, WardenConfig, load_config

log = structlog.get_logger("warden.startup")
CONFIG_EXIT, UNREACHABLE_EXIT = 2, 1


class StartupError(RuntimeError):
    """An expected start-up failure: `str(self)` is what the operator reads."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def model_problems(cfg: WardenConfig) -> list:
    """Every model's problems (`correctors.models.preflight.Problem`), with its name."""
    from correctors.models.preflight import check_model

    found = []
    for name, definition in cfg.models.items():
        registered = (Path(cfg.storage.registry) / name / "ACTIVE").is_file()
        found += [(name, p) for p in check_model(name, definition, needs_weights=not registered)]
    return found


def check_models(cfg: WardenConfig) -> list[str]:
    """One line per model that is not ready: the key, what is wrong and the fix."""
    return [problem.line(name) for name, problem in model_problems(cfg)]


def models_ready(cfg: WardenConfig, say: Callable[[str], None]) -> bool:
    """`warden config check --files`: report each model's problems (or that it is ready)."""
    problems = check_models(cfg)
    for line in problems:
        say(line)
    return not problems


def wait_for_database(cfg: WardenConfig) -> None:
    """Connect (no migration) until it answers or `daemon.startup_timeout_s` passes."""
    from sqlalchemy import text
    from sqlalchemy.exc import SQLAlchemyError

    from storage.db import redact_url
    from storage.engine import connect

    timeout = cfg.daemon.startup_timeout_s
    where = redact_url(cfg.storage.url)
    deadline = time.monotonic() + timeout
    try:
        engine = connect(cfg.storage.engine_url(), lock_timeout_s=max(1.0, min(timeout, 30.0)))
    except OSError as exc:
        raise StartupError(f"storage.url {where}: {exc}", CONFIG_EXIT) from exc
    try:
        while True:
            try:
                with engine.connect() as conn:
                    conn.execute(text("SELECT 1"))
                return
            except SQLAlchemyError as exc:
                reason = " ".join(str(getattr(exc, "orig", None) or exc).split())
                if time.monotonic() >= deadline:
                    raise StartupError(
                        f"storage.url {where}: database unreachable for {timeout:g} s "
                        f"({reason}); check that it runs at that address, or raise "
                        "daemon.startup_timeout_s",
                        UNREACHABLE_EXIT,
                    ) from exc
                time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
    finally:
        engine.dispose()


def wait_for_broker(cfg: WardenConfig) -> None:
    """Bootstrap an admin client and list topics, within `daemon.startup_timeout_s`."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    from watcher.kafka.clients import client_security

    timeout = cfg.daemon.startup_timeout_s
    servers = cfg.kafka.bootstrap_servers
    quiet = logging.getLogger("kafka")  # its per-attempt ERROR lines would bury the one line
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=servers,
            bootstrap_timeout_ms=int(timeout * 1000),
            request_timeout_ms=max(1000, int(timeout * 1000)),
            **client_security(cfg.kafka),
        )
        try:
            admin.list_topics()
        finally:
            admin.close()
    except KafkaError as exc:
        raise StartupError(
            f"kafka.bootstrap_servers {servers}: no broker answered within {timeout:g} s "
            f"({_reason(exc)}); check the address and that the broker runs, or raise "
            "daemon.startup_timeout_s",
            UNREACHABLE_EXIT,
        ) from exc
    finally:
        quiet.setLevel(level)


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    name = type(exc).__name__
    return text if text.startswith(name) else f"{name}: {text}"


def preflight(config: Path) -> WardenConfig:
    """Everything `warden run` can check before the daemon starts, cheapest first."""
    started = time.monotonic()
    cfg = load_config(config)
    problems = model_problems(cfg)
    if problems:
        lines = "\n".join(problem.line(name) for name, problem in problems)
        raise StartupError(lines, CONFIG_EXIT) from problems[0][1].cause
    checked = time.monotonic()
    wait_for_database(cfg)
    wait_for_broker(cfg)
    log.info(
        "startup_checks_passed",
        models=list(cfg.models),
        models_s=round(checked - started, 2),
        reachable_s=round(time.monotonic() - checked, 2),
    )
    return cfg


def failure(exc: BaseException) -> tuple[str, int] | None:
    """The one line and exit code of an expected start-up failure; None for a bug."""
    from kafka.errors import KafkaError
    from sqlalchemy.exc import OperationalError

    from correctors.models.fitting import ModelSetupError
    from correctors.models.modeling import ModelLoadError
    from storage.migrate import MigrationError

    if isinstance(exc, StartupError):
        return str(exc), exc.exit_code
    if isinstance(exc, ConfigError | MigrationError | ModelSetupError | ModelLoadError):
        lines = str(exc).splitlines()
        if len(lines) == 2 and lines[0].endswith(": invalid configuration"):  # one key: one line
            return f"{lines[0]}: {lines[1].strip()}", CONFIG_EXIT
        return str(exc), CONFIG_EXIT
    if isinstance(exc, KafkaError | OperationalError):
        return _reason(exc), UNREACHABLE_EXIT
    return None


def guarded(start: Callable[[], int], *, debug: bool) -> int:
    """Run `start`; an expected failure prints its line(s) on stderr and returns its exit
    code. With `debug` (or for anything unexpected) the exception and its traceback escape."""
    try:
        return start()
    except Exception as exc:
        found = None if debug else failure(exc)
        if found is None:
            raise
        typer.echo(found[0], err=True)
        return found[1]
