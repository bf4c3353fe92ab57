"""The read-only web console at `/` of the daemon's endpoint: the models with their serving
version and state, a timeline per model, the incidents with their pages, and the candidates
with the gate's figures and reasons (and, for one awaiting approval, the exact line to add or
command to run). Server-rendered from the same documents as `warden status --json`."""

from __future__ import annotations

from datetime import UTC, datetime

from watcher.pages.actions import approval_commands
from watcher.pages.render import figure_json, plotly_tag, render
from watcher.pages.sources import Sources
from watcher.pages.timeline import model_history, timeline_figure

INCIDENTS_SHOWN = 50


def model_state(model: dict, doc: dict) -> tuple[str, str]:
    """(badge, words): what a person needs to know first about a model."""
    name = model["name"]
    mine = [c for c in doc["candidates"] if c["model"] == name]
    watching = [c for c in mine if c["status"] == "active" and c.get("watch_checks_left")]
    awaiting = [c for c in mine if c["status"] == "awaiting_approval"]
    training = [c for c in mine if c["status"] == "training"]
    open_ = [i for i in doc["incidents"] if i["model"] == name]
    if awaiting:
        return "awaiting_approval", f"candidate {awaiting[0]['id']} awaits approval"
    if training:
        return "training", f"correcting: {training[0]['id']} is training"
    if open_:
        kinds = ", ".join(f"{i['kind']} ({i['severity']})" for i in open_)
        return "open", f"open incidents: {kinds}"
    if watching:
        left = watching[0]["watch_checks_left"]
        return "active", f"{watching[0]['version']} is live, watched for {left} more checks"
    checks = [c for c in doc["checks"] if c["model"] == name]
    if not checks:
        return "starting", "no check has run yet"
    if all(c["skipped"] for c in checks):
        return "starting", "checks skipped: " + checks[0]["skipped_reason"]
    return "healthy", "the last checks passed"


def candidate_rows(doc: dict, src: Sources) -> list[dict]:
    """The candidates with the figures the gate compared and, awaiting approval, the way
    to approve it (the config stays the one place approval lives)."""
    out = []
    for cand in doc["candidates"]:
        champion, candidate = cand["champion_metrics"], cand["candidate_metrics"]
        keys = [k for k in dict.fromkeys([*champion, *candidate]) if _scalar(champion.get(k))]
        approve = []
        if cand["status"] in ("awaiting_approval", "validated"):
            approve = approval_commands(cand["id"], cand["model"], src.config_path)
        out.append(
            {
                **cand,
                "figures": [(k, champion.get(k), candidate.get(k)) for k in keys],
                "approve": approve,
            }
        )
    return out


def _scalar(value) -> bool:
    return value is None or isinstance(value, int | float | str)


def render_console(doc: dict, incidents: list[dict], src: Sources) -> str:
    """The console page; `doc` is the status document, `incidents` all incidents."""
    models = []
    for model in doc["models"]:
        badge, state = model_state(model, doc)
        history = model_history(src.engine, model["name"])
        models.append(
            {
                **model,
                "badge": badge,
                "state": state,
                "timeline": figure_json(timeline_figure(history)),
                "checks": [c for c in doc["checks"] if c["model"] == model["name"]],
            }
        )
    return render(
        "console.html.j2",
        doc=doc,
        models=models,
        incidents=list(reversed(incidents))[:INCIDENTS_SHOWN],
        candidates=candidate_rows(doc, src),
        plotly=plotly_tag(False, "assets/plotly.min.js"),
        generated_at=datetime.now(UTC),
        config_path=src.config_path,
    )
