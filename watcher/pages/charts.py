"""The figures of what decided an incident, drawn with plotly (the library Evidently's own
widgets use): each drifted column against its calibrated normal range, quality against its
bound and the reference, error slices by lift, group gaps with their 95 % intervals, and the
history of each over the last checks."""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go

from storage.tables import CheckRun

RED, GREY, BLUE, GREEN, AMBER = "#c62828", "#cfd8dc", "#1565c0", "#2e7d32", "#ef6c00"
HEIGHT = 320


def _layout(fig: go.Figure, title: str, height: int = HEIGHT, **axes: Any) -> go.Figure:
    fig.update_layout(
        title={"text": title, "x": 0.01, "font": {"size": 15}},
        template="plotly_white",
        height=height,
        margin={"l": 10, "r": 10, "t": 48, "b": 10},
        legend={"orientation": "h", "y": -0.18},
        **axes,
    )
    fig.update_yaxes(automargin=True)
    fig.update_xaxes(automargin=True)
    return fig


def _when(run: CheckRun) -> str:
    return run.created_at.strftime("%Y-%m-%d %H:%M:%S")


# -- drift ------------------------------------------------------------------------------------
def drift_columns(figures: dict) -> go.Figure:
    """Every column's drift magnitude (bar) over its calibrated normal range (grey band)."""
    columns: dict[str, dict] = figures.get("columns", {})
    names = sorted(columns, key=lambda c: columns[c].get("magnitude") or 0.0)
    magnitude = [columns[c].get("magnitude") for c in names]
    normal = [columns[c].get("normal_high") for c in names]
    fig = go.Figure()
    fig.add_bar(
        y=names,
        x=normal,
        orientation="h",
        name="normal range (calibrated on reference chunks)",
        marker_color=GREY,
        width=0.8,
    )
    fig.add_bar(
        y=names,
        x=magnitude,
        orientation="h",
        name="this window",
        marker_color=[RED if columns[c].get("drifted") else BLUE for c in names],
        width=0.4,
        customdata=[columns[c].get("method", "") for c in names],
        hovertemplate="%{y}: %{x:.3g} (%{customdata})<extra></extra>",
    )
    return _layout(
        fig,
        "Drift of each column against its normal range (red: outside it)",
        height=max(HEIGHT, 40 + 28 * len(names)),
        barmode="overlay",
        xaxis_title="drift magnitude (distance, or −log10 p)",
    )


def drift_history(runs: list[CheckRun], columns: list[str]) -> go.Figure:
    """The drifted columns' magnitude over the last checks, each with its normal high."""
    fig = go.Figure()
    for i, col in enumerate(columns):
        color = [RED, AMBER, BLUE, GREEN, "#6a1b9a"][i % 5]
        xs = [_when(r) for r in runs]
        col_figs = [(r.figures or {}).get("columns", {}).get(col, {}) for r in runs]
        fig.add_scatter(
            x=xs,
            y=[c.get("magnitude") for c in col_figs],
            mode="lines+markers",
            name=col,
            line_color=color,
        )
        fig.add_scatter(
            x=xs,
            y=[c.get("normal_high") for c in col_figs],
            mode="lines",
            name=f"{col}: normal high",
            line={"color": color, "dash": "dot", "width": 1},
        )
    return _layout(fig, "Drift over the last checks", yaxis_title="drift magnitude")


# -- quality ----------------------------------------------------------------------------------
def quality_gauge(figures: dict, floor: float | None) -> go.Figure:
    """The headline figure of the window against its bound, with the reference as the delta."""
    headline = figures.get("headline", "accuracy")
    value, bound = figures.get(headline), figures.get("bound")
    baseline = figures.get(f"baseline_{headline}")
    lower_better = headline in ("mae", "rmse")
    top = max(v for v in (value, bound, baseline, 0.0 if lower_better else 1.0) if v is not None)
    steps = []
    if bound is not None:
        bad = [bound, top * 1.1] if lower_better else [0, bound]
        steps.append({"range": bad, "color": "#ffcdd2"})
    fig = go.Figure(
        go.Indicator(
            mode="number+gauge+delta",
            value=value,
            number={"valueformat": ".3f"},
            delta={
                "reference": baseline,
                "valueformat": ".3f",
                "increasing": {"color": RED if lower_better else GREEN},
                "decreasing": {"color": GREEN if lower_better else RED},
            },
            title={"text": f"{headline}: this window (delta vs reference)"},
            gauge={
                "shape": "bullet",
                "axis": {"range": [0, top * 1.1 if lower_better else 1.0]},
                "bar": {"color": BLUE},
                "steps": steps,
                "threshold": {"line": {"color": RED, "width": 3}, "value": bound},
            },
        )
    )
    title = f"{headline} against its bound {bound:.3f}" if bound is not None else headline
    if floor is not None:
        title += f" (configured floor {floor:.3f})"
    fig.update_traces(domain={"x": [0.0, 1.0], "y": [0.3, 0.8]}, selector={"type": "indicator"})
    return _layout(fig, title, height=220)


