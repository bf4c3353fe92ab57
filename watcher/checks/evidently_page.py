"""The Evidently page kept with a failing check: warden's verdict on top, then Evidently's
widgets, so the page an alert links to never contradicts the alert.

Evidently's own `save_html` renders every widget of a snapshot as is; a preset headline such as
"Dataset Drift is NOT detected" (the preset's own share) or the same confusion matrix once per
metric would then sit beside a verdict warden reached by other rules. Here the checks choose
the metrics (and their thresholds) and this module only adds the verdict and drops repeats.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from watcher.checks.outcome import CheckOutcome


def verdict_markdown(
    *,
    model: str,
    version: str,
    kind: str,
    severity: str,
    summary: str,
    window: str,
    reference: str,
    note: str = "",
) -> str:
    """The header every kept page starts with, in the alert's own words."""
    lines = [
        f"**warden's verdict** ({kind}, {severity}): {summary}",
        "",
        f"model **{model}** version **{version}** · window: {window} · reference: {reference}",
    ]
    if note:
        lines += ["", note]
    return "\n".join(lines)


def _without_repeats(widgets: list[Any]) -> list[Any]:
    """Drop a titled graph (and the caption counter before it) already shown once: Precision,
    Recall and F1 each carry the same confusion matrix."""
    seen: set[str] = set()
    out: list[Any] = []
    skip_next_graph = False
    for widget in widgets:
        counters = (widget.params or {}).get("counters") if widget.type == "counter" else None
        caption = counters[0].get("label") if counters and not counters[0].get("value") else None
        if caption:
            if caption in seen:
                skip_next_graph = True
                continue
            seen.add(caption)
        elif skip_next_graph and widget.type == "big_graph":
            skip_next_graph = False
            continue
        skip_next_graph = False
        out.append(widget)
    return out


def save_page(snapshot: Any, path: Path, header: str) -> Path:
    """Write `snapshot` as one self-contained Evidently page, `header` (markdown) on top."""
    from evidently.core.metric_types import render_widgets
    from evidently.legacy.renderers.html_widgets import group_widget, text_widget

    widgets = [
        text_widget(text=header, title=""),
        group_widget(title="", widgets=_without_repeats(list(snapshot._widgets))),
        *snapshot._tests_widgets,
    ]
    path.write_text(render_widgets(widgets, as_iframe=False), encoding="utf-8")
    return path


def keep_page(
    snapshot: Any,
    directory: Path,
    model: str,
    outcome: CheckOutcome,
    reference: str,
    note: str = "",
) -> Path:
    """Keep a failing check's Evidently page in `directory`, warden's verdict (the alert's
    words) on top; named by time and kind so that pages never overwrite each other."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    start, end = outcome.seq_range
    labelled = f" ({outcome.labelled_rows} labelled)" if outcome.labelled_rows else ""
    header = verdict_markdown(
        model=model,
        version=outcome.version,
        kind=outcome.kind,
        severity=outcome.severity,
        summary=outcome.summary,
        window=f"{outcome.rows} rows{labelled}, seq {start}–{end}",
        reference=reference,
        note=note,
    )
    return save_page(snapshot, directory / f"{stamp}-{outcome.kind}.html", header)
