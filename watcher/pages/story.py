"""An incident's story, read from the store: the incident, the window its latest check judged
(rows, seq and time span), the reference, the history of its figure over the last checks, the
candidates made for it and the next action. The incident page, the console and
`warden incidents ID` all tell it from this one reading."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, or_
from sqlmodel import Session, col, select

from storage.tables import Candidate, CheckRun, Event, Incident, Prediction
from watcher.pages.actions import NextAction, next_action
from watcher.pages.sources import Sources

HISTORY_CHECKS = 50
EVENT_PREFIXES = ("incident_", "candidate_", "awaiting_approval", "swapped", "rolled_back")


@dataclass
class Window:
    rows: int
    labelled_rows: int
    start_seq: int | None
    end_seq: int | None
    start_ts: datetime | None
    end_ts: datetime | None


@dataclass
class IncidentStory:
    incident: Incident
    window: Window
    reference: str
    history: list[CheckRun]  # this kind's judged checks, oldest first
    candidates: list[Candidate]
    action: NextAction
    page_path: Path
    where: list[str] = field(default_factory=list)  # the alert's "where", one line each
    events: list[Event] = field(default_factory=list)  # its audit log: opened (in the opening
    # alert's words), reopened, resolved, and its candidates' training, gate and swap

    @property
    def figures(self) -> dict[str, Any]:
        return self.incident.figures or {}


def utc(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; everything stored is UTC."""
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def load_story(src: Sources, incident_id: int) -> IncidentStory | None:
    with Session(src.engine) as session:
        incident = session.get(Incident, incident_id)
        if incident is None:
            return None
        run = session.get(CheckRun, incident.check_run_id) if incident.check_run_id else None
        history = list(
            session.exec(
                select(CheckRun)
                .where(
                    CheckRun.model == incident.model,
                    CheckRun.kind == incident.kind,
                    col(CheckRun.skipped_reason).is_(None),
                )
                .order_by(col(CheckRun.id).desc())
                .limit(HISTORY_CHECKS)
            )
        )[::-1]
        candidates = list(
            session.exec(
                select(Candidate)
                .where(
                    or_(
                        col(Candidate.incident_id) == incident.id,
                        col(Candidate.id) == incident.candidate_id,
                    )
                )
                .order_by(col(Candidate.created_at))
            )
        )
        window = _window(session, incident, run)
        subjects = [str(incident.id), *(c.id for c in candidates)]
        events = list(
            session.exec(
                select(Event)
                .where(Event.model == incident.model, col(Event.subject).in_(subjects))
                .order_by(col(Event.id))
            )
        )
    cfg = src.config()
    model_cfg = cfg.models.get(incident.model)
    waiting = src.waiting_action if model_cfg is not None else None
    action = next_action(incident, candidates, model_cfg, src.config_path, waiting)
    figures = incident.figures or {}
    return IncidentStory(
        incident=incident,
        window=window,
        reference=str(figures.get("reference") or "the version's reference"),
        history=history,
        candidates=candidates,
        action=action,
        page_path=src.page_path(incident.model, incident_id),
        where=where_lines(incident.kind, figures),
        events=[e for e in events if e.kind.startswith(EVENT_PREFIXES)],
    )


def _window(session: Session, incident: Incident, run: CheckRun | None) -> Window:
    """The window the incident's latest check judged, with the time span of its rows."""
    start = run.window_start_seq if run is not None else incident.window_start_seq
    end = run.window_end_seq if run is not None else incident.window_end_seq
    first = last = None
    if start is not None and end is not None:
        first, last = session.exec(
            select(func.min(Prediction.ts), func.max(Prediction.ts)).where(
                Prediction.model == incident.model, col(Prediction.seq).between(start, end)
            )
        ).one()
    return Window(
        rows=run.rows if run is not None else 0,
        labelled_rows=run.labelled_rows if run is not None else 0,
        start_seq=start,
        end_seq=end,
        start_ts=utc(first),
        end_ts=utc(last),
    )


def slice_label(found: dict) -> str:
    """`utilization ≥ 0.62`, `income < 42`, `0.3 ≤ debt_ratio < 0.5` or `region = north`."""
    column, low, high = found["column"], found.get("low"), found.get("high")
    if low is None and high is None:
        if str(found.get("value", "")).startswith("["):  # an open-ended bin stored as text
            return f"{column} in {found['value']}"
        return f"{column} = {found['value']}"
    if high is None:
        return f"{column} ≥ {low:.4g}"
    if low is None:
        return f"{column} < {high:.4g}"
    return f"{low:.4g} ≤ {column} < {high:.4g}"


def where_lines(kind: str, figures: dict) -> list[str]:
    """What the alert lists under "where" (the top five), in words."""
    if kind == "drift":
        columns = figures.get("columns", {})
        lines = []
        for name in figures.get("drifted_columns", [])[:5]:
            col = columns.get(name, {})
            lines.append(column_line(name, col))
        if figures.get("prediction_drift"):
            lines.append(column_line("prediction", columns.get("prediction", {})))
        return lines
    if kind == "error":
        return [
            f"{slice_label(s)}: {s['error_rate']:.0%} errors on {s['rows']} rows "
            f"({s['lift']:.1f}× the window's rate)"
            for s in figures.get("error_slices", [])[:5]
        ]
    if kind == "bias":
        return [
            f"groups.{f['attribute']}: {f['gap']} {f['value']:.3f} > bound {f['bound']:.3f}, "
            f"{f['disadvantaged']} disadvantaged (p = {f['p_value']:.2g})"
            for f in figures.get("failures", [])[:5]
        ]
    return []


def column_line(name: str, col: dict) -> str:
    method, magnitude = col.get("method") or "drift", col.get("magnitude", col.get("score"))
    text = f"{name}: {method} {_num(magnitude)}"
    if col.get("normal_high") is not None:
        text += f", normal ≤ {_num(col['normal_high'])}"
        if col.get("sigmas") is not None:
            text += f" ({col['sigmas']:.0f} sd above normal)"
    return text


def _num(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, int | float) else "-"
