"""Incident pages: one self-contained HTML file per incident (`reports/MODEL/incident-ID.html`),
rewritten while the incident evolves, and the same page served live by the console.

Top to bottom: who and what (model, version, id, kind, severity, status, window, reference);
warden's verdict in the alert's words; the charts of what decided it and their history; the
candidates with the gate's reasons; the exact next action; then Evidently's widgets for the
latest failing check (current against reference, at warden's thresholds), framed as a page of
their own so that neither page's scripts or styles touch the other's."""

from __future__ import annotations

import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import structlog
from markupsafe import Markup
from sqlmodel import Session, col, select

from storage.tables import Incident
from watcher.pages import charts
from watcher.pages.render import figure_json, plotly_tag, render
from watcher.pages.sources import Sources
from watcher.pages.story import IncidentStory, load_story, slice_label

log = structlog.get_logger("warden.pages")


def figures_for(story: IncidentStory, floor: float | None) -> list[tuple[str, Markup]]:
    """(id, figure JSON) of every chart that decided this incident, by kind."""
    f, runs = story.figures, story.history
    out = []
    if story.incident.kind == "drift":
        shown = [*f.get("drifted_columns", [])[:4]]
        if f.get("prediction_drift"):
            shown.append("prediction")
        out.append(("drift-columns", charts.drift_columns(f)))
        out.append(("drift-history", charts.drift_history(runs, shown)))
    elif story.incident.kind == "error":
        headline = f.get("headline", "accuracy")
        out.append(("quality", charts.quality_gauge(f, floor)))
        out.append(("quality-history", charts.quality_history(runs, headline)))
        if f.get("error_slices"):
            labels = [slice_label(s) for s in f["error_slices"]]
            out.append(("error-slices", charts.error_slices(f, labels)))
    elif story.incident.kind == "bias":
        out.append(("group-gaps", charts.group_gaps(f)))
        if f.get("failures"):
            out.append(("gap-history", charts.gap_history(runs, f["failures"])))
    return [(name, figure_json(fig)) for name, fig in out]


def _floor(src: Sources, story: IncidentStory) -> float | None:
    model = src.config().models.get(story.incident.model)
    if model is None:
        return None
    headline = story.figures.get("headline", "accuracy")
    return model.checks.max_mae if headline == "mae" else model.checks.min_accuracy


def render_incident(
    src: Sources, story: IncidentStory, *, inline: bool, evidently_url: str | None = None
) -> str:
    """The page. `inline`: plotly.js and the Evidently page are embedded (a file that opens
    offline); otherwise plotly.js comes from `assets/` and Evidently from `evidently_url`."""
    report = story.incident.report_path
    evidently_html = None
    if inline and report and Path(report).is_file():
        evidently_html = Path(report).read_text(encoding="utf-8")
    return render(
        "incident.html.j2",
        story=story,
        inc=story.incident,
        figures=figures_for(story, _floor(src, story)),
        plotly=plotly_tag(inline, "../assets/plotly.min.js"),
        evidently_html=evidently_html,
        evidently_url=None if inline or not report else evidently_url,
        report_name=Path(report).name if report else None,
        generated_at=datetime.now(UTC),
        live=not inline,
    )


def write_page(src: Sources, incident_id: int) -> Path | None:
    """(Re)write one incident's file atomically: a reader never sees half a page."""
    story = load_story(src, incident_id)
    if story is None:
        return None
    path = story.page_path
    path.parent.mkdir(parents=True, exist_ok=True)
    html = render_incident(src, story, inline=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".incident-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(html)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; reports are readable like the rest
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def publish_pages(src: Sources, model: str) -> list[Path]:
    """After a check round: rewrite the page of every open incident of `model`, and of any
    closed one that changed since its file was written. Never raises: a page that cannot be
    written is logged, and the round goes on to its correction."""
    written: list[Path] = []
    try:
        with Session(src.engine) as session:
            rows = session.exec(
                select(Incident.id, Incident.status, Incident.updated_at).where(
                    Incident.model == model
                )
            ).all()
        for incident_id, status, updated in rows:
            if incident_id is None:  # a stored incident always has its id
                continue
            path = src.page_path(model, incident_id)
            changed = updated.replace(tzinfo=updated.tzinfo or UTC)
            if status != "open" and path.exists():
                mtime = datetime.fromtimestamp(path.stat().st_mtime, UTC)
                if changed <= mtime:
                    continue
            page = write_page(src, incident_id)
            if page is not None:
                written.append(page)
    except Exception:  # noqa: BLE001 - pages must never stop checks or corrections
        log.exception("incident_pages_failed", model=model)
    return written


def page_paths(src: Sources, model: str | None = None) -> list[Path]:
    """The incident pages that exist, oldest incident first."""
    with Session(src.engine) as session:
        query = select(Incident.model, Incident.id).order_by(col(Incident.id))
        if model is not None:
            query = query.where(Incident.model == model)
        rows = session.exec(query).all()
    paths = (src.page_path(m, i) for m, i in rows if i is not None)
    return [p for p in paths if p.exists()]
