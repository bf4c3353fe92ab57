"""The validation gate (no blessing, no push): the candidate must fix the present and keep the past.

Rules (`correctors.validation.rules`), every one recorded in the verdict with its figures:
1. ONNX parity: torch and onnxruntime agree within `parity_tolerance`.
2. Present truth: on the recent held-out window the candidate beats the champion by
   `min_improvement`, the paired test on those same rows (McNemar / paired t) says the gain is
   real at `paired_alpha`, and it beats the no-skill answer (the holdout's majority class, or
   its median for regression): a candidate merely less wrong than a broken champion is no fix.
3. No forgetting: on the reference holdout rows that stay guarded (all but those beside recent
   rows in regions where recent labels differ significantly: `correctors.validation.regions`),
   the candidate loses at most `forgetting_tolerance` against the champion, or the paired test
   on those rows does not find the loss real at `paired_alpha`; a failure names the region
   that lost most. The full reference holdout is reported too: a real loss there while more
   than `review_excluded_share` of it left the guard, with recent rows reaching less than
   `review_reached_share` of it, asks for a person (never auto-swapped).
4. Groups: no group regresses, no attribute's gap widens, and for a bias incident its gap
   narrows (not judged, and failed, when the attribute has too few rows per group).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from correctors.settings import CorrectionConfig
from correctors.validation.paired import PairedSets
from correctors.validation.rules import (
    GUARDED,
    Compared,
    flagged_rule,
    full_reference_rule,
    group_rules,
    guard_rule,
    no_skill_rule,
    parity_rule,
    present_rule,
    shifted_rule,
)
from correctors.validation.scores import (
    NO_SKILL_SET,
    GroupKey,
    Scores,
    SetScore,
    headline,
    task_of,
)
from correctors.validation.verdict import RuleResult, Verdict

ProbaFn = Callable[[np.ndarray], np.ndarray]

__all__ = ["GUARDED", "EvalSet", "Verdict", "evaluate", "headline", "judge", "no_skill"]


@dataclass
class EvalSet:
    """An encoded, labelled evaluation set (y holds class indices); `group` for a group's rows;
    `regions`, per row, the region of the input space it lies in (the guarded reference)."""

    name: str
    x: np.ndarray
    y: np.ndarray
    group: GroupKey | None = None
    regions: np.ndarray | None = None


def score(proba: ProbaFn, data: EvalSet, task: str = "classification") -> float | None:
    if len(data.y) == 0:
        return None
    out = proba(data.x)
    if task == "regression":
        return float(np.abs(out[:, 0] - data.y).mean())
    return float((out.argmax(axis=1) == data.y).mean())


def evaluate(proba: ProbaFn, sets: list[EvalSet], task: str = "classification") -> Scores:
    """The headline metric and row count on each evaluation set."""
    scores = Scores(headline(task))
    for data in sets:
        floor = no_skill(data, task) if data.name == NO_SKILL_SET else None
        result = SetScore(len(data.y), score(proba, data, task), floor)
        if data.group is None:
            scores.sets[data.name] = result
        else:
            scores.groups[data.group] = result
    return scores


def no_skill(data: EvalSet, task: str) -> float | None:
    """The headline of the best constant answer on these rows (majority class, median)."""
    if len(data.y) == 0:
        return None
    if task == "regression":
        return float(np.abs(data.y - np.median(data.y)).mean())
    return float(np.bincount(np.asarray(data.y, dtype=np.int64)).max() / len(data.y))


def judge(
    champion: Scores,
    candidate: Scores,
    parity_max_abs_diff: float,
    shifted: dict,
    settings: CorrectionConfig,
    paired: PairedSets | None = None,
    focus: GroupKey | None = None,
    group_rows: Mapping[GroupKey, int] | None = None,
) -> Verdict:
    """Apply the gate's rules; every rule's result and figures are kept."""
    c = Compared(
        champion,
        candidate,
        settings,
        task_of(champion.metric),
        paired or PairedSets(),
        group_rows or {},
        focus,
    )
    present = [
        present_rule(c),
        no_skill_rule(c),
        guard_rule(c, shifted),
        full_reference_rule(c, shifted),
        flagged_rule(c),
    ]
    rules: list[RuleResult] = [
        parity_rule(parity_max_abs_diff, settings),
        *(r for r in present if r is not None),
        *group_rules(c),
        shifted_rule(shifted),
    ]
    return Verdict(rules, figures=_figures(c, parity_max_abs_diff, shifted))


def _figures(c: Compared, parity_max_abs_diff: float, shifted: dict) -> dict:
    s = c.settings
    rows = {name: score.rows for name, score in c.champion.sets.items()}
    rows.update({g.set_name: score.rows for g, score in c.champion.groups.items()})
    return {
        "parity_max_abs_diff": parity_max_abs_diff,
        "settings": {
            "min_improvement": s.min_improvement,
            "forgetting_tolerance": s.forgetting_tolerance,
            "parity_tolerance": s.parity_tolerance,
            "group_gap_tolerance": s.group_gap_tolerance,
            "paired_alpha": s.paired_alpha,
            "bias_gap_rule": s.bias_gap_rule,
            "shift_alpha": s.shift_alpha,
            "shift_min_effect": s.shift_min_effect,
            "review_excluded_share": s.review_excluded_share,
            "review_reached_share": s.review_reached_share,
        },
        "holdout_rows": rows,
        **c.paired.figures(),
        "shifted_region": shifted,
    }
