"""`warden status`, `warden incidents` and `warden candidates` for people reading an 80-column
terminal or a log: one short head line per item and its figures summarised on the lines
below, wrapped with a hanging indent, never a table column squeezed to a word per line. The
whole figures stay under `--json` and `warden incidents ID`."""

from __future__ import annotations

import textwrap
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

INDENT = 4


def fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def when(iso: str | None) -> str:
    if not iso:
        return "-"
    return datetime.fromisoformat(iso).strftime("%m-%d %H:%M:%S")


def item(console: Console, head: Text | str, *details: str) -> None:
    """A head line, then each detail wrapped under it with a hanging indent (no trailing
    blanks: these lines end up in logs)."""
    width = max(20, console.width)
    head = head.copy() if isinstance(head, Text) else Text(head)
    head.rstrip()
    if len(head.plain) > width:  # rich would leave a blank at the end of the broken line
        head = Text(textwrap.fill(head.plain, width=width, subsequent_indent="  "), "bold")
    console.print(head, overflow="fold")
    for line in details:
        if line:
            wrapped = textwrap.fill(
                line,
                width=width,
                initial_indent=" " * INDENT,
                subsequent_indent=" " * INDENT,
                break_on_hyphens=False,
            )
            console.print(Text(wrapped), overflow="fold")


def commands(console: Console, lines: list[str]) -> None:
    """Lines to copy and paste: never broken (a terminal wraps them softly)."""
    for line in lines:
        console.print(Text(" " * INDENT + "$ " + line), soft_wrap=True)


def figures_summary(kind: str, figures: dict[str, Any]) -> str:
    """A check's figures in one phrase: what was judged and against what."""
    if kind == "drift" or "drift_share" in figures:
        drifted = figures.get("drifted_columns") or []
        text = f"drift share {fmt(figures.get('drift_share'))}"
        if drifted:
            text += f", drifted: {', '.join(drifted)}"
        if figures.get("prediction_drift"):
            text += "; predictions drifted"
        return text
    headline = figures.get("headline") or ("accuracy" if "accuracy" in figures else None)
    if headline is not None:
        bound = figures.get("bound", figures.get("accuracy_floor"))
        baseline = figures.get(f"baseline_{headline}")
        value = fmt(figures.get(headline))
        return f"{headline} {value} (bound {fmt(bound)}, reference {fmt(baseline)})"
    gaps = figures.get("gaps") or {}
    widest = [(v, f"{a} {g}") for a, found in gaps.items() for g, v in found.items()]
    if widest:
        value, name = max(widest)
        return f"widest group gap: {name} {fmt(value)}"
    return ", ".join(f"{k}={fmt(v)}" for k, v in figures.items() if not isinstance(v, dict)) or "-"


# -- warden status ----------------------------------------------------------------------------
def render_status_document(doc: dict, console: Console) -> None:
    console.rule("Models", align="left")
    models = Table()
    for col in ("model", "serving", "versions", "predictions", "labelled", "open"):
        models.add_column(col, overflow="fold")
    for m in doc["models"]:
        versions = m["versions"]
        shown = ", ".join(versions[-3:]) + (f" (+{len(versions) - 3})" if len(versions) > 3 else "")
        models.add_row(
            m["name"],
            m["active"] or "-",
            shown or "-",
            str(m["predictions"]),
            str(m["labelled"]),
            str(m["open_incidents"]),
        )
    console.print(models)
    console.print(f"dead letters: {doc['dead_letters']}")
    render_daemons(doc["daemons"], console)
    render_checks(doc["checks"], console)
    render_incidents(doc["incidents"], console, title="Open incidents")
    render_candidates(doc["candidates"], console)


def render_daemons(daemons: list[dict], console: Console) -> None:
    console.rule("Daemons", align="left")
    if not daemons:
        console.print("none seen in the last day")
    for d in daemons:
        seen = f"seen {d['age_s']:.0f}s ago" if d["alive"] else f"GONE (seen {d['age_s']:.0f}s ago)"
        head = Text.assemble((d["id"], "bold"), f"  {seen}  intake state: ", d["state"])
        item(
            console,
            head,
            f"consumed {d['consumed']} · stored {d['predictions']} predictions, "
            f"{d['labels']} labels · dead {d['dead_letters']} · lag {fmt(d['lag'])}",
            f"leases: {', '.join(d['leases']) or '-'}",
        )


