"""Scheduled checks of one model's traffic against its reference, with Evidently:

- **drift**: per-column data drift and prediction drift;
- **error**: quality once labels arrive, with the slices where errors concentrate;
- **bias**: per-group quality and outcome rates, and the gaps between groups.

Thresholds are calibrated on the reference by default (see `calibration.py`), or fixed in
config. Evidently is imported lazily inside the helpers: it costs ~3 s and ~290 MB at import.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import structlog
from sqlalchemy import Engine

from correctors.champion import load_reference
from correctors.runtime import OnnxModel
from storage.queries import recent_window
from storage.registry import ModelRegistry
from watcher.calibration import Calibration, NormalRange, calibrate, size_bucket
from watcher.config import ModelConfig
from watcher.drift import drift_report, run_drift
from watcher.quality import (
    HEADLINE,
    LOWER_IS_BETTER,
    direct_quality,
    evidently_quality,
    gaps,
    group_quality,
)
from watcher.slices import bin_edges, find_error_slices

log = structlog.get_logger("warden.detection")
KINDS = ("drift", "error", "bias")
GROUP_PREFIX = "groups."


@dataclass
class CheckOutcome:
    """One check's verdict and figures; a failed one becomes (or updates) an incident."""

    kind: str  # "drift" | "error" | "bias"
    version: str
    passed: bool
    rows: int
    labelled_rows: int = 0
    skipped_reason: str | None = None
    figures: dict[str, Any] = field(default_factory=dict)
    summary: str = ""
    severity: str = "info"
    report_path: Path | None = None
    seq_range: tuple[int | None, int | None] = (None, None)
    duration_s: float = 0.0
    flagged_ids: list[str] = field(default_factory=list)

    def skip(self, reason: str) -> CheckOutcome:
        self.skipped_reason = reason
        return self


@dataclass
class Baseline:
    """The reference side for one serving version, computed once."""

    frame: pd.DataFrame  # features, `prediction` by the serving version, `target`, groups.*
    quality: dict[str, float]
    source: str
    edges: dict[str, np.ndarray]
    calibrations: dict[tuple[str, int], Calibration] = field(default_factory=dict)


