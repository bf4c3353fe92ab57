"""The Evidently page kept with a failing check: warden's verdict on top, then Evidently's
widgets, so the page an alert links to never contradicts the alert.

Evidently's own `save_html` renders every widget of a snapshot as is; a preset headline such as
"Dataset Drift is NOT detected" (the preset's own share) or the same confusion matrix once per
metric would then sit beside a verdict warden reached by other rules. Here the checks choose
the metrics (and their thresholds) and this module only adds the verdict and drops repeats.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from watcher.checks.outcome import CheckOutcome

log = structlog.get_logger("warden.detection")
# Pages are drawn off the checks' critical path: one worker (Evidently is not thread-safe
# between reports), and whoever publishes or reads them waits with `wait_for_pages`.
_WORKER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="evidently-page")
_PENDING: list[Future] = []
_LOCK = threading.Lock()


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
    """Write `snapshot` as one self-contained Evidently page, `header` (markdown) on top;
    through a temporary file, so a reader never sees half a page."""
    from evidently.core.metric_types import render_widgets
    from evidently.legacy.renderers.html_widgets import group_widget, text_widget

    widgets = [
        text_widget(text=header, title=""),
        group_widget(title="", widgets=_without_repeats(list(snapshot._widgets))),
        *snapshot._tests_widgets,
    ]
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(render_widgets(widgets, as_iframe=False))
    os.replace(tmp, path)
    return path


def _draw(build: Callable[[], Any], path: Path, header: str) -> None:
    try:
        save_page(build(), path, header)
    except Exception:  # noqa: BLE001 - a page that cannot be drawn must not stop the next
        log.exception("evidently_page_failed", path=str(path))


def wait_for_pages(timeout: float | None = None) -> None:
    """Block until every page asked for so far is written (or failed, which is logged)."""
    with _LOCK:
        pending = list(_PENDING)
    for future in pending:
        future.result(timeout)
    with _LOCK:
        _PENDING[:] = [f for f in _PENDING if not f.done()]


def keep_page(
    build: Callable[[], Any],
    directory: Path,
    model: str,
    outcome: CheckOutcome,
    reference: str,
    note: str = "",
) -> Path:
    """Keep a failing check's Evidently page in `directory`, warden's verdict (the alert's
    words) on top; named by time and kind so that pages never overwrite each other. `build`
    makes the Evidently snapshot: it runs on the page worker, after the check has returned;
    the path is known at once (the file appears when `wait_for_pages` returns)."""
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
    path = directory / f"{stamp}-{outcome.kind}.html"
    with _LOCK:
        _PENDING.append(_WORKER.submit(_draw, build, path, header))
    return path
