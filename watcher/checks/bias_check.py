"""The bias check: per-group quality and outcome rates, and the gaps between groups."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from watcher.checks.calibration import Calibration
from watcher.checks.groups import GAP_INDICATORS, fixed_gap_bounds, gap_p_value
from watcher.checks.outcome import GROUP_PREFIX, CheckKind, CheckOutcome, is_error, labelled_outcome
from watcher.checks.protocol import CheckContext, VersionReference
from watcher.checks.quality import gaps, group_quality
from watcher.config import ModelConfig


@dataclass
class GroupFindings:
    """Per attribute: its groups' figures and gaps; the gaps that fail, widest over first."""

    per_attribute: dict[str, dict[str, Any]] = field(default_factory=dict)
    failures: list[dict[str, Any]] = field(default_factory=list)


class BiasCheck:
    """Per-group quality and outcome rates, and gaps that are both outside their normal range
    and significant in the window."""

    kind = CheckKind.BIAS

    def run(
        self, window: pd.DataFrame, reference: VersionReference, context: CheckContext
    ) -> CheckOutcome:
        cfg = context.cfg
        outcome, rows = labelled_outcome(self.kind, cfg, reference.version, window)
        if outcome.skipped_reason:
            return outcome
        attributes = group_columns(rows, cfg)
        if not attributes:
            return outcome.skip("no group attributes in the window's predictions")
        cal = reference.calibration(len(rows))
        found = find_gaps(rows, attributes, cal, reference.classes, cfg)
        outcome.passed = not found.failures
        outcome.figures = bias_figures(found, reference.baseline.source)
        outcome.summary = bias_summary(found)
        if found.failures:
            self._failed(outcome, found.failures[0], rows, reference, context)
        return outcome

    def _failed(
        self,
        outcome: CheckOutcome,
        worst: dict[str, Any],
        rows: pd.DataFrame,
        reference: VersionReference,
        context: CheckContext,
    ) -> None:
        """Severity, the errors of the disadvantaged group, and the Evidently page."""
        cfg = context.cfg
        outcome.severity = "critical" if worst["value"] >= 2 * worst["bound"] else "high"
        column = GROUP_PREFIX + worst["attribute"]
        in_group = rows[column].astype(str) == worst["disadvantaged"]
        errors = is_error(rows, cfg.task, reference.baseline)
        outcome.flagged_ids = rows.loc[in_group & errors, "prediction_id"].tolist()[
            : cfg.checks.max_flagged_ids
        ]
        classes = reference.classes
        outcome.report_path = context.keep_page(
            lambda: group_page_report(cfg.task, classes, rows, in_group),
            outcome,
            f"the other groups of {column} in this window",
            note=f"Current = {column} = {worst['disadvantaged']} (the disadvantaged group), "
            f"reference = every other group of {column}, in the same window.",
        )


def group_columns(rows: pd.DataFrame, cfg: ModelConfig) -> list[str]:
    """The window's `groups.*` columns, only the configured attributes when some are."""
    wanted = cfg.checks.group_attributes
    return [
        c
        for c in rows
        if c.startswith(GROUP_PREFIX) and (wanted is None or c[len(GROUP_PREFIX) :] in wanted)
    ]


def find_gaps(
    rows: pd.DataFrame,
    attributes: list[str],
    cal: Calibration | None,
    classes: list[str],
    cfg: ModelConfig,
) -> GroupFindings:
    """Every gap of every attribute against its bound (calibrated, else fixed); a gap fails
    when it is wider than normal and not just the noise of this window's own rates."""
    checks, fixed = cfg.checks, fixed_gap_bounds(cfg)
    found = GroupFindings()
    for column in attributes:
        attribute = column[len(GROUP_PREFIX) :]
        groups = group_quality(rows, column, cfg.task, classes, checks.min_group_rows)
        found_gaps = gaps(groups, cfg.task)
        for gap, figures in found_gaps.items():
            normal = cal.gaps.get(column, {}).get(gap) if cal is not None else None
            bound = normal.high if normal is not None else fixed[gap]
            figures["bound"] = bound
            figures["calibrated"] = normal is not None
            figures["p_value"] = gap_p_value(rows, column, gap, figures, cfg.task, classes)
            figures["interval"] = gap_interval(rows, column, gap, figures, cfg.task, classes)
            if figures["value"] > bound and figures["p_value"] < checks.bias_alpha:
                found.failures.append({"attribute": attribute, "gap": gap, **figures})
        found.per_attribute[attribute] = {"groups": groups, "gaps": found_gaps}
    found.failures.sort(key=lambda f: -(f["value"] - f["bound"]))
    return found


def bias_figures(found: GroupFindings, source: str) -> dict[str, Any]:
    return {
        "attributes": found.per_attribute,
        "gaps": {
            a: {g: f["value"] for g, f in v["gaps"].items()} for a, v in found.per_attribute.items()
        },
        "failures": found.failures,
        "reference": source,
    }


def bias_summary(found: GroupFindings) -> str:
    return (
        "; ".join(
            f"groups.{f['attribute']}: {f['gap']} {f['value']:.3f} > {f['bound']:.3f}, "
            f"{f['disadvantaged']} disadvantaged"
            for f in found.failures[:3]
        )
        or f"group gaps within bounds for {', '.join(found.per_attribute)}"
    )


def group_page_report(
    task: str, classes: list[str], rows: pd.DataFrame, in_group: pd.Series
) -> Any:
    """The disadvantaged group (current) against everyone else (reference), in Evidently."""
    from evidently import Dataset, Report

    from watcher.checks.quality import frame_for_quality, quality_metrics, task_definition

    defn = task_definition(task, classes, [], [])
    return Report(quality_metrics(task)).run(
        Dataset.from_pandas(frame_for_quality(rows[in_group], task), data_definition=defn),
        Dataset.from_pandas(frame_for_quality(rows[~in_group], task), data_definition=defn),
    )


def gap_interval(
    frame: pd.DataFrame, column: str, gap: str, figures: dict, task: str, classes: list[str]
) -> list[float] | None:
    """95 % interval of a gap (high group − low group): Wald for two proportions, Welch-style
    for the MAE gap. Shown on the incident page beside the bound."""
    groups = frame[column].astype(str)
    low, high = (frame[groups == g] for g in (figures["low_group"], figures["high_group"]))
    if task == "regression":
        a, b = (
            (pd.to_numeric(p["prediction"]) - pd.to_numeric(p["target"])).abs().to_numpy()
            for p in (low, high)
        )
        spread = [x.var(ddof=1) / len(x) if len(x) > 1 else np.nan for x in (a, b)]
    else:
        a, b = (GAP_INDICATORS[gap](p, classes[-1]).to_numpy(dtype=float) for p in (low, high))
        spread = [x.mean() * (1 - x.mean()) / len(x) if len(x) else np.nan for x in (a, b)]
    half = 1.96 * float(np.sqrt(sum(spread)))
    if not np.isfinite(half):
        return None
    value = float(figures["value"])
    return [value - half, value + half]
