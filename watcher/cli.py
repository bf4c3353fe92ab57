"""The `warden` command line (typer)."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.console import Console

from watcher.onboarding.commands import DebugOption, model_app

app = typer.Typer(
    help="model-warden: audit and correct production ML models.",
    no_args_is_help=True,
    add_completion=False,
)
config_app = typer.Typer(help="Configuration commands.", no_args_is_help=True)
app.add_typer(config_app, name="config")
db_app = typer.Typer(help="Database schema commands (Alembic migrations).", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(model_app, name="model")
console = Console()

ConfigOption = typer.Option(..., "--config", "-c", help="Path of the warden TOML config file.")


def _load(path: Path):
    from watcher.config import ConfigError, load_config

    try:
        return load_config(path)
    except ConfigError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from exc


def _engine(cfg):
    """The store's engine (password from the environment or a file, schema upgraded)."""
    from storage.db import make_engine
    from storage.migrate import MigrationError
    from watcher.config import ConfigError

    try:
        return make_engine(cfg.storage.engine_url())
    except (ConfigError, MigrationError) as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from exc


@config_app.command("check")
def config_check(
    path: Path = typer.Argument(..., help="Config file to validate."),
    files: bool = typer.Option(
        False, "--files", help="Also fail on a missing file and check each model as `run` does."
    ),
) -> None:
    """Validate a config file; errors name the offending key. Files it names that are missing
    on this machine are listed (a production config checked on a workstation); with
    --files they fail the check, as they fail `warden run`."""
    from watcher.config import ConfigError, load_config, missing_files
    from watcher.onboarding.startup import models_ready

    try:
        cfg = load_config(path, check_files=False)
    except ConfigError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from exc
    missing = missing_files(cfg)
    for note in cfg.storage.notes():
        console.print(f"[yellow]note[/]: {note}")
    for line in missing:
        console.print(f"[yellow]not on this machine[/]: {line}")
    if missing and files:
        console.print(f"[red]{path}: {len(missing)} file(s) missing[/]")
        raise typer.Exit(2)
    if files and not models_ready(cfg, lambda line: typer.echo(line, err=True)):
        raise typer.Exit(2)  # factory, kwargs, weights, one encoded row: as `warden run` checks
    from watcher.kafka.codecs import describe

    for line in describe():  # which compressed batches this install can read
        console.print(f"kafka {line}", soft_wrap=True)
    console.print(f"[green]ok[/]: {path} ({len(cfg.models)} model(s): {', '.join(cfg.models)})")


@config_app.command("reference")
def config_reference(
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Write the markdown here instead of printing it."
    ),
) -> None:
    """Print (or write) the configuration reference: every section and key, with its type,
    default and description, generated from the config schema."""
    from watcher.config.reference import render

    text = render()
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        console.print(f"wrote {output}")


def _db_engine(config: Path):
    from storage.db import make_engine
    from watcher.config import ConfigError

    cfg = _load(config)
    try:
        return make_engine(cfg.storage.engine_url(), create=False), cfg
    except ConfigError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from exc


@db_app.command("upgrade")
def db_upgrade(config: Path = ConfigOption) -> None:
    """Migrate the database schema to the newest revision (the daemon also does it at start).
    A database made before migrations existed is recognised and stamped first."""
    from rich.markup import escape
    from sqlalchemy.exc import SQLAlchemyError

    from storage.db import redact_url
    from storage.migrate import MigrationError, current, upgrade

    engine, cfg = _db_engine(config)
    try:
        before = current(engine)
        after = upgrade(engine)
    except (MigrationError, SQLAlchemyError) as exc:
        where = escape(redact_url(cfg.storage.url))
        console.print(f"[red]{where}: {escape(str(exc))}[/]", soft_wrap=True)
        raise typer.Exit(1) from exc
    finally:
        engine.dispose()
    note = "" if before != after else " (already at head)"
    where = escape(redact_url(cfg.storage.url))
    console.print(f"{where}: {before or 'none'} -> {after}{note}", soft_wrap=True)


@db_app.command("current")
def db_current(config: Path = ConfigOption) -> None:
    """Print the schema revision the database is at, and the newest one."""
    from rich.markup import escape
    from sqlalchemy.exc import SQLAlchemyError

    from storage.db import redact_url
    from storage.migrate import current, head

    engine, cfg = _db_engine(config)
    try:
        revision = current(engine)
    except SQLAlchemyError as exc:
        where = escape(redact_url(cfg.storage.url))
        console.print(f"[red]{where}: {escape(str(exc))}[/]", soft_wrap=True)
        raise typer.Exit(1) from exc
    finally:
        engine.dispose()
    state = "at head" if revision == head() else f"head is {head()}; run `warden db upgrade`"
    where = escape(redact_url(cfg.storage.url))
    console.print(f"{where}: {revision or 'none'} ({state})", soft_wrap=True)


