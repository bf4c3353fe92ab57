"""The validation gate (no blessing, no push): the candidate must fix the present and keep the past.

Rules, every one recorded in the verdict with its figures:
1. ONNX parity: torch and onnxruntime agree within `parity_tolerance`.
2. Present truth: accuracy on the recent held-out window beats the champion by `min_improvement`.
3. No forgetting: on reference holdout rows that still hold (outside the shifted region), the
   candidate loses at most `forgetting_tolerance` accuracy against the champion.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from correctors.settings import CorrectionConfig

ProbaFn = Callable[[np.ndarray], np.ndarray]


@dataclass
class EvalSet:
    """An encoded, labelled evaluation set (y holds class indices)."""

    name: str
    x: np.ndarray
    y: np.ndarray


@dataclass
class Verdict:
    passed: bool
    reasons: list[str] = field(default_factory=list)
    figures: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"passed": self.passed, "reasons": self.reasons, **self.figures}


def headline(task: str) -> str:
    """The metric the gate judges by: accuracy (higher is better) or MAE (lower is better)."""
    return "mae" if task == "regression" else "accuracy"


def score(proba: ProbaFn, data: EvalSet, task: str = "classification") -> float | None:
    if len(data.y) == 0:
        return None
    out = proba(data.x)
    if task == "regression":
        return float(np.abs(out[:, 0] - data.y).mean())
    return float((out.argmax(axis=1) == data.y).mean())


def evaluate(
    proba: ProbaFn, sets: list[EvalSet], task: str = "classification"
) -> dict[str, float | None]:
    """The headline metric and row count on each evaluation set."""
    metric = headline(task)
    out: dict[str, float | None] = {}
    for data in sets:
        out[f"{data.name}_{metric}"] = score(proba, data, task)
        out[f"{data.name}_rows"] = len(data.y)
    return out


def _gain(champ: float, cand: float, metric: str) -> float:
    """How much better the candidate is (positive = better), whatever the direction."""
    return champ - cand if metric == "mae" else cand - champ


def judge(
    champion: dict[str, float | None],
    candidate: dict[str, float | None],
    parity_max_abs_diff: float,
    shifted: dict,
    settings: CorrectionConfig,
) -> Verdict:
    """Apply the gate's rules; every failed rule adds a reason, every figure is kept."""
    reasons: list[str] = []
    passed = True
    if not parity_max_abs_diff <= settings.parity_tolerance:
        passed = False
        reasons.append(
            f"ONNX parity failed: max abs diff {parity_max_abs_diff:.2e} > "
            f"{settings.parity_tolerance:.0e}"
        )
    else:
        reasons.append(f"ONNX parity ok: max abs diff {parity_max_abs_diff:.2e}")

    metric = "mae" if "recent_holdout_mae" in champion else "accuracy"
    champ_recent, cand_recent = (
        champion[f"recent_holdout_{metric}"],
        candidate[f"recent_holdout_{metric}"],
    )
    if champ_recent is None or cand_recent is None:
        passed = False
        reasons.append("no recent held-out labels: cannot judge the present")
    elif _gain(champ_recent, cand_recent, metric) < settings.min_improvement:
        passed = False
        reasons.append(
            f"recent holdout {metric} {cand_recent:.3f} does not beat the champion's "
            f"{champ_recent:.3f} by {settings.min_improvement}"
        )
    else:
        reasons.append(f"recent holdout {metric} {champ_recent:.3f} -> {cand_recent:.3f}")

    champ_ref, cand_ref = (
        champion[f"reference_guarded_{metric}"],
        candidate[f"reference_guarded_{metric}"],
    )
    if champ_ref is not None and cand_ref is not None:
        if _gain(champ_ref, cand_ref, metric) < -settings.forgetting_tolerance:
            passed = False
            reasons.append(
                f"forgets the reference: {metric} {cand_ref:.3f} vs champion {champ_ref:.3f} "
                f"(tolerance {settings.forgetting_tolerance})"
            )
        else:
            reasons.append(f"reference guard held: {champ_ref:.3f} -> {cand_ref:.3f}")
    flagged_rule(champion, candidate, reasons)
    if not group_rules(champion, candidate, settings, reasons):
        passed = False
    if shifted.get("concept_shift"):
        reasons.append(
            f"excluded {shifted['reference_excluded']} reference holdout rows in the shifted "
            "region (recent labels contradict them) from the no-forgetting check"
        )
    else:
        reasons.append("no concept shift found: the whole reference holdout was guarded")
    figures = {
        "parity_max_abs_diff": parity_max_abs_diff,
        "settings": {
            "min_improvement": settings.min_improvement,
            "forgetting_tolerance": settings.forgetting_tolerance,
            "parity_tolerance": settings.parity_tolerance,
            "group_gap_tolerance": settings.group_gap_tolerance,
        },
        "shifted_region": shifted,
    }
    return Verdict(passed=passed, reasons=reasons, figures=figures)


