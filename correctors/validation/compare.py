"""Judge every strategy's model by the same gate on the same rows, and rank them: those that
pass first, then by the headline on the recent holdout. Interpolated models are judged from
the largest α down; the largest that passes is the one kept."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
from torch import nn

from correctors.models.modeling import predict_outputs
from correctors.settings import CorrectionConfig
from correctors.training.trained import Trained
from correctors.validation.gate import GUARDED, EvalSet, Verdict, evaluate, judge
from correctors.validation.paired import PairedLoss, PairedSets, losses
from correctors.validation.rules import FULL_REFERENCE
from correctors.validation.scores import GroupKey, Scores, headline

OutputFn = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Judge:
    """What every candidate of one attempt is judged against: the serving champion's outputs
    and scores on the same evaluation sets, with the attempt's settings."""

    champion: OutputFn
    champion_scores: Scores
    sets: list[EvalSet]
    task: str
    shifted: dict
    settings: CorrectionConfig
    focus: GroupKey | None = None  # the group a bias incident is about
    group_rows: Mapping[GroupKey, int] = field(default_factory=dict)

    @property
    def metric(self) -> str:
        return headline(self.task)


@dataclass
class Judged:
    trained: Trained
    scores: Scores
    verdict: Verdict

    def row(self, metric: str) -> dict:
        """One line of the strategies table in the card and `warden candidates`: the failed
        rules by name (what code and tests read), their sentences for people."""
        failed = self.verdict.failed
        return {
            "strategy": self.trained.label,
            "passed": self.verdict.passed,
            f"recent_holdout_{metric}": self.scores.value("recent_holdout"),
            f"reference_guarded_{metric}": self.scores.value(GUARDED),
            "failed_rules": [str(r.rule) for r in failed],
            "failed_reasons": [r.message for r in failed],
            "training": self.trained.summary,
        }


def paired_sets(
    champion: OutputFn, candidate: OutputFn, sets: list[EvalSet], task: str
) -> PairedSets:
    """The recent holdout, each of its groups, the guarded and the full reference holdout, and
    the guarded rows of each region: the two models' per-row losses, paired."""
    paired_names = ("recent_holdout", GUARDED, FULL_REFERENCE)
    per_row = {
        s.name: (losses(champion(s.x), s.y, task), losses(candidate(s.x), s.y, task))
        for s in sets
        if s.name in paired_names or s.group is not None
    }
    regions: dict[int, PairedLoss] = {}
    for s in sets:
        if s.name == GUARDED and s.regions is not None:
            old, new = per_row[s.name]
            for region in np.unique(s.regions):
                rows = s.regions == region
                regions[int(region)] = PairedLoss.of(old[rows], new[rows])
    return PairedSets(
        sets={s.name: PairedLoss.of(*per_row[s.name]) for s in sets if s.name in paired_names},
        groups={s.group: PairedLoss.of(*per_row[s.name]) for s in sets if s.group is not None},
        regions=regions,
    )


def judge_model(outputs: OutputFn, j: Judge, parity_max_abs_diff: float) -> tuple[Scores, Verdict]:
    """The candidate's scores on the judge's sets and the gate's verdict on them."""
    scores = evaluate(outputs, j.sets, j.task)
    paired = paired_sets(j.champion, outputs, j.sets, j.task)
    verdict = judge(
        j.champion_scores,
        scores,
        parity_max_abs_diff,
        j.shifted,
        j.settings,
        paired,
        j.focus,
        j.group_rows,
    )
    return scores, verdict


def _outputs(item: Trained, task: str) -> OutputFn:
    """A torch module through `predict_outputs`; any other kind through its own scores."""
    if item.outputs is not None:
        return item.outputs
    model: nn.Module = item.model
    return lambda x: predict_outputs(model, x, task)


def rank(trained: list[Trained], j: Judge) -> list[Judged]:
    """Every strategy judged on its own outputs (ONNX parity is checked on the one exported)."""
    judged = []
    for item in trained:
        scores, verdict = judge_model(_outputs(item, j.task), j, 0.0)
        judged.append(Judged(item, scores, verdict))
    interpolated = [x for x in judged if x.trained.alpha is not None]
    keep = max(
        (x for x in interpolated if x.verdict.passed),
        key=lambda x: x.trained.alpha or 0.0,
        default=None,
    )
    if keep is not None:  # the largest α that passes stands for interpolation
        judged = [x for x in judged if x.trained.alpha is None or x is keep] + [
            x for x in interpolated if x is not keep
        ]
    metric = j.metric

    def order(x: Judged) -> tuple:
        value = x.scores.value("recent_holdout")
        value = float("-inf") if value is None else (-value if metric == "mae" else value)
        preferred = x is keep or x.trained.alpha is None
        return (x.verdict.passed, preferred, value)

    return sorted(judged, key=order, reverse=True)