class ModelChecker:
    """Runs a model's checks; caches the reference side (and its calibrations) per version."""

    def __init__(self, name: str, engine: Engine, registry: ModelRegistry, reports: Path) -> None:
        self.name, self.engine, self.registry = name, engine, registry
        self.reports = Path(reports) / name
        self._baselines: dict[str, Baseline] = {}
        self._serving: dict[str, OnnxModel] = {}

    # -- inputs -----------------------------------------------------------------------------
    def serving_model(self, version: str) -> OnnxModel:
        if version not in self._serving:
            self._serving = {version: OnnxModel.load(self.registry, self.name, version)}
        return self._serving[version]

    def window(self, cfg: ModelConfig) -> pd.DataFrame:
        """The current window: the last N predictions, or those of the last T minutes."""
        since = None
        if cfg.checks.window_minutes is not None:
            since = datetime.now(UTC) - timedelta(minutes=cfg.checks.window_minutes)
        return with_group_columns(
            recent_window(self.engine, self.name, cfg.checks.window, since=since)
        )

    def baseline(self, cfg: ModelConfig, version: str) -> Baseline:
        """Reference side for this version: the reference set, a pinned earlier window, or the
        window a corrected version was tuned on (its card says so)."""
        if version in self._baselines:
            return self._baselines[version]
        card = self.registry.card(self.name, version)
        spec = card.get("baseline", {}).get("drift_reference", {"kind": "reference"})
        pinned = cfg.checks.pinned_reference
        if pinned is not None:
            frame = self._stored(cfg, since=pinned.start, until=pinned.end)
            source = f"pinned window {pinned.start.isoformat()} – {pinned.end.isoformat()}"
        elif spec.get("kind") == "window":
            frame = self._stored(cfg, start_seq=spec["start_seq"], end_seq=spec["end_seq"])
            source = f"tuning window seq {spec['start_seq']}–{spec['end_seq']}"
        else:
            frame = load_reference(cfg)
            for attribute in reference_group_columns(frame, cfg):
                frame[GROUP_PREFIX + attribute] = frame[attribute]
            source = f"reference set {cfg.reference.name}"
        frame = frame.reset_index(drop=True)
        preds, _ = self.serving_model(version).predict(frame)
        out = frame[[*cfg.features, *[c for c in frame if c.startswith(GROUP_PREFIX)]]].copy()
        out["prediction"] = preds
        out["target"] = frame["label"].astype(str)
        classes = self.serving_model(version).classes
        edges = {c: bin_edges(out[c], cfg.checks.slice_bins) for c in cfg.numeric_features}
        base = Baseline(out, direct_quality(out, cfg.task, classes), source, edges)
        self._baselines = {version: base}
        return base

    def _stored(self, cfg: ModelConfig, **where) -> pd.DataFrame:
        frame = with_group_columns(
            recent_window(
                self.engine, self.name, cfg.checks.window * 4, labelled_only=True, **where
            )
        )
        if len(frame) < 2 * cfg.checks.min_rows:
            raise ValueError(
                f"models.{self.name}.checks: the reference window has {len(frame)} labelled "
                f"rows, fewer than 2 × min_rows"
            )
        return frame

    def calibration(
        self, cfg: ModelConfig, version: str, rows: int, part: str = "figures"
    ) -> Calibration | None:
        """Normal ranges for windows of about `rows` rows, cached per size bucket. `part` is
        "drift" (Evidently on every chunk: seconds) or "figures" (quality and group gaps with
        numpy: milliseconds), calibrated separately so that neither waits for the other."""
        checks = cfg.checks
        base = self.baseline(cfg, version)
        if checks.thresholds != "calibrated" or len(base.frame) < 2 * checks.min_rows:
            return None
        key = (part, size_bucket(rows))
        if key in base.calibrations:
            return base.calibrations[key]
        classes = self.serving_model(version).classes
        attributes = [c for c in base.frame if c.startswith(GROUP_PREFIX)]
        numeric, categorical = self._drift_columns(cfg)
        if part == "drift":
            found = calibrate(
                base.frame,
                key[1],
                rounds=checks.calibration_rounds,
                sigmas=checks.calibration_sigmas,
                drift=lambda chunk, rest: (
                    run_drift(
                        chunk,
                        rest,
                        numeric,
                        categorical,
                        method=checks.drift_method,
                        threshold=checks.drift_threshold,
                    ).columns
                ),
            )
        else:
            found = calibrate(
                base.frame,
                key[1],
                rounds=max(checks.calibration_rounds, 100),  # cheap: more rounds, tighter
                sigmas=checks.calibration_sigmas,
                quality=lambda chunk: direct_quality(chunk, cfg.task, classes),
                group_gaps=lambda chunk: {
                    a: {g: v["value"] for g, v in direct_gaps(chunk, a, cfg, classes).items()}
                    for a in attributes
                },
            )
        log.info("calibrated", model=self.name, version=version, part=part, **found.summary())
        base.calibrations[key] = found
        return found

    def _drift_columns(self, cfg: ModelConfig) -> tuple[list[str], list[str]]:
        if cfg.task == "regression":
            return [*cfg.numeric_features, "prediction"], list(cfg.categorical_features)
        return list(cfg.numeric_features), [*cfg.categorical_features, "prediction"]

    # -- the round --------------------------------------------------------------------------
    def run(self, cfg: ModelConfig, kinds: tuple[str, ...] = KINDS) -> list[CheckOutcome]:
        version = self.registry.active(self.name)
        if version is None:
            return []
        window = self.window(cfg)
        missing = [f for f in cfg.features if f not in window] if len(window) else []
        checks = {"drift": self.drift, "error": self.error, "bias": self.bias}
        outcomes = []
        for kind in kinds:
            started = time.perf_counter()
            if missing:  # say so instead of failing on a KeyError every round
                outcome = CheckOutcome(kind, version, True, len(window))
                outcome.skip(f"the window's predictions lack features {missing}")
            else:
                outcome = checks[kind](cfg, version, window)
            outcome.duration_s = time.perf_counter() - started
            outcomes.append(outcome)
        return outcomes

    def labelled(self, cfg: ModelConfig, version: str, window: pd.DataFrame) -> pd.DataFrame:
        """Rows of the window served by `version` whose label has arrived."""
        served = window[(window["label"].notna()) & (window["model_version"] == version)].copy()
        served["target"] = served["label"].astype(str)
        served["prediction"] = served["prediction"].astype(str)
        return served

    def _labelled_outcome(
        self, kind: str, cfg: ModelConfig, version: str, window: pd.DataFrame
    ) -> tuple[CheckOutcome, pd.DataFrame]:
        """The labelled rows served by `version`, and an outcome already skipped when there
        are fewer than `min_labelled` of them (the error and bias checks both need labels)."""
        labelled = self.labelled(cfg, version, window)
        outcome = CheckOutcome(kind, version, True, len(window), labelled_rows=len(labelled))
        outcome.seq_range = seq_range(labelled)
        if len(labelled) < cfg.checks.min_labelled:
            outcome.skip(
                f"{len(labelled)} labelled rows served by {version} < min_labelled "
                f"{cfg.checks.min_labelled}"
            )
        return outcome, labelled

    # -- drift ------------------------------------------------------------------------------
    def drift(self, cfg: ModelConfig, version: str, window: pd.DataFrame) -> CheckOutcome:
        checks = cfg.checks
        outcome = CheckOutcome("drift", version, passed=True, rows=len(window))
        outcome.seq_range = seq_range(window)
        if len(window) < checks.min_rows:
            return outcome.skip(f"window has {len(window)} rows < min_rows {checks.min_rows}")
        base = self.baseline(cfg, version)
        numeric, categorical = self._drift_columns(cfg)
        current = window[cfg.features].copy()
        if cfg.task == "regression":
            current["prediction"] = pd.to_numeric(window["prediction"], errors="coerce")
        else:
            current["prediction"] = window["prediction"].astype(str)
        result = run_drift(
            current,
            base.frame,
            numeric,
            categorical,
            method=checks.drift_method,
            threshold=checks.drift_threshold,
        )
        cal = self.calibration(cfg, version, len(window), "drift")
        columns: dict[str, dict] = {}
        for col, found in result.columns.items():
            normal = cal.columns.get(col) if cal is not None else None
            comparable = normal is not None and cal.methods.get(col) == found.method
            drifted = found.magnitude > normal.high if comparable else found.evidently_drifted
            columns[col] = {
                "score": found.score,
                "method": found.method,
                "magnitude": found.magnitude,
                "drifted": bool(drifted),
                "normal_high": normal.high if comparable else None,
                "sigmas": normal.sigmas_above(found.magnitude) if comparable else None,
            }
        drifted = sorted(
            (c for c in cfg.features if columns.get(c, {}).get("drifted")),
            key=lambda c: -(columns[c]["sigmas"] or columns[c]["magnitude"]),
        )
        share = len(drifted) / len(cfg.features)
        prediction_drift = bool(columns.get("prediction", {}).get("drifted"))
        if cal is not None:
            outcome.passed = len(drifted) < checks.min_drifted_columns and not prediction_drift
            rule = f"columns outside their normal range (≥{checks.min_drifted_columns} fails)"
        else:
            outcome.passed = share < checks.drift_share
            rule = f"share of drifted columns (≥{checks.drift_share} fails)"
        outcome.figures = {
            "thresholds": checks.thresholds if cal is not None else "fixed",
            "drift_share": share,
            "drift_share_threshold": checks.drift_share,
            "evidently_share": result.share,
            "drifted_columns": drifted,
            "prediction_drift": prediction_drift,
            "columns": columns,
            "reference": base.source,
            **({"calibration": cal.summary()} if cal is not None else {}),
        }
        outcome.summary = (
            f"{len(drifted)}/{len(cfg.features)} columns drifted"
            f"{' and the predictions' if prediction_drift else ''} ({rule}): "
            f"{', '.join(drifted[:5]) or 'none'}"
        )
        if not outcome.passed:
            outcome.severity, impact = self._drift_severity(cfg, version, window)
            outcome.figures["quality_impact"] = impact
            outcome.flagged_ids = drifted_region_ids(window, base.frame, drifted, cfg)[
                : checks.max_flagged_ids
            ]
            report = drift_report(
                current,
                base.frame,
                numeric,
                categorical,
                method=checks.drift_method,
                threshold=checks.drift_threshold,
            )
            outcome.report_path = self.save(report, "drift")
        return outcome

    def _drift_severity(self, cfg: ModelConfig, version: str, window: pd.DataFrame):
        """Severity by impact on quality where labels exist: drift that hurts is high."""
        labelled = self.labelled(cfg, version, window)
        if len(labelled) < cfg.checks.min_labelled:
            return "warning", "unknown (too few labels yet)"
        classes = self.serving_model(version).classes
        headline = HEADLINE[cfg.task]
        value = direct_quality(labelled, cfg.task, classes)[headline]
        bound = self._quality_bound(cfg, version, len(labelled))
        hurt = value > bound if headline in LOWER_IS_BETTER else value < bound
        return ("high" if hurt else "warning"), f"{headline} {value:.3f} (bound {bound:.3f})"

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
            outcome.report_path = self.save(result.snapshot, "error")
        return outcome

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
            outcome.report_path = self._group_report(cfg, classes, labelled, in_group)
        return outcome

    def _group_report(self, cfg, classes, labelled, in_group) -> Path:
        """The disadvantaged group (current) against everyone else (reference), in Evidently."""
        from evidently import Dataset, Report

        from watcher.quality import _metrics, _task_definition, frame_for_quality

        defn = _task_definition(cfg.task, classes, [], [])
        snapshot = Report(_metrics(cfg.task)).run(
            Dataset.from_pandas(
                frame_for_quality(labelled[in_group], cfg.task), data_definition=defn
            ),
            Dataset.from_pandas(
                frame_for_quality(labelled[~in_group], cfg.task), data_definition=defn
            ),
        )
        return self.save(snapshot, "bias")

    def save(self, snapshot, kind: str) -> Path:
        self.reports.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        path = self.reports / f"{stamp}-{kind}.html"
        snapshot.save_html(str(path))
        return path


