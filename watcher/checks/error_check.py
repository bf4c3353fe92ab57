"""The error check: quality once labels arrive, against a calibrated or fixed bound, with the
slices where errors concentrate."""

from __future__ import annotations

import pandas as pd
import structlog

from watcher.checks.calibration import NormalRange
from watcher.checks.outcome import GROUP_PREFIX, CheckOutcome, is_error
from watcher.checks.quality import (
    HEADLINE,
    LOWER_IS_BETTER,
    evidently_quality,
)
from watcher.checks.slices import find_error_slices
from watcher.config import ModelConfig

log = structlog.get_logger("warden.detection")


class ErrorCheck:
    """The error check of `ModelChecker`: headline quality on labelled rows against its
    bound, and the slices where errors concentrate."""

    # -- errors -----------------------------------------------------------------------------
    def _quality_bound(self, cfg: ModelConfig, version: str, rows: int) -> float:
        """The worst headline figure that is still normal (calibrated, fixed or a floor)."""
        checks, headline = cfg.checks, HEADLINE[cfg.task]
        base = self.baseline(cfg, version)
        cal = self.calibration(cfg, version, rows)
        worse_is_higher = headline in LOWER_IS_BETTER
        if cal is not None and headline in cal.quality:
            normal: NormalRange = cal.quality[headline]
            bound = normal.high if worse_is_higher else normal.low
        elif worse_is_higher:
            bound = base.quality[headline] + checks.max_mae_increase
        else:
            bound = base.quality[headline] - checks.max_accuracy_drop
        if worse_is_higher and checks.max_mae is not None:
            bound = min(bound, checks.max_mae)
        if not worse_is_higher and checks.min_accuracy is not None:
            bound = max(bound, checks.min_accuracy)
        return bound

    def error(self, cfg: ModelConfig, version: str, window: pd.DataFrame) -> CheckOutcome:
        checks = cfg.checks
        outcome, labelled = self._labelled_outcome("error", cfg, version, window)
        if outcome.skipped_reason:
            return outcome
        base = self.baseline(cfg, version)
        classes = self.serving_model(version).classes
        result = evidently_quality(labelled, cfg.task, classes)
        headline = HEADLINE[cfg.task]
        value = float(result.figures[headline])
        bound = self._quality_bound(cfg, version, len(labelled))
        worse_is_higher = headline in LOWER_IS_BETTER
        outcome.passed = bool(value <= bound if worse_is_higher else value >= bound)
        errors = is_error(labelled, cfg.task, base)
        slices = find_error_slices(
            labelled,
            errors,
            numeric=list(cfg.numeric_features),
            categorical=[
                *cfg.categorical_features,
                *[c for c in labelled if c.startswith(GROUP_PREFIX)],
            ],
            edges=base.edges,
            min_rows=checks.slice_min_rows,
            alpha=checks.slice_alpha,
        )
        outcome.figures = {
            **result.figures,
            "headline": headline,
            "bound": bound,
            f"baseline_{headline}": base.quality[headline],
            "errors": int(errors.sum()),
            "error_slices": [s.as_dict() for s in slices[:10]],
            "reference": base.source,
        }
        if headline == "accuracy":  # kept for the demo narration and older readers
            outcome.figures["baseline_accuracy"] = base.quality["accuracy"]
            outcome.figures["accuracy_floor"] = bound
            outcome.figures["misclassified"] = int(errors.sum())
        where = "; ".join(f"{s.column}={s.value} ({s.error_rate:.0%})" for s in slices[:3])
        outcome.summary = (
            f"{headline} {value:.3f} on {len(labelled)} labelled rows vs baseline "
            f"{base.quality[headline]:.3f} (bound {bound:.3f})"
            + (f"; errors concentrate in {where}" if where else "")
        )
        if not outcome.passed:
            gap = abs(value - base.quality[headline])
            margin = abs(base.quality[headline] - bound) or 1e-9
            outcome.severity = "critical" if gap >= 2 * margin else "high"
            # the errors, and the rows of the slices where errors concentrate
            in_slices = pd.Series(False, index=labelled.index)
            for found in slices[:10]:
                in_slices |= found.mask(labelled)
            outcome.flagged_ids = labelled.loc[errors | in_slices, "prediction_id"].tolist()[
                : checks.max_flagged_ids
            ]
            report = quality_page_report(labelled, base.frame, cfg.task, classes, bound)
            outcome.report_path = self.save(
                report,
                outcome,
                base.source,
                note=f"Current = this window's labelled rows, reference = {base.source} scored by "
                f"{version}. The one test is warden's: {headline} against its bound {bound:.3f}.",
            )
        return outcome


def quality_page_report(labelled, reference, task: str, classes, bound: float):
    """Evidently's quality widgets, current beside reference; the headline tested against
    warden's bound and no other test (Evidently's default ±20 % of reference is not ours)."""
    from evidently import Dataset, Report
    from evidently import metrics as m
    from evidently.tests import gte, lte

    from watcher.checks.quality import _task_definition, frame_for_quality

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
    defn = _task_definition(task, classes, [], [])
    current, ref = (
        Dataset.from_pandas(frame_for_quality(f, task), data_definition=defn)
        for f in (labelled, reference)
    )
    return Report(metrics, include_tests=True).run(current, ref)
