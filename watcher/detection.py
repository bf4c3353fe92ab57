"""Scheduled checks with Evidently: data and prediction drift over the window, and quality once
labels arrive. Evidently is imported here, lazily: it costs ~3 s and ~290 MB at import."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import Engine

from correctors.champion import load_reference
from correctors.runtime import OnnxModel
from storage.queries import recent_window
from storage.registry import ModelRegistry
from watcher.config import ModelConfig


@dataclass
class CheckOutcome:
    """One check's verdict and figures; a failed one becomes (or updates) an incident."""

    kind: str  # "drift" | "error"
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


@dataclass
class _Baseline:
    frame: pd.DataFrame  # features, `prediction` by the serving version, `target`
    accuracy: float


class ModelChecker:
    """Runs a model's checks; caches the reference side per serving version."""

    def __init__(self, name: str, engine: Engine, registry: ModelRegistry, reports: Path) -> None:
        self.name, self.engine, self.registry = name, engine, registry
        self.reports = Path(reports) / name
        self._baselines: dict[str, _Baseline] = {}
        self._serving: dict[str, OnnxModel] = {}

    def _serving_model(self, version: str) -> OnnxModel:
        if version not in self._serving:
            self._serving = {version: OnnxModel.load(self.registry, self.name, version)}
        return self._serving[version]

    def _baseline(self, cfg: ModelConfig, version: str) -> _Baseline:
        """Reference side for this version: the reference set, or the window it was tuned on."""
        if version not in self._baselines:
            card = self.registry.card(self.name, version)
            spec = card.get("baseline", {}).get("drift_reference", {"kind": "reference"})
            if spec.get("kind") == "window":
                frame = recent_window(
                    self.engine,
                    self.name,
                    cfg.checks.window * 4,
                    start_seq=spec["start_seq"],
                    end_seq=spec["end_seq"],
                )
            else:
                frame = load_reference(cfg)
            serving = self._serving_model(version)
            preds, _ = serving.predict(frame)
            frame = frame[cfg.features].copy()
            frame["prediction"] = preds
            self._baselines = {version: _Baseline(frame, float(card["baseline"]["accuracy"]))}
        return self._baselines[version]

    def run(self, cfg: ModelConfig) -> list[CheckOutcome]:
        version = self.registry.active(self.name)
        if version is None:
            return []
        window = recent_window(self.engine, self.name, cfg.checks.window)
        return [self._drift(cfg, version, window), self._quality(cfg, version, window)]

    # -- drift ------------------------------------------------------------------------------
    def _definition(self, cfg: ModelConfig, classes: list[str] | None = None):
        from evidently import BinaryClassification, DataDefinition, MulticlassClassification

        classification = None
        if classes is not None:
            if len(classes) == 2:
                task = BinaryClassification(
                    target="target", prediction_labels="prediction", pos_label=classes[-1]
                )
            else:
                task = MulticlassClassification(target="target", prediction_labels="prediction")
            classification = [task]
        return DataDefinition(
            numerical_columns=list(cfg.numeric_features),
            categorical_columns=[*cfg.categorical_features, "prediction"],
            classification=classification,
        )

    def _drift(self, cfg: ModelConfig, version: str, window: pd.DataFrame) -> CheckOutcome:
        started = time.perf_counter()
        outcome = CheckOutcome("drift", version, passed=True, rows=len(window))
        outcome.seq_range = _seq_range(window)
        if len(window) < cfg.checks.min_rows:
            outcome.skipped_reason = (
                f"window has {len(window)} rows < min_rows {cfg.checks.min_rows}"
            )
            return outcome
        from evidently import Dataset, Report
        from evidently.metrics import ValueDrift
        from evidently.presets import DataDriftPreset

        base = self._baseline(cfg, version)
        current = window[cfg.features].copy()
        current["prediction"] = window["prediction"].astype(str)
        definition = self._definition(cfg)
        report = Report(
            [
                DataDriftPreset(columns=cfg.features, drift_share=cfg.checks.drift_share),
                ValueDrift(column="prediction"),
            ],
            include_tests=True,
        )
        snapshot = report.run(
            Dataset.from_pandas(current, data_definition=definition),
            Dataset.from_pandas(
                base.frame[[*cfg.features, "prediction"]], data_definition=definition
            ),
        )
        columns, share = _drift_figures(snapshot.dict())
        drifted = sorted(
            (c for c, v in columns.items() if v["drifted"] and c != "prediction"),
            key=lambda c: -abs(columns[c]["score"]),
        )
        outcome.figures = {
            "drift_share": share,
            "drift_share_threshold": cfg.checks.drift_share,
            "drifted_columns": drifted,
            "prediction_drift": columns.get("prediction", {}).get("drifted", False),
            "columns": columns,
        }
        outcome.passed = share < cfg.checks.drift_share
        outcome.summary = (
            f"{len(drifted)}/{len(cfg.features)} columns drifted (share {share:.2f}, threshold "
            f"{cfg.checks.drift_share}): {', '.join(drifted[:5]) or 'none'}"
        )
        if not outcome.passed:
            outcome.severity = (
                "high" if share >= min(1.0, 2 * cfg.checks.drift_share) else "warning"
            )
            outcome.report_path = self._save(snapshot, "drift")
        outcome.duration_s = time.perf_counter() - started
        return outcome

    # -- quality ----------------------------------------------------------------------------
    def _quality(self, cfg: ModelConfig, version: str, window: pd.DataFrame) -> CheckOutcome:
        started = time.perf_counter()
        labelled = window[(window["label"].notna()) & (window["model_version"] == version)]
        outcome = CheckOutcome(
            "error", version, passed=True, rows=len(window), labelled_rows=len(labelled)
        )
        outcome.seq_range = _seq_range(labelled)
        if len(labelled) < cfg.checks.min_labelled:
            outcome.skipped_reason = (
                f"{len(labelled)} labelled rows served by {version} < min_labelled "
                f"{cfg.checks.min_labelled}"
            )
            return outcome
        from evidently import Dataset, Report
        from evidently.metrics import Accuracy, F1Score, Precision, Recall

        serving = self._serving_model(version)
        base = self._baseline(cfg, version)
        current = labelled[cfg.features].copy()
        current["prediction"] = labelled["prediction"].astype(str)
        current["target"] = labelled["label"].astype(str)
        definition = self._definition(cfg, serving.classes)
        snapshot = Report([Accuracy(), Precision(), Recall(), F1Score()]).run(
            Dataset.from_pandas(current, data_definition=definition), None
        )
        values = {
            m["metric_name"].split("(")[0].lower(): m["value"] for m in snapshot.dict()["metrics"]
        }
        accuracy = float(values["accuracy"])
        floor = base.accuracy - cfg.checks.max_accuracy_drop
        outcome.figures = {
            **{k: float(v) for k, v in values.items() if isinstance(v, int | float)},
            "baseline_accuracy": base.accuracy,
            "accuracy_floor": floor,
            "misclassified": int((current["prediction"] != current["target"]).sum()),
        }
        outcome.passed = accuracy >= floor
        outcome.summary = (
            f"accuracy {accuracy:.3f} on {len(labelled)} labelled rows vs baseline "
            f"{base.accuracy:.3f} (floor {floor:.3f})"
        )
        if not outcome.passed:
            drop = base.accuracy - accuracy
            outcome.severity = "critical" if drop >= 2 * cfg.checks.max_accuracy_drop else "high"
            outcome.report_path = self._save(snapshot, "error")
        outcome.duration_s = time.perf_counter() - started
        return outcome

    def _save(self, snapshot, kind: str) -> Path:
        self.reports.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        path = self.reports / f"{stamp}-{kind}.html"
        snapshot.save_html(str(path))
        return path


def _seq_range(frame: pd.DataFrame) -> tuple[int | None, int | None]:
    if frame.empty:
        return (None, None)
    return int(frame["seq"].min()), int(frame["seq"].max())


def _drift_rank(column: dict) -> float:
    """Most drifted first: small p-values, large distances."""
    score = column["score"]
    return score if "p_value" in str(column.get("method")) else -score


def _drift_figures(result: dict) -> tuple[dict[str, dict], float]:
    """Per-column drift from the tests (the verdict depends on the method), share from the count."""
    scores = {m["id"]: m["value"] for m in result["metrics"]}
    share = 0.0
    for metric in result["metrics"]:
        if metric["metric_name"].startswith("DriftedColumnsCount"):
            share = float(metric["value"]["share"])
    columns: dict[str, dict] = {}
    for test in result["tests"]:
        params = test["metric_config"]["params"]
        if params.get("type", "").endswith("ValueDrift") and "column" in params:
            columns[params["column"]] = {
                "drifted": str(test["status"]).endswith("FAIL"),
                "score": float(scores.get(test["metric_config"]["metric_id"], 0.0)),
                "method": params.get("method"),
            }
    return columns, share
