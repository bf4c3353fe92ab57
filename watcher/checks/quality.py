"""Model quality with Evidently, overall and per group.

Classification: accuracy, precision, recall, F1 (positive class = the last class), per class
precision/recall/F1, and the selection rate (share predicted positive). Regression: MAE, RMSE,
R². Per group, one Evidently Dataset per group value: `GroupBy` returns the overall value for
every group in evidently 0.7.23 (see shared/NOTES-libraries.md). `direct_quality` computes the
headline figures with numpy: calibration uses it (cheap, many rounds) and tests compare the two.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from watcher.checks.drift import definition

HEADLINE = {"classification": "accuracy", "regression": "mae"}
LOWER_IS_BETTER = {"mae", "rmse"}


@dataclass
class QualityResult:
    figures: dict[str, Any]
    snapshot: Any


def task_definition(task: str, classes: list[str], numeric: list[str], categorical: list[str]):
    """Evidently's data definition of a labelled frame (`target`, `prediction`) for the task."""
    from evidently import BinaryClassification, MulticlassClassification, Regression

    if task == "regression":
        return definition(
            [*numeric, "target", "prediction"],
            categorical,
            regression=[Regression(target="target", prediction="prediction")],
        )
    if len(classes) == 2:
        task_def = BinaryClassification(
            target="target", prediction_labels="prediction", pos_label=classes[-1]
        )
    else:
        task_def = MulticlassClassification(target="target", prediction_labels="prediction")
    return definition(numeric, [*categorical, "prediction", "target"], classification=[task_def])


def quality_metrics(task: str, per_group: bool = False):
    """Every figure for the window; only what the gaps need for each group (cheaper)."""
    from evidently import metrics as m

    if task == "regression":
        return [m.MAE()] if per_group else [m.MAE(), m.RMSE(), m.R2Score()]
    if per_group:
        return [m.Accuracy(), m.Recall(), m.UniqueValueCount(column="prediction")]
    return [
        m.Accuracy(),
        m.Precision(),
        m.Recall(),
        m.F1Score(),
        m.PrecisionByLabel(),
        m.RecallByLabel(),
        m.F1ByLabel(),
        m.UniqueValueCount(column="prediction"),
    ]


def _read(snapshot_dict: dict, positive: str | None) -> dict[str, Any]:
    names = {
        "Accuracy": "accuracy",
        "Precision": "precision",
        "Recall": "recall",
        "F1Score": "f1",
        "PrecisionByLabel": "precision_by_class",
        "RecallByLabel": "recall_by_class",
        "F1ByLabel": "f1_by_class",
        "MAE": "mae",
        "RMSE": "rmse",
        "R2Score": "r2",
    }
    out: dict[str, Any] = {}
    for metric in snapshot_dict["metrics"]:
        kind = metric["metric_name"].split("(")[0]
        value = metric["value"]
        if kind == "UniqueValueCount":
            out["selection_rate"] = float(value["shares"].get(positive, 0.0))
        elif kind == "MAE":
            out["mae"] = float(value["mean"])
        elif kind in names and isinstance(value, dict):
            out[names[kind]] = {str(k): float(v) for k, v in value.items()}
        elif kind in names:
            out[names[kind]] = float(value)
    return out


def frame_for_quality(frame: pd.DataFrame, task: str) -> pd.DataFrame:
    """`target` and `prediction` typed the way Evidently needs them for the task."""
    out = pd.DataFrame(index=frame.index)
    if task == "regression":
        out["target"] = pd.to_numeric(frame["target"], errors="coerce")
        out["prediction"] = pd.to_numeric(frame["prediction"], errors="coerce")
        return out.dropna()
    out["target"] = frame["target"].astype(str)
    out["prediction"] = frame["prediction"].astype(str)
    return out


def evidently_quality(
    frame: pd.DataFrame, task: str, classes: list[str], per_group: bool = False
) -> QualityResult:
    """Quality of one labelled frame (columns `target`, `prediction`) with Evidently."""
    from evidently import Dataset, Report

    data = frame_for_quality(frame, task)
    defn = task_definition(task, classes, [], [])
    metrics = quality_metrics(task, per_group)
    snapshot = Report(metrics).run(Dataset.from_pandas(data, data_definition=defn), None)
    positive = classes[-1] if task == "classification" and classes else None
    return QualityResult(_read(snapshot.dict(), positive), snapshot)


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den else 0.0  # sklearn's zero_division (0, with a warning)


def _by_class(t_codes: np.ndarray, p_codes: np.ndarray, labels: list[str]) -> dict[str, dict]:
    """Precision, recall and F1 of every label, as sklearn (and so Evidently) computes them,
    from label codes (counts, not a string comparison per label)."""
    k = len(labels)
    tp = np.bincount(t_codes[t_codes == p_codes], minlength=k).astype(float)
    actual = np.bincount(t_codes, minlength=k).astype(float)
    said = np.bincount(p_codes, minlength=k).astype(float)
    out: dict[str, dict[str, float]] = {"precision": {}, "recall": {}, "f1": {}}
    for i, label in enumerate(labels):
        fp, fn = said[i] - tp[i], actual[i] - tp[i]
        out["precision"][label] = _ratio(tp[i], tp[i] + fp)
        out["recall"][label] = _ratio(tp[i], tp[i] + fn)
        out["f1"][label] = _ratio(2 * tp[i], 2 * tp[i] + fp + fn)
    return out