def flagged_rule(champion: dict, candidate: dict, reasons: list[str]) -> None:
    """Reported, not gating: the flagged slice is part of the recent holdout already judged."""
    for metric in ("accuracy", "mae"):
        champ, cand = (
            champion.get(f"flagged_slice_{metric}"),
            candidate.get(f"flagged_slice_{metric}"),
        )
        if champ is not None and cand is not None:
            reasons.append(f"flagged slice {metric} {champ:.3f} -> {cand:.3f}")


def group_rules(champion: dict, candidate: dict, settings: CorrectionConfig, reasons) -> bool:
    """Per group of the recent holdout: no group loses more than `group_gap_tolerance`, and
    no attribute's accuracy gap (best group - worst group) widens by more than that."""
    ok = True
    metric = "mae" if any(k.endswith("_mae") for k in champion) else "accuracy"
    suffix = f"_{metric}"
    by_attribute: dict[str, list[str]] = {}
    for key in champion:
        if key.startswith("group:") and key.endswith(suffix):
            attribute = key[len("group:") :].split("=", 1)[0]
            by_attribute.setdefault(attribute, []).append(key)
    for attribute, keys in sorted(by_attribute.items()):
        champ = {k: champion[k] for k in keys if champion[k] is not None}
        cand = {k: candidate.get(k) for k in champ if candidate.get(k) is not None}
        if len(cand) < 2:
            continue
        rows = {k: int(champion.get(k[: -len(suffix)] + "_rows") or 0) for k in cand}
        # a small group's figure is noisy: allow the configured tolerance or two standard
        # errors of the difference, whichever is larger (accuracy only; MAE uses the tolerance)
        tolerance = {
            k: _allowed(settings.group_gap_tolerance, champ[k], rows[k], metric) for k in cand
        }
        for key in cand:
            if _gain(champ[key], cand[key], metric) < -tolerance[key]:
                ok = False
                group = key[len("group:") : -len(suffix)]
                reasons.append(
                    f"group {group} regresses: {metric} {champ[key]:.3f} -> {cand[key]:.3f}"
                )
        champ_gap = max(champ[k] for k in cand) - min(champ[k] for k in cand)
        cand_gap = max(cand.values()) - min(cand.values())
        worst, best = min(cand, key=cand.get), max(cand, key=cand.get)
        gap_tolerance = max(
            settings.group_gap_tolerance,
            float(np.hypot(tolerance[worst], tolerance[best])) if metric == "accuracy" else 0.0,
        )
        if cand_gap > champ_gap + gap_tolerance:
            ok = False
            reasons.append(
                f"widens the groups.{attribute} {metric} gap {champ_gap:.3f} -> {cand_gap:.3f}"
            )
        else:
            reasons.append(f"groups.{attribute} {metric} gap {champ_gap:.3f} -> {cand_gap:.3f}")
    return ok


def _allowed(tolerance: float, value: float, rows: int, metric: str) -> float:
    """The configured tolerance, or two standard errors of a difference in accuracy between
    two models on the same `rows` rows (√2 · √(p(1-p)/n)), whichever is larger."""
    if metric != "accuracy" or rows <= 0:
        return tolerance
    p = min(max(value, 0.02), 0.98)
    return max(tolerance, 2 * float(np.sqrt(2 * p * (1 - p) / rows)))