@app.command()
def run(config: Path = ConfigOption, log_level: str = "INFO", debug: bool = DebugOption) -> None:
    """Run the daemon in the foreground (what systemd or a container starts). The config, each
    model, the database and the broker are checked first; a failure is one line, exit 1/2."""
    from watcher import logs
    from watcher.onboarding.startup import guarded, preflight

    def start() -> int:
        preflight(config)
        from watcher.daemon.service import Daemon

        return Daemon(config).run()

    logs.configure(json_lines=True, level=log_level)
    from watcher.kafka.codecs import log_support

    log_support()  # which compressed batches this install can read
    raise typer.Exit(guarded(start, debug=debug))


@app.command()
def status(
    config: Path = ConfigOption,
    as_json: bool = typer.Option(False, "--json", help="Print the status document as JSON."),
) -> None:
    """Models, active versions, last checks, daemons, open incidents and candidates; one head
    line per item and its figures summarised below (readable at 80 columns and in logs)."""
    from storage.registry import ModelRegistry
    from watcher.daemon.status import render_status_document, status_document

    cfg = _load(config)
    doc = status_document(cfg, _engine(cfg), ModelRegistry(cfg.storage.registry))
    if as_json:
        _print_json(doc)
    else:
        render_status_document(doc, console)


@app.command()
def incidents(
    incident_id: int | None = typer.Argument(
        None, help="One incident: its window, verdict, figures, candidates and next action."
    ),
    config: Path = ConfigOption,
    open_only: bool = typer.Option(False, "--open", help="Only the open incidents."),
    model: str | None = typer.Option(None, "--model", "-m", help="Only this model's."),
    as_json: bool = typer.Option(False, "--json", help="Print the incidents as JSON."),
) -> None:
    """Incidents (drift, error, bias): severity, status, verdict, page, candidate; with an
    ID, that incident's whole story (what its page shows)."""
    from watcher.daemon.status import incidents_view, render_incident, render_incidents

    cfg = _load(config)
    doc = incidents_view(cfg, _engine(cfg), config, incident_id, open_only, model)
    if doc is None:
        console.print(f"[red]no incident #{incident_id}[/]")
        raise typer.Exit(1)
    if as_json:
        _print_json(doc)
    elif isinstance(doc, list):  # the list: no id was given
        render_incidents(doc, console)
    else:
        render_incident(doc, console)


def _print_json(value) -> None:
    """Plain JSON on stdout (no rich markup or wrapping), for scripts and `jq`."""
    import json

    typer.echo(json.dumps(value, indent=2, allow_nan=False))


@app.command()
def rollback(
    model: str = typer.Argument(..., help="Model to roll back."), config: Path = ConfigOption
) -> None:
    """Restore the version that served before the current one."""
    from correctors.swap import rollback as do_rollback
    from storage.registry import ModelRegistry, RegistryError

    cfg = _load(config)
    try:
        current, target = do_rollback(
            _engine(cfg),
            ModelRegistry(cfg.storage.registry),
            model,
            actor="operator",
        )
    except RegistryError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(1) from exc
    console.print(f"rolled back {model}: {current} → {target}")


