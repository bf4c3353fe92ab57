"""`warden status`: models, serving versions, intake counts, open incidents and candidates,
read from storage and the registry (not from a running daemon), as rich tables."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine, func
from sqlmodel import Session, select

from storage.registry import ModelRegistry
from storage.tables import Candidate, DeadLetter, Incident, Prediction
from watcher.config import WardenConfig


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def _pair(champion: dict, candidate: dict, key: str) -> str:
    return f"{_fmt(champion.get(key))} → {_fmt(candidate.get(key))}"


def render_status(cfg: WardenConfig, engine: Engine, registry: ModelRegistry, console: Console):
    models = Table(title="Models")
    for col in ("model", "active", "versions", "predictions", "labelled", "open incidents"):
        models.add_column(col)
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
            models.add_row(
                name,
                registry.active(name) or "-",
                ", ".join(registry.versions(name)) or "-",
                str(total),
                str(labelled),
                str(open_count),
            )
        dead = conn.execute(select(func.count()).select_from(DeadLetter)).scalar_one()
    with Session(engine) as session:
        incidents = session.exec(
            select(Incident).where(Incident.status == "open").order_by(Incident.id)
        ).all()
        candidates = session.exec(
            select(Candidate).order_by(Candidate.created_at.desc()).limit(20)
        ).all()
    console.print(models)
    console.print(f"dead letters: {dead}")

    table = Table(title="Open incidents")
    for col in ("id", "model", "kind", "severity", "opened", "summary", "report"):
        table.add_column(col, overflow="fold")
    for inc in incidents:
        table.add_row(
            str(inc.id),
            inc.model,
            inc.kind,
            inc.severity,
            inc.opened_at.strftime("%Y-%m-%d %H:%M:%S"),
            inc.summary,
            inc.report_path or "-",
        )
    console.print(table)

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
        ch, ca = cand.champion_metrics, cand.candidate_metrics
        table.add_row(
            cand.id,
            cand.status,
            cand.parent_version,
            _pair(ch, ca, "recent_holdout_accuracy"),
            _pair(ch, ca, "reference_guarded_accuracy"),
            "; ".join(cand.verdict.get("reasons", [])),
        )
    console.print(table)
