"""A model's history on one time axis: quality, drift and group gaps per check, with the
incidents, candidates, swaps and rollbacks of the audit log as markers. The console draws one
per model."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import plotly.graph_objects as go
from plotly.subplots import make_subplots
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from storage.tables import CheckRun, Event
from watcher.pages.charts import AMBER, BLUE, GREEN, GREY, RED

RUNS_SHOWN = 300
EVENTS_SHOWN = 300
# audit events shown, with their marker: (label, colour, symbol)
MARKERS = {
    "incident_opened": ("incident opened", RED, "x"),
    "incident_reopened": ("incident reopened", RED, "x-open"),
    "incident_resolved": ("incident resolved", GREEN, "circle-open"),
    "candidate_training": ("candidate training", BLUE, "triangle-up-open"),
    "candidate_validated": ("candidate validated", BLUE, "triangle-up"),
    "candidate_rejected": ("candidate rejected", GREY, "triangle-down"),
    "candidate_failed": ("candidate failed", GREY, "triangle-down-open"),
    "candidate_withdrawn": ("candidate withdrawn", GREY, "triangle-left-open"),
    "awaiting_approval": ("awaiting approval", AMBER, "hourglass"),
    "swapped": ("swap", "#6a1b9a", "star"),
    "rolled_back": ("rollback", AMBER, "star-open"),
}
LINE_EVENTS = ("swapped", "rolled_back")  # drawn across every panel too


@dataclass
class History:
    model: str
    runs: list[CheckRun]
    events: list[Event]


def model_history(engine: Engine, model: str) -> History:
    with Session(engine) as session:
        runs = session.exec(
            select(CheckRun)
            .where(CheckRun.model == model, col(CheckRun.skipped_reason).is_(None))
            .order_by(col(CheckRun.id).desc())
            .limit(RUNS_SHOWN)
        ).all()
        events = session.exec(
            select(Event)
            .where(Event.model == model, col(Event.kind).in_(list(MARKERS)))
            .order_by(col(Event.id).desc())
            .limit(EVENTS_SHOWN)
        ).all()
    return History(model, list(runs)[::-1], list(events)[::-1])


def _at(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S")


def timeline_figure(history: History) -> go.Figure:
    """Four panels on one time axis: quality, drift, group gaps, then the audit's markers."""
    fig = _panels()
    runs = {k: [r for r in history.runs if r.kind == k] for k in ("drift", "error", "bias")}
    _add_quality(fig, runs["error"])
    _add_drift(fig, runs["drift"])
    _add_gaps(fig, runs["bias"])
    _add_events(fig, history.events)
    fig.update_layout(
        template="plotly_white",
        height=720,
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
        legend={"orientation": "h", "y": -0.08},
        hovermode="closest",
    )
    fig.update_yaxes(automargin=True)
    return fig


def _panels() -> go.Figure:
    return make_subplots(
        rows=4,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.06,
        row_heights=[0.3, 0.27, 0.27, 0.16],
        subplot_titles=(
            "quality (red points: failed check; dashed: bound)",
            "drift: share of columns outside their normal range",
            "group gaps",
            "incidents, candidates, swaps and rollbacks",
        ),
    )


def _add_quality(fig: go.Figure, errors: list[CheckRun]) -> None:
    """The headline metric of each error check (red where it failed), and its bound."""
    headline = next(((r.figures or {}).get("headline") for r in errors), None) or "accuracy"
    x = [_at(r.created_at) for r in errors]
    fig.add_scatter(
        x=x,
        y=[(r.figures or {}).get(headline) for r in errors],
        mode="lines+markers",
        name=headline,
        line_color=BLUE,
        marker_color=[BLUE if r.passed else RED for r in errors],
        row=1,
        col=1,
    )
    fig.add_scatter(
        x=x,
        y=[(r.figures or {}).get("bound") for r in errors],
        mode="lines",
        name=f"{headline} bound",
        line={"color": RED, "dash": "dash", "width": 1},
        row=1,
        col=1,
    )


def _add_drift(fig: go.Figure, drift: list[CheckRun]) -> None:
    fig.add_scatter(
        x=[_at(r.created_at) for r in drift],
        y=[(r.figures or {}).get("drift_share") for r in drift],
        mode="lines+markers",
        name="drift share",
        line_color=AMBER,
        marker_color=[AMBER if r.passed else RED for r in drift],
        text=[", ".join((r.figures or {}).get("drifted_columns", [])) or "none" for r in drift],
        hovertemplate="%{x}: %{y:.2f} (%{text})<extra>drift</extra>",
        row=2,
        col=1,
    )


def _add_gaps(fig: go.Figure, bias: list[CheckRun]) -> None:
    """One line per attribute and gap measure across the bias checks."""
    series: dict[str, tuple[list[str], list[float]]] = {}
    for r in bias:
        for attribute, gaps in ((r.figures or {}).get("gaps") or {}).items():
            for gap, value in gaps.items():
                xs, ys = series.setdefault(f"{attribute}: {gap}", ([], []))
                xs.append(_at(r.created_at))
                ys.append(value)
    for name, (xs, ys) in series.items():
        fig.add_scatter(x=xs, y=ys, mode="lines+markers", name=name, row=3, col=1)


def _add_events(fig: go.Figure, events: list[Event]) -> None:
    """A marker per audit event; swaps and rollbacks also draw a line across the panels."""
    for kind, (label, color, symbol) in MARKERS.items():
        found = [e for e in events if e.kind == kind]
        if not found:
            continue
        fig.add_scatter(
            x=[_at(e.ts) for e in found],
            y=[label] * len(found),
            mode="markers",
            name=label,
            marker={"color": color, "symbol": symbol, "size": 12},
            text=[_event_text(e) for e in found],
            hovertemplate="%{x}: %{text}<extra></extra>",
            row=4,
            col=1,
        )
        if kind in LINE_EVENTS:
            for e in found:
                for row in (1, 2, 3):
                    fig.add_vline(x=_at(e.ts), line={"color": color, "dash": "dot"}, row=row, col=1)


def _event_text(event: Event) -> str:
    d = event.detail or {}
    parts = [f"{event.kind} {event.subject or ''}".strip(), f"by {event.actor}"]
    for key in ("incident_kind", "severity", "version", "previous_version", "restored_version"):
        if d.get(key):
            parts.append(f"{key} {d[key]}")
    if d.get("summary"):
        parts.append(str(d["summary"])[:120])
    return " · ".join(parts)
