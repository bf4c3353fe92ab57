"""`warden status` and `warden incidents`: models, serving versions, intake counts, the last
check of each kind, daemons, open incidents and candidates, read from storage and the registry
(not from a running daemon).

`status_document` / `incidents_document` build JSON-safe dicts (timestamps ISO 8601 UTC, no
NaN); the `render_*` functions print those dicts as rich tables, and the daemon's HTTP endpoint
serves the same documents."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlalchemy import Engine, func
from sqlmodel import Session, select

from storage.registry import ModelRegistry
from storage.tables import (
    Candidate,
    CheckRun,
    DaemonHeartbeat,
    DeadLetter,
    Incident,
    Prediction,
    utcnow,
)
from watcher.config import WardenConfig
from watcher.jsonsafe import iso, json_safe

ALIVE_S = 30  # a daemon writes its heartbeat every 5 s
DAEMONS_SINCE = timedelta(days=1)
CANDIDATES_SHOWN = 20
# figures worth showing for a check run; the rest (per-column details) stay in the database
KEY_FIGURE_LISTS = ("drifted_columns",)
KEY_FIGURE_DICTS = ("gaps",)


def _key_figures(figures: dict[str, Any]) -> dict[str, Any]:
    """Scalars, plus the drifted-column list and the group gaps; not the per-column details."""
    out: dict[str, Any] = {}
    for key, value in (figures or {}).items():
        if value is None or isinstance(value, bool | int | float | str):
            out[key] = value
        elif key in KEY_FIGURE_LISTS and isinstance(value, list | tuple):
            out[key] = list(value)
        elif key in KEY_FIGURE_DICTS and isinstance(value, dict):
            out[key] = value
    return json_safe(out)


# -- documents --------------------------------------------------------------------------------
def status_document(cfg: WardenConfig, engine: Engine, registry: ModelRegistry) -> dict:
    """Everything `warden status` shows, as one JSON-safe dict."""
    now = utcnow()
    models = []
    with engine.connect() as conn:
        for name in cfg.models:
            total, labelled = conn.execute(
                select(func.count(), func.count(Prediction.label)).where(Prediction.model == name)
            ).one()
            open_count = conn.execute(
                select(func.count())
                .select_from(Incident)
                .where(Incident.model == name, Incident.status == "open")
            ).scalar_one()
            models.append(
                {
                    "name": name,
                    "active": registry.active(name),
                    "versions": list(registry.versions(name)),
                    "predictions": int(total),
                    "labelled": int(labelled),
                    "open_incidents": int(open_count),
                }
            )
        dead = conn.execute(select(func.count()).select_from(DeadLetter)).scalar_one()
    return {
        "generated_at": iso(now),
        "models": models,
        "checks": _last_checks(engine),
        "dead_letters": int(dead),
        "daemons": _daemons(engine, now),
        "incidents": incidents_document(engine, open_only=True),
        "candidates": candidates_document(engine, limit=CANDIDATES_SHOWN),
    }


def _last_checks(engine: Engine) -> list[dict]:
    """The most recent check run of each (model, kind)."""
    latest = select(func.max(CheckRun.id)).group_by(CheckRun.model, CheckRun.kind)
    with Session(engine) as session:
        runs = session.exec(
            select(CheckRun)
            .where(CheckRun.id.in_(latest.scalar_subquery()))
            .order_by(CheckRun.model, CheckRun.kind)
        ).all()
    return [
        {
            "id": run.id,
            "model": run.model,
            "model_version": run.model_version,
            "kind": run.kind,
            "at": iso(run.created_at),
            "passed": bool(run.passed),
            "skipped": run.skipped_reason is not None,
            "skipped_reason": run.skipped_reason,
            "rows": run.rows,
            "labelled_rows": run.labelled_rows,
            "duration_s": json_safe(float(run.duration_s or 0.0)),
            "figures": _key_figures(run.figures),
            "report_path": run.report_path,
        }
        for run in runs
    ]


def _daemons(engine: Engine, now: datetime) -> list[dict]:
    """Every daemon seen in the last day: its intake state, counts, lag, partitions, leases."""
    with Session(engine) as session:
        rows = session.exec(
            select(DaemonHeartbeat)
            .where(DaemonHeartbeat.heartbeat_at > now - DAEMONS_SINCE)
            .order_by(DaemonHeartbeat.started_at)
        ).all()
    out = []
    for d in rows:
        seen = d.heartbeat_at if d.heartbeat_at.tzinfo else d.heartbeat_at.replace(tzinfo=UTC)
        age = max(0.0, (now - seen).total_seconds())
        out.append(
            {
                "id": d.id,
                "host": d.host,
                "pid": d.pid,
                "started_at": iso(d.started_at),
                "heartbeat_at": iso(d.heartbeat_at),
                "age_s": round(age, 3),
                "alive": age < ALIVE_S,
                "state": d.state,
                "consumed": d.consumed,
                "predictions": d.predictions,
                "labels": d.labels,
                "dead_letters": d.dead_letters,
                "lag": d.lag,
                "partitions": list(d.partitions or []),
                "leases": list(d.leases or []),
            }
        )
    return out


def candidates_document(
    engine: Engine, model: str | None = None, limit: int | None = None
) -> list[dict]:
    """Candidates, newest first, with their metrics and the gate's reasons."""
    query = select(Candidate).order_by(Candidate.created_at.desc())
    if model is not None:
        query = query.where(Candidate.model == model)
    with Session(engine) as session:
        rows = session.exec(query.limit(limit) if limit else query).all()
    return [
        {
            "id": c.id,
            "model": c.model,
            "version": c.version,
            "parent_version": c.parent_version,
            "incident_id": c.incident_id,
            "status": c.status,
            "champion_metrics": json_safe(c.champion_metrics or {}),
            "candidate_metrics": json_safe(c.candidate_metrics or {}),
            "reasons": json_safe(list((c.verdict or {}).get("reasons", []))),
            "onnx_path": c.onnx_path,
            "created_at": iso(c.created_at),
            "updated_at": iso(c.updated_at),
        }
        for c in rows
    ]


