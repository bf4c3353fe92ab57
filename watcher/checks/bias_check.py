"""The bias check: per-group quality and outcome rates, and the gaps between groups."""

from __future__ import annotations

import numpy as np
import pandas as pd
import structlog

from watcher.checks.groups import GAP_INDICATORS, fixed_gap_bounds, gap_p_value
from watcher.checks.outcome import GROUP_PREFIX, CheckOutcome, is_error
from watcher.checks.quality import (
    gaps,
    group_quality,
)
from watcher.config import ModelConfig

log = structlog.get_logger("warden.detection")


class BiasCheck:
    """The bias check of `ModelChecker`: per-group quality and outcome rates, and gaps
    that are both outside their normal range and significant in the window."""

    # -- bias -------------------------------------------------------------------------------
    def bias(self, cfg: ModelConfig, version: str, window: pd.DataFrame) -> CheckOutcome:
        checks = cfg.checks
        outcome, labelled = self._labelled_outcome("bias", cfg, version, window)
        if outcome.skipped_reason:
            return outcome
        attributes = [
            c
            for c in labelled
            if c.startswith(GROUP_PREFIX)
            and (
                checks.group_attributes is None or c[len(GROUP_PREFIX) :] in checks.group_attributes
            )
        ]
        if not attributes:
            return outcome.skip("no group attributes in the window's predictions")
        classes = self.serving_model(version).classes
        cal = self.calibration(cfg, version, len(labelled))
        fixed = fixed_gap_bounds(cfg)
        per_attribute: dict[str, dict] = {}
        failures: list[dict] = []
        for column in attributes:
            attribute = column[len(GROUP_PREFIX) :]
            groups = group_quality(labelled, column, cfg.task, classes, checks.min_group_rows)
            found = gaps(groups, cfg.task)
            for gap, figures in found.items():
                normal = cal.gaps.get(column, {}).get(gap) if cal is not None else None
                bound = normal.high if normal is not None else fixed[gap]
                figures["bound"] = bound
                figures["calibrated"] = normal is not None
                # wider than normal, and not just the noise of this window's own error rates
                figures["p_value"] = gap_p_value(labelled, column, gap, figures, cfg.task, classes)
                figures["interval"] = gap_interval(
                    labelled, column, gap, figures, cfg.task, classes
                )
                if figures["value"] > bound and figures["p_value"] < checks.bias_alpha:
                    failures.append({"attribute": attribute, "gap": gap, **figures})
            per_attribute[attribute] = {"groups": groups, "gaps": found}
        outcome.passed = not failures
        failures.sort(key=lambda f: -(f["value"] - f["bound"]))
        outcome.figures = {
            "attributes": per_attribute,
            "gaps": {
                a: {g: f["value"] for g, f in v["gaps"].items()} for a, v in per_attribute.items()
            },
            "failures": failures,
            "reference": self.baseline(cfg, version).source,
        }
        outcome.summary = (
            "; ".join(
                f"groups.{f['attribute']}: {f['gap']} {f['value']:.3f} > {f['bound']:.3f}, "
                f"{f['disadvantaged']} disadvantaged"
                for f in failures[:3]
            )
            or f"group gaps within bounds for {', '.join(per_attribute)}"
        )
        if failures:
            worst = failures[0]
            outcome.severity = "critical" if worst["value"] >= 2 * worst["bound"] else "high"
            column = GROUP_PREFIX + worst["attribute"]
            in_group = labelled[column].astype(str) == worst["disadvantaged"]
            errors = is_error(labelled, cfg.task, self.baseline(cfg, version))
            outcome.flagged_ids = labelled.loc[in_group & errors, "prediction_id"].tolist()[
                : checks.max_flagged_ids
            ]
            snapshot = self._group_report(cfg, classes, labelled, in_group)
            outcome.report_path = self.save(
                snapshot,
                outcome,
                f"the other groups of {column} in this window",
                note=f"Current = {column} = {worst['disadvantaged']} (the disadvantaged group), "
                f"reference = every other group of {column}, in the same window.",
            )
        return outcome

    def _group_report(self, cfg, classes, labelled, in_group):
        """The disadvantaged group (current) against everyone else (reference), in Evidently."""
        from evidently import Dataset, Report

        from watcher.checks.quality import _metrics, _task_definition, frame_for_quality

        defn = _task_definition(cfg.task, classes, [], [])
        snapshot = Report(_metrics(cfg.task)).run(
            Dataset.from_pandas(
                frame_for_quality(labelled[in_group], cfg.task), data_definition=defn
            ),
            Dataset.from_pandas(
                frame_for_quality(labelled[~in_group], cfg.task), data_definition=defn
            ),
        )
        return snapshot


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