def quality_history(runs: list[CheckRun], headline: str) -> go.Figure:
    xs = [_when(r) for r in runs]
    figs = [r.figures or {} for r in runs]
    fig = go.Figure()
    fig.add_scatter(
        x=xs,
        y=[f.get(headline) for f in figs],
        mode="lines+markers",
        name=headline,
        marker_color=[BLUE if r.passed else RED for r in runs],
        line_color=BLUE,
    )
    fig.add_scatter(
        x=xs, y=[f.get("bound") for f in figs], mode="lines", name="bound", line_color=RED
    )
    fig.add_scatter(
        x=xs,
        y=[f.get(f"baseline_{headline}") for f in figs],
        mode="lines",
        name="reference",
        line={"color": GREEN, "dash": "dot"},
    )
    return _layout(fig, f"{headline} over the last checks (red points: failed)")


def error_slices(figures: dict, labels: list[str]) -> go.Figure:
    """Where the errors concentrate: each slice's lift over the window's error rate."""
    slices = figures.get("error_slices", [])
    fig = go.Figure(
        go.Bar(
            y=labels[::-1],
            x=[s["lift"] for s in slices][::-1],
            orientation="h",
            marker_color=RED,
            text=[f"{s['error_rate']:.0%} errors, {s['rows']} rows" for s in slices][::-1],
            textposition="auto",
            hovertemplate="%{y}: lift %{x:.2f} (%{text})<extra></extra>",
        )
    )
    fig.add_vline(x=1.0, line_dash="dot", line_color=GREY)
    return _layout(
        fig,
        "Error slices by lift (error rate ÷ the window's)",
        height=max(200, 60 + 40 * len(slices)),
        xaxis_title="lift",
    )


# -- groups -----------------------------------------------------------------------------------
def group_gaps(figures: dict) -> go.Figure:
    """Every gap of every attribute with its 95 % interval, beside its bound: red when it
    failed (above the bound and significant), amber when above the bound but within noise."""
    failed_gaps = {(f["attribute"], f["gap"]) for f in figures.get("failures", [])}
    labels, values, low, high, bounds, colors = [], [], [], [], [], []
    for attribute, found in figures.get("attributes", {}).items():
        for gap, f in found.get("gaps", {}).items():
            labels.append(f"{attribute}: {gap}")
            values.append(f["value"])
            interval = f.get("interval") or [f["value"], f["value"]]
            low.append(f["value"] - interval[0])
            high.append(interval[1] - f["value"])
            bounds.append(f.get("bound"))
            above = f.get("bound") is not None and f["value"] > f["bound"]
            failed = (attribute, gap) in failed_gaps
            colors.append(RED if failed else AMBER if above else BLUE)
    fig = go.Figure()
    fig.add_scatter(
        y=labels,
        x=values,
        mode="markers",
        name="gap (95 % interval)",
        marker={"color": colors, "size": 11},
        error_x={"type": "data", "symmetric": False, "array": high, "arrayminus": low},
    )
    fig.add_scatter(
        y=labels,
        x=bounds,
        mode="markers",
        name="bound",
        marker={"symbol": "line-ns-open", "size": 22, "color": RED, "line": {"width": 3}},
    )
    return _layout(
        fig,
        "Group gaps with their 95 % intervals, against their bounds",
        height=max(220, 60 + 44 * len(labels)),
        xaxis_title="gap between the best and the worst group",
    )


def gap_history(runs: list[CheckRun], failures: list[dict]) -> go.Figure:
    fig = go.Figure()
    xs = [_when(r) for r in runs]
    for i, f in enumerate(failures[:4]):
        color = [RED, AMBER, BLUE, GREEN][i]
        attribute, gap = f["attribute"], f["gap"]
        fig.add_scatter(
            x=xs,
            y=[(r.figures or {}).get("gaps", {}).get(attribute, {}).get(gap) for r in runs],
            mode="lines+markers",
            name=f"{attribute}: {gap}",
            line_color=color,
        )
        fig.add_hline(y=f["bound"], line_dash="dot", line_color=color)
    return _layout(fig, "Failing gaps over the last checks (dotted: bound)")