def incidents_document(
    engine: Engine, open_only: bool = False, model: str | None = None
) -> list[dict]:
    """Incidents, oldest first: all of them, or only the open ones, of one model or all."""
    query = select(Incident)
    if open_only:
        query = query.where(Incident.status == "open")
    if model is not None:
        query = query.where(Incident.model == model)
    with Session(engine) as session:
        rows = session.exec(query.order_by(Incident.id)).all()
    return [
        {
            "id": inc.id,
            "model": inc.model,
            "model_version": inc.model_version,
            "kind": inc.kind,
            "severity": inc.severity,
            "status": inc.status,
            "opened_at": iso(inc.opened_at),
            "updated_at": iso(inc.updated_at),
            "resolved_at": iso(inc.resolved_at),
            "summary": inc.summary,
            "report_path": inc.report_path,
            "candidate_id": inc.candidate_id,
            "clean_checks": inc.clean_checks,
        }
        for inc in rows
    ]


# -- rendering --------------------------------------------------------------------------------
def _fmt(value) -> str:
    return "-" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def _pair(champion: dict, candidate: dict, key: str) -> str:
    return f"{_fmt(champion.get(key))} → {_fmt(candidate.get(key))}"


def _when(iso: str | None) -> str:
    if not iso:
        return "-"
    return datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M:%S")


def _figures_text(figures: dict[str, Any]) -> str:
    parts = []
    for key, value in figures.items():
        if key in KEY_FIGURE_LISTS:
            parts.append(f"{key}={len(value)}")
        elif key in KEY_FIGURE_DICTS:
            continue
        else:
            parts.append(f"{key}={_fmt(value)}")
    return ", ".join(parts) or "-"


def render_status(cfg: WardenConfig, engine: Engine, registry: ModelRegistry, console: Console):
    """Print `status_document` as rich tables."""
    render_status_document(status_document(cfg, engine, registry), console)