# -- helpers ----------------------------------------------------------------------------------
def with_group_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """Flatten the `groups` dicts of stored predictions into `groups.<attribute>` columns."""
    if frame.empty or "groups" not in frame:
        return frame
    groups = pd.DataFrame.from_records(
        [g if isinstance(g, dict) else {} for g in frame["groups"]], index=frame.index
    )
    for attribute in groups:
        frame[GROUP_PREFIX + str(attribute)] = groups[attribute]
    return frame


def reference_group_columns(frame: pd.DataFrame, cfg: ModelConfig) -> list[str]:
    """Group attributes the reference carries: the configured ones, or else every column that
    is neither a feature nor the label and looks categorical (≤ 50 values)."""
    if cfg.checks.group_attributes is not None:
        return [a for a in cfg.checks.group_attributes if a in frame]
    skip = {*cfg.features, cfg.label_column, "label"}
    return [c for c in frame.columns if c not in skip and frame[c].nunique() <= 50]


def seq_range(frame: pd.DataFrame) -> tuple[int | None, int | None]:
    if frame.empty:
        return (None, None)
    return int(frame["seq"].min()), int(frame["seq"].max())


def is_error(frame: pd.DataFrame, task: str, base: Baseline) -> pd.Series:
    """Misclassified, or (regression) an absolute error above twice the reference MAE."""
    if task == "regression":
        err = (pd.to_numeric(frame["prediction"]) - pd.to_numeric(frame["target"])).abs()
        return err > 2 * base.quality["mae"]
    return frame["prediction"].astype(str) != frame["target"].astype(str)