def render_checks(checks: list[dict], console: Console) -> None:
    console.rule("Last checks", align="left")
    for run in checks:
        if run["skipped"]:
            result, detail = ("skipped", "yellow"), f"skipped: {run['skipped_reason']}"
        else:
            result = ("passed", "green") if run["passed"] else ("FAILED", "bold red")
            detail = figures_summary(run["kind"], run["figures"])
        labelled = f" ({run['labelled_rows']} labelled)" if run["labelled_rows"] else ""
        head = Text.assemble(
            (f"{run['model']} {run['kind']}", "bold"),
            f" {run['model_version']} {when(run['at'])} ",
            result,
            f" {run['rows']} rows{labelled} {run['duration_s']:.2f}s",
        )
        item(console, head, detail)


# -- warden incidents -------------------------------------------------------------------------
def render_incidents(incidents: list[dict], console: Console, title: str = "Incidents") -> None:
    console.rule(title, align="left")
    if not incidents:
        console.print("none")
    for inc in incidents:
        style = "bold red" if inc["severity"] in ("critical", "high") else "bold"
        head = Text.assemble(
            (f"#{inc['id']} {inc['model']} {inc['kind']} ", "bold"),
            (inc["severity"], style),
            f" {inc['status']} · opened {when(inc['opened_at'])}",
        )
        times = f"updated {when(inc['updated_at'])}"
        if inc["resolved_at"]:
            times += f" · closed {when(inc['resolved_at'])}"
        if inc.get("candidate_id"):
            times += f" · candidate {inc['candidate_id']}"
        if inc.get("page_path"):
            where = f"page: {inc['page_path']}"
        else:
            where = f"report: {inc['report_path']}" if inc.get("report_path") else ""
        item(console, head, inc["summary"], times, where)
    if incidents:
        console.print(Text("details: warden incidents ID (or --json)", style="dim"))


def render_incident(doc: dict, console: Console) -> None:
    """`warden incidents ID`: the incident page's story, in text."""
    inc, window = doc["incident"], doc["window"]
    console.rule(f"incident #{inc['id']}", align="left")
    item(
        console,
        Text.assemble(
            (f"{inc['model']} {inc['model_version']} {inc['kind']} ", "bold"),
            (inc["severity"], "bold red"),
            f" {inc['status']}",
        ),
        f"window: {window['rows']} rows ({window['labelled_rows']} labelled), seq "
        f"{window['start_seq']}–{window['end_seq']}, {when(window['start_ts'])} → "
        f"{when(window['end_ts'])}",
        f"reference: {doc['reference']}",
        f"opened {when(inc['opened_at'])} · updated {when(inc['updated_at'])}"
        + (f" · closed {when(inc['resolved_at'])}" if inc["resolved_at"] else ""),
        f"flagged samples: {doc['flagged_samples']} · clean checks: {inc['clean_checks']}",
    )
    item(console, Text("verdict", style="bold"), inc["summary"], *doc["where"])
    item(console, Text("next action", style="bold"), doc["next_action"])
    commands(console, doc["commands"])
    for cand in doc["candidates"]:
        figures = " · ".join(
            f"{k} {fmt(a)} → {fmt(b)}"
            for k, a, b in cand["figures"]
            if isinstance(a, int | float) or isinstance(b, int | float)
        )
        item(
            console,
            Text.assemble(("candidate ", "bold"), f"{cand['id']} {cand['status']}"),
            figures,
            *[f"- {r}" for r in cand["reasons"]],
        )
    item(
        console,
        Text("files", style="bold"),
        f"page: {doc['page_path']}",
        f"Evidently report: {inc['report_path'] or '-'}",
    )


# -- candidates -------------------------------------------------------------------------------
def render_candidates(candidates: list[dict], console: Console) -> None:
    console.rule("Candidates", align="left")
    if not candidates:
        console.print("none")
    for cand in candidates:
        ch, ca = cand["champion_metrics"], cand["candidate_metrics"]
        pairs = [
            f"{label} {fmt(ch.get(key))} → {fmt(ca.get(key))}"
            for key, label in (
                ("recent_holdout_accuracy", "recent acc"),
                ("recent_holdout_mae", "recent mae"),
                ("reference_guarded_accuracy", "reference acc"),
                ("reference_guarded_mae", "reference mae"),
            )
            if key in ch or key in ca
        ]
        head = Text.assemble(
            (cand["id"], "bold"),
            f" {cand['status']} · {cand['parent_version']} → {cand['version']}",
            f" · incident #{cand['incident_id']}" if cand.get("incident_id") else "",
        )
        item(
            console,
            head,
            " · ".join(pairs) + "  (champion → candidate)" if pairs else "",
            "; ".join(str(r) for r in cand["reasons"]),
        )