def numpy_quality(
    frame: pd.DataFrame, task: str, classes: list[str], per_group: bool = False
) -> QualityResult:
    """`evidently_quality`'s figures in numpy (equal to Evidently's: tested), for the checks'
    critical path; Evidently draws the page of a failing check."""
    data = frame_for_quality(frame, task)
    target, pred = data["target"].to_numpy(), data["prediction"].to_numpy()
    if task == "regression":
        err = pred - target
        ss_tot = float(((target - target.mean()) ** 2).sum())
        figures: dict[str, Any] = {"mae": float(np.abs(err).mean())}
        if not per_group:
            figures["rmse"] = float(np.sqrt((err**2).mean()))
            figures["r2"] = 1.0 - float((err**2).sum()) / ss_tot if ss_tot else 0.0
        return QualityResult(figures, None)
    codes, uniques = pd.factorize(np.concatenate([target, pred]), sort=True)
    labels = [str(u) for u in uniques]
    t_codes, p_codes = codes[: len(target)], codes[len(target) :]
    positive = classes[-1] if classes else None
    per_class = _by_class(t_codes, p_codes, labels)
    chosen = labels.index(positive) if positive in labels else -2
    figures = {
        "accuracy": float((t_codes == p_codes).mean()),
        "selection_rate": float((p_codes == chosen).mean()),
    }
    for name in ("precision", "recall", "f1"):
        values = per_class[name]
        binary = len(labels) == 2 and positive in values
        figures[name] = values[positive] if binary else float(np.mean(list(values.values())))
        if not per_group:
            figures[f"{name}_by_class"] = values
    if per_group:
        del figures["precision"], figures["f1"]
    return QualityResult(figures, None)


def direct_quality(frame: pd.DataFrame, task: str, classes: list[str]) -> dict[str, float]:
    """The headline figures computed straight with numpy (no Evidently)."""
    data = frame_for_quality(frame, task)
    if task == "regression":
        err = data["prediction"].to_numpy() - data["target"].to_numpy()
        target = data["target"].to_numpy()
        ss_tot = float(((target - target.mean()) ** 2).sum())
        return {
            "mae": float(np.abs(err).mean()),
            "rmse": float(np.sqrt((err**2).mean())),
            "r2": 1.0 - float((err**2).sum()) / ss_tot if ss_tot else 0.0,
        }
    target, pred = data["target"].to_numpy(), data["prediction"].to_numpy()
    positive = classes[-1]
    actual_pos = target == positive
    return {
        "accuracy": float((target == pred).mean()),
        "selection_rate": float((pred == positive).mean()),
        "tpr": float((pred[actual_pos] == positive).mean()) if actual_pos.any() else float("nan"),
    }


def group_quality(
    frame: pd.DataFrame, attribute: str, task: str, classes: list[str], min_rows: int
) -> dict[str, dict[str, float]]:
    """Per group value of `attribute` (a column of `frame`): rows and quality (Evidently's
    figures, computed in numpy: `numpy_quality`).

    For classification: accuracy, tpr (recall of the positive class) and selection_rate; for
    regression: mae. Groups under `min_rows` are reported with `judged: False`."""
    out: dict[str, dict[str, float]] = {}
    values = frame[attribute].dropna()
    needed = frame.loc[values.index, ["target", "prediction"]]  # all the figures read
    for value, part in needed.groupby(values.astype(str), sort=True):
        figures: dict[str, Any] = {"rows": len(part), "judged": len(part) >= min_rows}
        got = numpy_quality(part, task, classes, per_group=True).figures
        if task == "regression":
            figures["mae"] = got["mae"]
        else:
            figures["accuracy"] = got["accuracy"]
            figures["tpr"] = got.get("recall", float("nan"))
            figures["selection_rate"] = got.get("selection_rate", 0.0)
        out[str(value)] = figures
    return out


GAPS = {
    "classification": {
        "demographic_parity_difference": "selection_rate",
        "equal_opportunity_difference": "tpr",
        "accuracy_gap": "accuracy",
    },
    "regression": {"mae_gap": "mae"},
}


def gaps(groups: dict[str, dict[str, float]], task: str) -> dict[str, dict[str, Any]]:
    """Largest minus smallest value across the judged groups, for each gap, with the groups
    at both ends; the disadvantaged group is the one with the worse value."""
    judged = {g: f for g, f in groups.items() if f.get("judged")}
    out: dict[str, dict[str, Any]] = {}
    for gap, figure in GAPS[task].items():
        values = {g: f[figure] for g, f in judged.items() if not np.isnan(f.get(figure, np.nan))}
        if len(values) < 2:
            continue
        low = min(values, key=lambda g: values[g])
        high = max(values, key=lambda g: values[g])
        worse = high if figure in LOWER_IS_BETTER else low
        if figure == "selection_rate":  # no better or worse: report the less selected group
            worse = low
        out[gap] = {
            "value": float(values[high] - values[low]),
            "low_group": low,
            "high_group": high,
            "disadvantaged": worse,
        }
    return out