@app.command()
def candidates(
    config: Path = ConfigOption,
    model: str | None = typer.Option(None, help="Only this model."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Candidates with their status, metrics and the validation gate's reasons."""
    from watcher.daemon.status import candidates_document, render_candidates

    cfg = _load(config)
    engine = _engine(cfg)
    rows = _with_rules(engine, candidates_document(engine, model))
    if as_json:
        _print_json(rows)
    else:
        render_candidates(rows, console)


def _with_rules(engine, rows: list[dict]) -> list[dict]:
    """Each candidate's gate results by rule (`rules`) and the gating rules it failed or could
    not judge, by name (`failed_rules`); a verdict stored without rule results has none."""
    from sqlmodel import Session, select

    from correctors.validation.verdict import failed_rule_names, stored_rules
    from storage.tables import Candidate

    ids = [row["id"] for row in rows]
    with Session(engine) as session:
        found = session.exec(select(Candidate).where(Candidate.id.in_(ids))).all()  # type: ignore[attr-defined]
        verdicts = {c.id: c.verdict for c in found}
    for row in rows:
        verdict = verdicts.get(row["id"])
        row["rules"] = stored_rules(verdict)
        row["failed_rules"] = failed_rule_names(verdict)
    return rows


@app.command()
def approve(
    candidate_id: str = typer.Argument(..., help="Candidate id, e.g. credit-v2."),
    config: Path = ConfigOption,
    force: bool = typer.Option(
        False,
        "--force",
        help="Approve even when the candidate is significantly worse than the champion on the "
        "rows labelled since it was trained (recorded with the operator as actor).",
    ),
) -> None:
    """Approve a validated candidate: shows champion and candidate on the rows labelled since
    its training cut-off, refuses one that has become significantly worse (unless --force),
    then writes its id into the config file's approved list (the same edit an operator makes
    by hand); the running daemon swaps it in."""
    from correctors.swap import SwapRefused
    from watcher.config import ConfigError
    from watcher.daemon.approvals import approve as approve_candidate

    cfg = _load(config)
    try:
        done = approve_candidate(config, _engine(cfg), candidate_id, force=force)
    except (SwapRefused, ConfigError) as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(1) from exc
    console.print(done.proof.sentence())
    verb = "approved" if done.added else "already approved"
    if done.forced:
        verb += " (forced over the fresh rows: recorded)"
    console.print(f"{verb}: {candidate_id} (in {config}); the daemon swaps it in")


@app.command()
def reject(
    candidate_id: str = typer.Argument(..., help="Candidate id."),
    config: Path = ConfigOption,
    reason: str = typer.Option("rejected by an operator", help="Recorded with the rejection."),
) -> None:
    """Reject a candidate that awaits approval; it can never be swapped in afterwards."""
    from correctors.swap import SwapRefused
    from watcher.daemon.approvals import reject_candidate

    cfg = _load(config)
    try:
        reject_candidate(config, _engine(cfg), candidate_id, reason)
    except SwapRefused as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(1) from exc
    console.print(f"rejected: {candidate_id}")


@app.command()
def retry(
    incident_id: int = typer.Argument(..., help="Open incident id (see `warden incidents`)."),
    config: Path = ConfigOption,
    reason: str = typer.Option("", help="Recorded with the request."),
) -> None:
    """Ask for another correction attempt at the daemon's next round (actor operator)."""
    from watcher.daemon.attempts import request_retry

    try:
        incident = request_retry(_engine(_load(config)), incident_id, reason)
    except (LookupError, ValueError) as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(1) from exc
    console.print(f"retry requested: incident {incident.id} of {incident.model}")


@app.command()
def serve(
    model: str = typer.Argument(..., help="Model to serve: its ACTIVE registry version."),
    config: Path = ConfigOption,
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8080, "--port", help="Port to listen on; 0 picks a free one."),
    token_env: str | None = typer.Option(
        None, "--token-env", help="Environment variable with the bearer token (off localhost)."
    ),
    max_body_bytes: int = typer.Option(
        1 << 20, "--max-body-bytes", min=1, help="Larger request bodies are refused (413)."
    ),
    log_predictions: bool = typer.Option(
        True, "--log/--no-log", help="Log every prediction to the Kafka predictions topic."
    ),
    log_level: str = "INFO",
) -> None:
    """Serve MODEL with onnxruntime over HTTP (POST /predict), following ACTIVE; every
    prediction is logged to Kafka. Runs until SIGTERM/SIGINT, then flushes the logs."""
    from pydantic import ValidationError

    from watcher import logs
    from watcher.config import HttpConfig
    from watcher.serving.launch import serve_until_stopped

    logs.configure(json_lines=True, level=log_level)
    cfg = _load(config)
    if model not in cfg.models:
        console.print(f"[red]{config}: no models.{model} (have: {', '.join(cfg.models)})[/]")
        raise typer.Exit(2)
    try:
        http_cfg = HttpConfig(host=host, port=port, token_env=token_env)
    except ValidationError as exc:
        console.print(f"[red]--host/--port/--token-env: {exc.errors()[0]['msg']}[/]")
        raise typer.Exit(2) from exc
    code = serve_until_stopped(
        cfg,
        model,
        http_cfg,
        max_body_bytes=max_body_bytes,
        log_predictions=log_predictions,
        say=lambda message: console.print(f"[red]{message}[/]"),
    )
    raise typer.Exit(code)


@app.command()
def demo(
    folder: Path = typer.Option(Path("warden-demo"), "--dir", help="Working folder (wiped)."),
    rate: float = typer.Option(400.0, help="Predictions per second."),
    timeout: float = typer.Option(180.0, help="Give up after this many seconds of shift."),
    mode: str = typer.Option("auto", help="Approval mode written into the demo config."),
    model: str = typer.Option(
        "mlp", help="The demo's model: mlp (torch), svc (scikit-learn), lightgbm or xgboost."
    ),
) -> None:
    """The whole loop on embedded defaults: broker, SQLite, a built-in model."""
    from watcher.demo.run import run_demo

    if model not in ("mlp", "svc", "lightgbm", "xgboost"):
        raise typer.BadParameter("expected mlp, svc, lightgbm or xgboost", param_hint="--model")
    code = run_demo(folder, rate=rate, timeout_s=timeout, mode=mode, console=console, model=model)
    raise typer.Exit(code)


def main() -> None:  # pragma: no cover - `python -m watcher.cli`
    sys.exit(app())


if __name__ == "__main__":  # pragma: no cover
    main()
