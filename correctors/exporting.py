"""Stage 3 of a correction: the best strategy exported to ONNX, parity checked, the served
file judged by the gate, and the card written with the figures that decided."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import onnxruntime as ort

from correctors.attempt import Attempt
from correctors.kinds import adapter_for
from correctors.models.champion import Champion, register_version
from correctors.training.dataset import Prepared
from correctors.validation.compare import Judge, Judged, judge_model
from correctors.validation.export import onnx_session
from correctors.validation.scores import Scores
from correctors.validation.verdict import Verdict
from storage.registry import ModelRegistry

PARITY_ROWS = 1000


@dataclass(frozen=True)
class Start:
    """What an attempt starts from: the serving version (the gate's champion), the version
    strategies start from, and the prepared rows."""

    parent: str
    serving: Champion
    champion: Champion  # the version that served when the change began
    prepared: Prepared


@dataclass
class Outcome:
    """The exported candidate and the gate's verdict on the served file."""

    version: str
    onnx_path: Path
    summary: dict  # the training summary stored with the candidate
    champion_metrics: dict
    candidate_metrics: dict
    verdict: Verdict


def export_and_judge(
    registry: ModelRegistry,
    attempt: Attempt,
    start: Start,
    judge: Judge,
    ranked: list[Judged],
    failures: list[dict],
    version: str,
) -> Outcome:
    """Export the best-ranked strategy, check parity, judge the served file, write the card."""
    chosen = ranked[0].trained
    strategies = [j.row(judge.metric) for j in ranked] + failures
    summary = {
        **start.prepared.counts,
        "change": {**(attempt.change or {}), "base_version": start.champion.version},
        "strategy": chosen.label,
        "strategies": strategies,
        "fine_tune": chosen.summary,
    }
    card = _card(attempt, start, summary, version)
    onnx_path = register_version(
        registry, attempt.model, version, chosen.model, start.champion.encoder, card
    )
    adapter = adapter_for(start.champion.kind)
    rows = start.prepared.x_win[:PARITY_ROWS]
    checked = adapter.parity(chosen.model, onnx_path, rows, judge.task)
    served = onnx_session(onnx_path)
    scores, verdict = judge_served(served, judge, checked.gate_figure)
    verdict.notes.insert(0, f"strategy {chosen.label} chosen of {len(strategies)} tried")
    if checked.label_mismatches:
        verdict.notes.insert(
            1,
            f"ONNX parity: {checked.label_mismatches} of {checked.rows} rows get another class "
            f"from the ONNX file than from the {start.champion.kind} model (max |Δ| "
            f"{checked.max_abs_diff:.2e})",
        )
    verdict.figures["strategies"] = strategies
    outcome = Outcome(
        version,
        onnx_path,
        summary,
        judge.champion_scores.to_dict(),
        scores.to_dict(),
        verdict,
    )
    final = _final_card(card, outcome, start, attempt.model, judge.metric)
    registry.write_card(attempt.model, version, final)
    return outcome


def judge_served(
    served: ort.InferenceSession, judge: Judge, max_diff: float
) -> tuple[Scores, Verdict]:
    """The gate on what serving will run: the ONNX file's outputs."""
    return judge_model(lambda x: served.run(None, {"features": x})[0], judge, max_diff)


def _card(attempt: Attempt, start: Start, summary: dict, version: str) -> dict:
    champion = start.champion
    return {
        "kind": champion.kind,
        "factory": champion.card.get("factory"),
        "factory_kwargs": champion.card.get("factory_kwargs", {}),
        **{
            k: champion.card[k]
            for k in ("encoding", "python_path", "trusted_types")
            if k in champion.card
        },
        "encoder": champion.encoder.to_dict(),
        "classes": champion.classes,
        "task": champion.task,
        "parent": start.parent,
        "candidate_id": f"{attempt.model}-{version}",
        "incident_id": attempt.incident_id,
        "training": summary,
    }


def _final_card(card: dict, outcome: Outcome, start: Start, model: str, metric: str) -> dict:
    prepared = start.prepared
    baseline = {
        metric: outcome.candidate_metrics[f"recent_holdout_{metric}"],
        "drift_reference": {
            "kind": "window",
            "start_seq": prepared.window_seq[0],
            "end_seq": prepared.window_seq[1],
            # rows none of the strategies trained on: the quality baseline after a swap
            "holdout_seqs": prepared.holdout_seqs,
        },
    }
    return {
        **card,
        "model": model,
        "version": outcome.version,
        "baseline": baseline,
        "champion_metrics": outcome.champion_metrics,
        "candidate_metrics": outcome.candidate_metrics,
        "verdict": outcome.verdict.to_dict(),
    }
