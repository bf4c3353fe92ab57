"""`warden status` and `warden incidents`: models, serving versions, intake counts, the last
check of each kind, daemons, open incidents and candidates, read from storage and the registry
(not from a running daemon).

`status_document` / `incidents_document` / `incident_document` build JSON-safe dicts
(timestamps ISO 8601 UTC, no NaN); `watcher.pages.terminal` prints them for narrow terminals,
and the daemon's HTTP endpoint serves the same documents (and the console built on them)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from sqlalchemy import Engine, func
from sqlmodel import Session, col, select

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
from watcher.pages.render import metric_rows
from watcher.pages.sources import Sources
from watcher.pages.story import load_story
from watcher.pages.terminal import (  # noqa: F401 - the CLI and the demo print through these
    render_candidates,
    render_incident,
    render_incidents,
    render_status_document,
)

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
                select(func.count(), func.count(col(Prediction.label))).where(
                    Prediction.model == name
                )
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
        "incidents": incidents_document(engine, open_only=True, reports=cfg.storage.reports),
        "candidates": candidates_document(engine, limit=CANDIDATES_SHOWN),
    }


def _last_checks(engine: Engine) -> list[dict]:
    """The most recent check run of each (model, kind)."""
    latest = select(func.max(CheckRun.id)).group_by(CheckRun.model, CheckRun.kind)
    with Session(engine) as session:
        runs = session.exec(
            select(CheckRun)
            .where(col(CheckRun.id).in_(latest.scalar_subquery()))
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
            .order_by(col(DaemonHeartbeat.started_at))
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
    query = select(Candidate).order_by(col(Candidate.created_at).desc())
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
            "strategy": (c.training or {}).get("strategy"),
            "strategies": json_safe(
                [
                    {k: v for k, v in row.items() if k != "training"}
                    for row in (c.training or {}).get("strategies", [])
                ]
            ),
            "onnx_path": c.onnx_path,
            "watch_checks_left": c.watch_checks_left,
            "created_at": iso(c.created_at),
            "updated_at": iso(c.updated_at),
        }
        for c in rows
    ]


def incidents_document(
    engine: Engine, open_only: bool = False, model: str | None = None, reports: Path | None = None
) -> list[dict]:
    """Incidents, oldest first: all of them, or only the open ones, of one model or all; with
    `reports` (the reports folder), the path of each incident's page where it exists."""
    query = select(Incident)
    if open_only:
        query = query.where(Incident.status == "open")
    if model is not None:
        query = query.where(Incident.model == model)
    with Session(engine) as session:
        rows = session.exec(query.order_by(col(Incident.id))).all()
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
            "page_path": _page(reports, inc),
        }
        for inc in rows
    ]


def _page(reports: Path | None, inc: Incident) -> str | None:
    path = Path(reports) / inc.model / f"incident-{inc.id}.html" if reports else None
    return str(path) if path is not None and path.exists() else None


def incident_document(src: Sources, incident_id: int) -> dict | None:
    """One incident's whole story (what its page shows), JSON-safe; None if there is none."""
    story = load_story(src, incident_id)
    if story is None:
        return None
    inc, w = story.incident, story.window
    return json_safe(
        {
            "incident": {
                "id": inc.id,
                "model": inc.model,
                "model_version": inc.model_version,
                "kind": inc.kind,
                "severity": inc.severity,
                "status": inc.status,
                "summary": inc.summary,
                "opened_at": iso(inc.opened_at),
                "updated_at": iso(inc.updated_at),
                "resolved_at": iso(inc.resolved_at),
                "clean_checks": inc.clean_checks,
                "report_path": inc.report_path,
                "candidate_id": inc.candidate_id,
            },
            "window": {
                "rows": w.rows,
                "labelled_rows": w.labelled_rows,
                "start_seq": w.start_seq,
                "end_seq": w.end_seq,
                "start_ts": iso(w.start_ts),
                "end_ts": iso(w.end_ts),
            },
            "reference": story.reference,
            "where": story.where,
            "next_action": story.action.text,
            "commands": story.action.commands,
            "flagged_samples": len(inc.flagged_ids or []),
            "figures": inc.figures or {},
            "history": [
                {"at": iso(r.created_at), "passed": r.passed, "id": r.id} for r in story.history
            ],
            "candidates": [
                {
                    "id": c.id,
                    "status": c.status,
                    "version": c.version,
                    "figures": metric_rows(c),
                    "reasons": list((c.verdict or {}).get("reasons", [])),
                }
                for c in story.candidates
            ],
            "page_path": str(story.page_path),
        }
    )


def incidents_view(
    cfg: WardenConfig,
    engine: Engine,
    config_path: Path,
    incident_id: int | None,
    open_only: bool = False,
    model: str | None = None,
) -> list[dict] | dict | None:
    """What `warden incidents` shows: the list, or with an id that incident's story (None when
    there is no such incident)."""
    if incident_id is None:
        return incidents_document(engine, open_only, model, reports=cfg.storage.reports)
    src = Sources(lambda: cfg, engine, ModelRegistry(cfg.storage.registry), config_path)
    return incident_document(src, incident_id)


def render_status(cfg: WardenConfig, engine: Engine, registry: ModelRegistry, console: Console):
    """Print `status_document` for a terminal of any width (80 columns included)."""
    render_status_document(status_document(cfg, engine, registry), console)