def fixed_gap_bounds(cfg: ModelConfig) -> dict[str, float]:
    checks = cfg.checks
    return {
        "demographic_parity_difference": checks.max_parity_gap,
        "equal_opportunity_difference": checks.max_opportunity_gap,
        "accuracy_gap": checks.max_quality_gap,
        "mae_gap": checks.max_quality_gap,
    }


def direct_gaps(frame: pd.DataFrame, column: str, cfg: ModelConfig, classes: list[str]) -> dict:
    """Group gaps computed with numpy (calibration's many rounds; tests' second opinion)."""
    groups: dict[str, dict] = {}
    values = frame[column].dropna()
    for value, part in frame.loc[values.index].groupby(values.astype(str)):
        figures = direct_quality(part, cfg.task, classes)
        figures["rows"] = len(part)
        figures["judged"] = len(part) >= cfg.checks.min_group_rows
        groups[str(value)] = figures
    return gaps(groups, cfg.task)


GAP_INDICATORS = {
    "accuracy_gap": lambda f, pos: f["prediction"] == f["target"],
    "demographic_parity_difference": lambda f, pos: f["prediction"] == pos,
    "equal_opportunity_difference": lambda f, pos: (f["prediction"] == pos)[f["target"] == pos],
}


def gap_p_value(
    frame: pd.DataFrame, column: str, gap: str, figures: dict, task: str, classes: list[str]
) -> float:
    """Two-sided p-value that the two end groups differ: a two-proportion z-test for rates,
    Welch's t-test for the MAE gap."""
    from scipy.stats import norm, ttest_ind

    groups = frame[column].astype(str)
    low, high = (frame[groups == g] for g in (figures["low_group"], figures["high_group"]))
    if task == "regression":
        errs = [
            (pd.to_numeric(p["prediction"]) - pd.to_numeric(p["target"])).abs() for p in (low, high)
        ]
        return float(ttest_ind(*errs, equal_var=False).pvalue)
    positive = classes[-1]
    a, b = (GAP_INDICATORS[gap](p, positive).to_numpy(dtype=float) for p in (low, high))
    if len(a) == 0 or len(b) == 0:
        return 1.0
    pooled = (a.sum() + b.sum()) / (len(a) + len(b))
    se = np.sqrt(pooled * (1 - pooled) * (1 / len(a) + 1 / len(b)))
    if se == 0:
        return 1.0 if a.mean() == b.mean() else 0.0
    return float(2 * norm.sf(abs(a.mean() - b.mean()) / se))


def drifted_region_ids(
    window: pd.DataFrame, reference: pd.DataFrame, drifted: list[str], cfg: ModelConfig
) -> list[str]:
    """Rows outside the reference's 5–95 % range on a drifted numeric column, or with a
    category the reference never had: the samples a correction should learn from."""
    mask = pd.Series(False, index=window.index)
    for col in drifted:
        if col in cfg.numeric_features:
            lo, hi = np.nanquantile(pd.to_numeric(reference[col], errors="coerce"), [0.05, 0.95])
            values = pd.to_numeric(window[col], errors="coerce")
            mask |= (values < lo) | (values > hi)
        else:
            mask |= ~window[col].astype(str).isin(set(reference[col].astype(str)))
    return window.loc[mask, "prediction_id"].tolist()
