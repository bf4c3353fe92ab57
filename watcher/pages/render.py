"""The Jinja2 environment and the two ways a page gets plotly.js: inlined once (a
self-contained incident file opens offline, anywhere) or linked (the console, served by the
daemon from the installed plotly package). No CDN: the machines that run this may have no
internet."""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from typing import Any

import plotly.graph_objects as go
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

PLOTLY_ASSET = "plotly.min.js"


@cache
def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("watcher.pages", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = number
    env.filters["when"] = when
    env.globals["metric_rows"] = metric_rows
    env.globals["verdict_lines"] = verdict_lines
    return env


def render(template: str, **context: Any) -> str:
    return environment().get_template(template).render(style=style(), **context)


@cache
def style() -> Markup:
    return Markup(files("watcher.pages").joinpath("templates/style.css").read_text("utf-8"))


@cache
def plotly_js() -> str:
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def plotly_tag(inline: bool, asset_url: str = PLOTLY_ASSET) -> Markup:
    """The one <script> that brings plotly.js: inlined, or from `asset_url`."""
    if inline:
        return Markup(f"<script>{plotly_js()}</script>")
    return Markup('<script src="{}"></script>').format(asset_url)


def figure_json(fig: go.Figure) -> Markup:
    """A figure as JSON safe inside <script type="application/json"> (plotly escapes < > /)."""
    return Markup(fig.to_json())


def metric_rows(candidate: Any) -> list[tuple[str, Any, Any]]:
    """(figure, champion, candidate) for every scalar figure the gate compared."""
    champion, cand = candidate.champion_metrics or {}, candidate.candidate_metrics or {}
    keys = list(dict.fromkeys([*champion, *cand]))
    scalar = (int, float, str, type(None))
    return [
        (k, champion.get(k), cand.get(k))
        for k in keys
        if isinstance(champion.get(k), scalar) and isinstance(cand.get(k), scalar)
    ]


def verdict_lines(verdict: dict | None) -> list[tuple[str, str]]:
    """(status, sentence) for each line of a stored verdict: its notes (status ""), then one
    line per rule result with the rule's status; a verdict stored without rule results gives
    its reasons, each with status ""."""
    from correctors.validation.verdict import stored_rules

    reasons = [str(r) for r in (verdict or {}).get("reasons", [])]
    rules = stored_rules(verdict)
    if not rules:
        return [("", r) for r in reasons]
    messages = {str(r.get("message")) for r in rules}
    notes = [("", r) for r in reasons if r not in messages]
    return notes + [(str(r.get("status", "")), str(r.get("message", ""))) for r in rules]


def number(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def when(value: Any) -> str:
    """Timestamps as `YYYY-MM-DD HH:MM:SS UTC` (stored naive in SQLite, always UTC)."""
    if value is None:
        return "-"
    if isinstance(value, str):
        return value.replace("T", " ")[:19] + " UTC"
    return value.strftime("%Y-%m-%d %H:%M:%S UTC")
