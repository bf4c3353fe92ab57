"""Judge every strategy's model by the same gate on the same rows, and rank them: those that
pass first, then by the headline on the recent holdout. Interpolated models are judged from
the largest α down; the largest that passes is the one kept."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from correctors.models.modeling import predict_outputs
from correctors.settings import CorrectionConfig
from correctors.training.strategies import Trained
from correctors.validation.gate import GUARDED, EvalSet, Verdict, evaluate, headline, judge
from correctors.validation.paired import PairedLoss, losses

OutputFn = Callable[[np.ndarray], np.ndarray]


@dataclass
class Judged:
    trained: Trained
    metrics: dict
    verdict: Verdict

    def row(self, metric: str) -> dict:
        """One line of the strategies table in the card and `warden candidates`."""
        return {
            "strategy": self.trained.label,
            "passed": self.verdict.passed,
            f"recent_holdout_{metric}": self.metrics.get(f"recent_holdout_{metric}"),
            f"reference_guarded_{metric}": self.metrics.get(f"reference_guarded_{metric}"),
            "failed_rules": [r for r in self.verdict.reasons if _is_failure(r)],
            "training": self.trained.summary,
        }


FAILURE_WORDS = (
    "does not",
    "not significant",
    "forgets",
    "regresses",
    "widens",
    "failed",
    "cannot",
    "no recent",
)


def _is_failure(reason: str) -> bool:
    return any(word in reason for word in FAILURE_WORDS)


def paired_sets(
    champion: OutputFn, candidate: OutputFn, sets: list[EvalSet], task: str
) -> dict[str, PairedLoss]:
    """The recent holdout, each of its groups and the guarded reference: the two models'
    per-row losses, paired."""
    return {
        s.name: PairedLoss.of(losses(champion(s.x), s.y, task), losses(candidate(s.x), s.y, task))
        for s in sets
        if s.name.startswith("group:") or s.name in ("recent_holdout", GUARDED)
    }


def judge_model(
    outputs: OutputFn,
    champion: OutputFn,
    champion_metrics: dict,
    sets: list[EvalSet],
    task: str,
    parity_max_abs_diff: float,
    shifted: dict,
    settings: CorrectionConfig,
    focus_attribute: str | None,
) -> tuple[dict, Verdict]:
    metrics = evaluate(outputs, sets, task)
    paired = paired_sets(champion, outputs, sets, task)
    verdict = judge(
        champion_metrics, metrics, parity_max_abs_diff, shifted, settings, paired, focus_attribute
    )
    return metrics, verdict


def rank(
    trained: list[Trained],
    champion: OutputFn,
    champion_metrics: dict,
    sets: list[EvalSet],
    task: str,
    shifted: dict,
    settings: CorrectionConfig,
    focus_attribute: str | None,
) -> list[Judged]:
    """Every strategy judged in torch (ONNX parity is checked on the one exported)."""
    metric = headline(task)
    judged = []
    for item in trained:
        metrics, verdict = judge_model(
            lambda x, m=item.model: predict_outputs(m, x, task),
            champion,
            champion_metrics,
            sets,
            task,
            0.0,
            shifted,
            settings,
            focus_attribute,
        )
        judged.append(Judged(item, metrics, verdict))
    interpolated = [j for j in judged if j.trained.alpha is not None]
    keep = max(
        (j for j in interpolated if j.verdict.passed),
        key=lambda j: j.trained.alpha,
        default=None,
    )
    if keep is not None:  # the largest α that passes stands for interpolation
        judged = [j for j in judged if j.trained.alpha is None or j is keep] + [
            j for j in interpolated if j is not keep
        ]

    def order(j: Judged) -> tuple:
        value = j.metrics.get(f"recent_holdout_{metric}")
        value = float("-inf") if value is None else (-value if metric == "mae" else value)
        preferred = j is keep or j.trained.alpha is None
        return (j.verdict.passed, preferred, value)

    return sorted(judged, key=order, reverse=True)