def render_status_document(doc: dict, console: Console) -> None:
    models = Table(title="Models")
    for col in ("model", "active", "versions", "predictions", "labelled", "open incidents"):
        models.add_column(col)
    for m in doc["models"]:
        models.add_row(
            m["name"],
            m["active"] or "-",
            ", ".join(m["versions"]) or "-",
            str(m["predictions"]),
            str(m["labelled"]),
            str(m["open_incidents"]),
        )
    console.print(models)
    console.print(f"dead letters: {doc['dead_letters']}")
    console.print(_daemons_table(doc["daemons"]))
    console.print(_checks_table(doc["checks"]))

    table = Table(title="Open incidents")
    for col in ("id", "model", "kind", "severity", "opened", "summary", "report"):
        table.add_column(col, overflow="fold")
    for inc in doc["incidents"]:
        table.add_row(
            str(inc["id"]),
            inc["model"],
            inc["kind"],
            inc["severity"],
            _when(inc["opened_at"]),
            escape(inc["summary"]),
            inc["report_path"] or "-",
        )
    console.print(table)

    render_candidates(doc["candidates"], console)


def render_candidates(candidates: list[dict], console: Console) -> None:
    table = Table(title="Candidates")
    for col in (
        "id",
        "status",
        "parent",
        "recent acc (champ→cand)",
        "reference acc (champ→cand)",
        "reasons",
    ):
        table.add_column(col, overflow="fold")
    for cand in candidates:
        ch, ca = cand["champion_metrics"], cand["candidate_metrics"]
        table.add_row(
            cand["id"],
            cand["status"],
            cand["parent_version"],
            _pair(ch, ca, "recent_holdout_accuracy"),
            _pair(ch, ca, "reference_guarded_accuracy"),
            escape("; ".join(str(r) for r in cand["reasons"])),
        )
    console.print(table)


def _checks_table(checks: list[dict]) -> Table:
    table = Table(title="Last checks")
    for col in ("model", "kind", "version", "at", "result", "rows", "duration", "figures"):
        table.add_column(col, overflow="fold")
    for run in checks:
        if run["skipped"]:
            result = escape(f"skipped: {run['skipped_reason']}")
        else:
            result = "passed" if run["passed"] else "[red]failed[/]"
        table.add_row(
            run["model"],
            run["kind"],
            run["model_version"],
            _when(run["at"]),
            result,
            f"{run['rows']} ({run['labelled_rows']} labelled)",
            f"{run['duration_s']:.2f}s",
            _figures_text(run["figures"]),
        )
    return table


def _daemons_table(daemons: list[dict]) -> Table:
    table = Table(title="Daemons")
    for col in ("daemon", "seen", "intake state", "consumed", "stored", "dead", "lag", "leases"):
        table.add_column(col, overflow="fold")
    for d in daemons:
        age = d["age_s"]
        seen = f"{age:.0f}s ago" if d["alive"] else f"[red]gone ({age:.0f}s ago)[/]"
        table.add_row(
            d["id"],
            seen,
            escape(d["state"]),
            str(d["consumed"]),
            str(d["predictions"]),
            str(d["dead_letters"]),
            _fmt(d["lag"]),
            ", ".join(d["leases"]) or "-",
        )
    return table


def render_incidents(incidents: list[dict], console: Console) -> None:
    """Print `incidents_document` as one rich table."""
    table = Table(title="Incidents")
    for col in (
        "id",
        "model",
        "kind",
        "severity",
        "status",
        "opened",
        "updated",
        "resolved",
        "summary",
        "report",
        "candidate",
    ):
        table.add_column(col, overflow="fold")
    for inc in incidents:
        table.add_row(
            str(inc["id"]),
            inc["model"],
            inc["kind"],
            inc["severity"],
            inc["status"],
            _when(inc["opened_at"]),
            _when(inc["updated_at"]),
            _when(inc["resolved_at"]),
            escape(inc["summary"]),
            inc["report_path"] or "-",
            inc["candidate_id"] or "-",
        )
    console.print(table)
