"""`warden status`: models, serving versions, intake counts, open incidents and candidates,
read from storage and the registry (not from a running daemon), as rich tables."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine, func
from sqlmodel import Session, select

from storage.registry import ModelRegistry
from storage.tables import Candidate, DaemonHeartbeat, DeadLetter, Incident, Prediction, utcnow
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
    console.print(_daemons_table(engine))

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


ALIVE_S = 30  # a daemon writes its heartbeat every 5 s


def _daemons_table(engine: Engine) -> Table:
    """Every daemon seen in the last day: its intake state, counts, lag, partitions, leases."""
    from datetime import timedelta

    now = utcnow()
    with Session(engine) as session:
        rows = session.exec(
            select(DaemonHeartbeat)
            .where(DaemonHeartbeat.heartbeat_at > now - timedelta(days=1))
            .order_by(DaemonHeartbeat.started_at)
        ).all()
    table = Table(title="Daemons")
    for col in ("daemon", "seen", "intake state", "consumed", "stored", "dead", "lag", "leases"):
        table.add_column(col, overflow="fold")
    for d in rows:
        age = (now - d.heartbeat_at).total_seconds()
        seen = f"{age:.0f}s ago" if age < ALIVE_S else f"[red]gone ({age:.0f}s ago)[/]"
        table.add_row(
            d.id,
            seen,
            d.state,
            str(d.consumed),
            str(d.predictions),
            str(d.dead_letters),
            _fmt(d.lag),
            ", ".join(d.leases) or "-",
        )
    return table
