"""The error check: quality once labels arrive, against a calibrated or fixed bound, with the
slices where errors concentrate."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from watcher.checks.baseline import quality_bound
from watcher.checks.outcome import (
    GROUP_PREFIX,
    Baseline,
    CheckKind,
    CheckOutcome,
    is_error,
    labelled_outcome,
)
from watcher.checks.protocol import CheckContext, VersionReference
from watcher.checks.quality import HEADLINE, LOWER_IS_BETTER, numpy_quality
from watcher.checks.slices import ErrorSlice, find_error_slices
from watcher.config import ModelConfig


@dataclass
class Measured:
    """The error check's figures for one labelled window."""

    figures: dict[str, Any]  # Evidently's quality figures
    headline: str
    value: float
    bound: float
    errors: pd.Series  # per labelled row
    slices: list[ErrorSlice]  # where errors concentrate, worst first

    @property
    def passed(self) -> bool:
        if self.headline in LOWER_IS_BETTER:
            return bool(self.value <= self.bound)
        return bool(self.value >= self.bound)


class ErrorCheck:
    """Headline quality on labelled rows against its bound, and the slices where errors
    concentrate."""

    kind = CheckKind.ERROR

    def run(
        self, window: pd.DataFrame, reference: VersionReference, context: CheckContext
    ) -> CheckOutcome:
        cfg = context.cfg
        outcome, rows = labelled_outcome(self.kind, cfg, reference.version, window)
        if outcome.skipped_reason:
            return outcome
        base = reference.baseline
        found = measure(rows, reference, cfg)
        outcome.passed = found.passed
        outcome.figures = error_figures(found, base)
        outcome.summary = error_summary(found, base, len(rows))
        if not outcome.passed:
            self._failed(outcome, found, rows, reference, context)
        return outcome

    def _failed(
        self,
        outcome: CheckOutcome,
        found: Measured,
        rows: pd.DataFrame,
        reference: VersionReference,
        context: CheckContext,
    ) -> None:
        """Severity, the errors and the rows of their slices, and the Evidently page."""
        cfg, base = context.cfg, reference.baseline
        gap = abs(found.value - base.quality[found.headline])
        margin = abs(base.quality[found.headline] - found.bound) or 1e-9
        outcome.severity = "critical" if gap >= 2 * margin else "high"
        in_slices = pd.Series(False, index=rows.index)
        for piece in found.slices[:10]:
            in_slices |= piece.mask(rows)
        outcome.flagged_ids = rows.loc[found.errors | in_slices, "prediction_id"].tolist()[
            : cfg.checks.max_flagged_ids
        ]
        classes = reference.classes
        outcome.report_path = context.keep_page(
            lambda: quality_page_report(rows, base.frame, cfg.task, classes, found.bound),
            outcome,
            base.source,
            note=f"Current = this window's labelled rows, reference = {base.source} scored by "
            f"{reference.version}. The one test is warden's: {found.headline} against its "
            f"bound {found.bound:.3f}.",
        )


def measure(rows: pd.DataFrame, reference: VersionReference, cfg: ModelConfig) -> Measured:
    """Quality (Evidently's figures, in numpy), its bound, the misclassified (or far-off) rows
    and their slices."""
    checks, base = cfg.checks, reference.baseline
    result = numpy_quality(rows, cfg.task, reference.classes)
    headline = HEADLINE[cfg.task]
    value = float(result.figures[headline])
    bound = quality_bound(cfg, base, reference.calibration(len(rows)))
    errors = is_error(rows, cfg.task, base)
    slices = find_error_slices(
        rows,
        errors,
        numeric=list(cfg.numeric_features),
        categorical=[*cfg.categorical_features, *[c for c in rows if c.startswith(GROUP_PREFIX)]],
        edges=base.edges,
        min_rows=checks.slice_min_rows,
        alpha=checks.slice_alpha,
    )
    return Measured(result.figures, headline, value, bound, errors, slices)


def error_figures(found: Measured, base: Baseline) -> dict[str, Any]:
    headline, bound, errors = found.headline, found.bound, int(found.errors.sum())
    figures = {
        **found.figures,
        "headline": headline,
        "bound": bound,
        f"baseline_{headline}": base.quality[headline],
        "errors": errors,
        "error_slices": [s.as_dict() for s in found.slices[:10]],
        "reference": base.source,
    }
    if headline == "accuracy":  # kept for the demo narration and older readers
        figures["baseline_accuracy"] = base.quality["accuracy"]
        figures["accuracy_floor"] = bound
        figures["misclassified"] = errors
    return figures


def error_summary(found: Measured, base: Baseline, rows: int) -> str:
    where = "; ".join(f"{s.column}={s.value} ({s.error_rate:.0%})" for s in found.slices[:3])
    return (
        f"{found.headline} {found.value:.3f} on {rows} labelled rows vs baseline "
        f"{base.quality[found.headline]:.3f} (bound {found.bound:.3f})"
        + (f"; errors concentrate in {where}" if where else "")
    )


def quality_page_report(labelled, reference, task: str, classes, bound: float):
    """Evidently's quality widgets, current beside reference; the headline tested against
    warden's bound and no other test (Evidently's default ±20 % of reference is not ours)."""
    from evidently import Dataset, Report
    from evidently import metrics as m
    from evidently.tests import gte, lte

    from watcher.checks.quality import frame_for_quality, task_definition

    if task == "regression":
        metrics = [
            m.MAE(mean_tests=[lte(bound)], std_tests=[]),
            m.RMSE(tests=[]),
            m.R2Score(tests=[]),
        ]
    else:
        metrics = [
            m.Accuracy(tests=[gte(bound)]),
            m.Precision(tests=[]),
            m.Recall(tests=[]),
            m.F1Score(tests=[]),
            m.PrecisionByLabel(tests={}),
            m.RecallByLabel(tests={}),
        ]
    defn = task_definition(task, classes, [], [])
    current, ref = (
        Dataset.from_pandas(frame_for_quality(f, task), data_definition=defn)
        for f in (labelled, reference)
    )
    return Report(metrics, include_tests=True).run(current, ref)
