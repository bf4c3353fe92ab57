"""The validation gate (no blessing, no push): the candidate must fix the present and keep the past.

Rules, every one recorded in the verdict with its figures:
1. ONNX parity: torch and onnxruntime agree within `parity_tolerance`.
2. Present truth: on the recent held-out window the candidate beats the champion by
   `min_improvement`, the paired test on those same rows (McNemar / paired t) says the gain is
   real at `paired_alpha`, and it beats the no-skill answer (the holdout's majority class, or
   its median for regression): a candidate merely less wrong than a broken champion is no fix.
3. No forgetting: on reference holdout rows that still hold (outside the shifted region), the
   candidate loses at most `forgetting_tolerance` accuracy against the champion, or the
   paired test on those rows does not find the loss real at `paired_alpha`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from correctors.settings import CorrectionConfig
from correctors.validation.paired import PairedLoss, gap_change

ProbaFn = Callable[[np.ndarray], np.ndarray]
GUARDED = "reference_guarded"  # the reference holdout outside the shifted region


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
        if data.name == "recent_holdout":
            out[f"recent_holdout_no_skill_{metric}"] = no_skill(data, task)
    return out


def no_skill(data: EvalSet, task: str) -> float | None:
    """The headline of the best constant answer on these rows (majority class, median)."""
    if len(data.y) == 0:
        return None
    if task == "regression":
        return float(np.abs(data.y - np.median(data.y)).mean())
    return float(np.bincount(np.asarray(data.y, dtype=np.int64)).max() / len(data.y))


def _gain(champ: float, cand: float, metric: str) -> float:
    """How much better the candidate is (positive = better), whatever the direction."""
    return champ - cand if metric == "mae" else cand - champ


def judge(
    champion: dict[str, float | None],
    candidate: dict[str, float | None],
    parity_max_abs_diff: float,
    shifted: dict,
    settings: CorrectionConfig,
    paired: dict[str, PairedLoss] | None = None,
    focus_attribute: str | None = None,
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
    task = "regression" if metric == "mae" else "classification"
    compared = Compared(champion, candidate, settings, task)
    if not present_rule(compared, (paired or {}).get("recent_holdout"), reasons):
        passed = False
    if not guard_rule(compared, (paired or {}).get(GUARDED), reasons):
        passed = False
    flagged_rule(champion, candidate, reasons)
    if not group_rules(champion, candidate, settings, reasons, paired or {}, task, focus_attribute):
        passed = False
    if shifted.get("concept_shift"):
        reasons.append(
            f"excluded {shifted['reference_excluded']} reference holdout rows in the shifted "
            "region (recent labels contradict them or do not confirm them) from the "
            "no-forgetting check"
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
            "paired_alpha": settings.paired_alpha,
            "bias_gap_rule": settings.bias_gap_rule,
        },
        "holdout_rows": {k[: -len("_rows")]: v for k, v in champion.items() if k.endswith("_rows")},
        "groups_paired": {
            k: v.to_dict() for k, v in (paired or {}).items() if k.startswith("group:")
        },
        **{
            f"{name}_paired": pair.to_dict()
            for name, pair in (paired or {}).items()
            if not name.startswith("group:")
        },
        "shifted_region": shifted,
    }
    return Verdict(passed=passed, reasons=reasons, figures=figures)


@dataclass(frozen=True)
class Compared:
    """Champion and candidate figures on the same sets, as every rule reads them."""

    champion: dict
    candidate: dict
    settings: CorrectionConfig
    task: str


def present_rule(c: Compared, pair: PairedLoss | None, reasons: list[str]) -> bool:
    """Rule 2: a real gain on the recent holdout (size, paired test) that beats no skill."""
    champion, candidate, settings, task = c.champion, c.candidate, c.settings, c.task
    metric = headline(task)
    champ, cand = champion[f"recent_holdout_{metric}"], candidate[f"recent_holdout_{metric}"]
    rows = champion.get("recent_holdout_rows")
    if champ is None or cand is None:
        reasons.append("no recent held-out labels: cannot judge the present")
        return False
    ok = True
    paired, p = "", 0.0  # no pair: the gain's size alone decides, as before
    if pair is not None:
        p = pair.p_better(task)
        paired = f"; paired: {pair.better} better, {pair.worse} worse, p={p:.2g}"
    figures = f"{champ:.3f} -> {cand:.3f} on {rows} holdout rows{paired}"
    if _gain(champ, cand, metric) < settings.min_improvement:
        ok = False
        reasons.append(
            f"recent holdout {metric} does not beat the champion's by "
            f"{settings.min_improvement}: {figures}"
        )
    elif not p < settings.paired_alpha:
        ok = False
        reasons.append(
            f"recent holdout gain is not significant (paired p >= {settings.paired_alpha}): "
            f"{figures}"
        )
    else:
        reasons.append(f"recent holdout {metric} {figures}")
    floor = champion.get(f"recent_holdout_no_skill_{metric}")
    if floor is not None and _gain(floor, cand, metric) <= 0:
        ok = False
        reasons.append(
            f"does not beat no skill on the recent holdout: {metric} {cand:.3f} vs "
            f"{floor:.3f} for the best constant answer"
        )
    return ok


def guard_rule(c: Compared, pair: PairedLoss | None, reasons: list[str]) -> bool:
    """Rule 3: no forgetting where the old truth holds. A loss beyond `forgetting_tolerance`
    fails when the paired test on the guarded rows says it is real at `paired_alpha` (a few
    rows of a small guarded set are noise, not forgetting)."""
    champion, candidate, settings = c.champion, c.candidate, c.settings
    metric = headline(c.task)
    champ, cand = champion[f"{GUARDED}_{metric}"], candidate[f"{GUARDED}_{metric}"]
    if champ is None or cand is None:
        return True
    rows = champion.get(f"{GUARDED}_rows")
    paired, p = "", 0.0
    if pair is not None:
        p = pair.p_worse(c.task)
        paired = f"; paired: {pair.worse} worse, {pair.better} better, p={p:.2g}"
    figures = f"{metric} {champ:.3f} -> {cand:.3f} on {rows} guarded rows{paired}"
    if _gain(champ, cand, metric) < -settings.forgetting_tolerance and p < settings.paired_alpha:
        reasons.append(
            f"forgets the reference: {figures} (tolerance {settings.forgetting_tolerance})"
        )
        return False
    reasons.append(f"reference guard held: {figures}")
    return True


def flagged_rule(champion: dict, candidate: dict, reasons: list[str]) -> None:
    """Reported, not gating: the flagged slice is part of the recent holdout already judged."""
    for metric in ("accuracy", "mae"):
        champ, cand = (
            champion.get(f"flagged_slice_{metric}"),
            candidate.get(f"flagged_slice_{metric}"),
        )
        if champ is not None and cand is not None:
            reasons.append(f"flagged slice {metric} {champ:.3f} -> {cand:.3f}")


def group_rules(
    champion: dict,
    candidate: dict,
    settings: CorrectionConfig,
    reasons: list[str],
    paired: dict[str, PairedLoss],
    task: str = "classification",
    focus: str | None = None,
) -> bool:
    """Per group of the recent holdout, champion and candidate compared on the same rows.

    A group regresses when it loses more than `group_gap_tolerance` AND the paired test
    (McNemar for accuracy, paired t for MAE) says the loss is real at `paired_alpha`,
    Bonferroni-corrected over the groups judged. An attribute's gap (best − worst group)
    widens under the same two conditions, corrected over the attributes. For the attribute a
    bias incident is about (`focus`), the gap must also narrow (`bias_gap_rule`)."""
    ok = True
    metric = headline(task)
    by_attribute: dict[str, list[str]] = {}
    for name in paired:
        if name.startswith("group:") and champion.get(f"{name}_{metric}") is not None:
            by_attribute.setdefault(name[len("group:") :].split("=", 1)[0], []).append(name)
    judged = {a: g for a, g in by_attribute.items() if len(g) >= 2}
    n_groups = sum(len(g) for g in judged.values())
    alpha = settings.paired_alpha
    for attribute, names in sorted(judged.items()):
        champ = {g: champion[f"{g}_{metric}"] for g in names}
        cand = {g: candidate[f"{g}_{metric}"] for g in names}
        for g in names:
            pair, p = paired[g], paired[g].p_worse(task)
            if pair.mean > settings.group_gap_tolerance and p < alpha / n_groups:
                ok = False
                reasons.append(
                    f"group {g[len('group:') :]} regresses: {metric} {champ[g]:.3f} -> "
                    f"{cand[g]:.3f} on {pair.rows} holdout rows (paired: {pair.worse} worse, "
                    f"{pair.better} better, p={p:.2g} < {alpha / n_groups:.2g})"
                )
        worse_first = sorted(names, key=lambda g: cand[g], reverse=metric == "mae")
        worst, best = worse_first[0], worse_first[-1]
        champ_gap = abs(max(champ.values()) - min(champ.values()))
        cand_gap = abs(cand[best] - cand[worst])
        change, p = gap_change(paired[best], paired[worst])
        sizes = ", ".join(f"{g[len('group:') :]} {paired[g].rows}" for g in names)
        figures = f"{champ_gap:.3f} -> {cand_gap:.3f} (rows: {sizes}; paired p={p:.2g})"
        if cand_gap - champ_gap > settings.group_gap_tolerance and p < alpha / len(judged):
            ok = False
            reasons.append(f"widens the groups.{attribute} {metric} gap {figures}")
        else:
            reasons.append(f"groups.{attribute} {metric} gap {figures}")
        if attribute == focus and not _narrows(settings.bias_gap_rule, champ_gap, cand_gap, p):
            ok = False
            reasons.append(
                f"does not narrow the groups.{attribute} gap the bias incident is about "
                f"({settings.bias_gap_rule}): {champ_gap:.3f} -> {cand_gap:.3f}"
            )
    return ok


def _narrows(rule: str, before: float, after: float, p_widens: float) -> bool:
    """`narrower`: the gap is smaller; `not_wider`: it is not larger; `significant`: smaller
    and the paired test says so (p < 0.05 that it narrowed)."""
    if rule == "not_wider":
        return after <= before + 1e-9
    if rule == "significant":
        return after < before and 1.0 - p_widens < 0.05
    return after < before
