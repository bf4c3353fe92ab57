"""Incident → candidate, in four stages: prepare (select samples), train and rank (every
strategy, judged by the gate), export and judge (the best to ONNX, parity, the gate again on
the served file), record (the candidate row, the card, the audit event).

The candidate row is written first (status `training`) and every later state is an update plus
an audit event, so a crash mid-way leaves a visible trace rather than nothing.
"""

from __future__ import annotations

import logging
import time

from sqlalchemy import Engine

from correctors.attempt import Attempt, EpochCallback, TrainingFailed
from correctors.exporting import Outcome, Start, export_and_judge
from correctors.kinds import adapter_for
from correctors.models.champion import load_champion, load_reference
from correctors.records import finish, open_candidate, settle, unused_version
from correctors.training.dataset import NothingToCorrect, prepare
from correctors.training.worker import FineTuneFailed
from correctors.validation.compare import Judge, Judged, rank
from correctors.validation.gate import evaluate
from correctors.validation.scores import GroupKey
from storage.registry import ModelRegistry
from storage.tables import Candidate, CandidateStatus

__all__ = ["Attempt", "NothingToCorrect", "TrainingFailed", "train_candidate"]
log = logging.getLogger(__name__)


def train_candidate(
    engine: Engine,
    registry: ModelRegistry,
    attempt: Attempt,
    *,
    on_epoch: EpochCallback | None = None,
) -> Candidate:
    """Produce a validated or rejected candidate for `attempt.model` from the labelled rows
    since the change: every strategy is trained and judged, the best that passes is kept.

    `attempt.base_version` is the version that served when the change began: strategies start
    from it, and it decides what was flagged and which reference rows the new data contradicts
    (a refinement after an earlier swap starts again from there, with more rows). The gate
    compares with the serving champion."""
    started = time.perf_counter()
    start = _start(registry, attempt)
    version = unused_version(engine, attempt.model, registry.next_version(attempt.model))
    candidate_id = open_candidate(
        engine, attempt.model, version, start.parent, attempt.incident_id, start.prepared.counts
    )
    try:
        judge = _judge(start, attempt)
        ranked, failures = _train_and_rank(engine, attempt, start, judge, candidate_id, on_epoch)
        outcome = export_and_judge(registry, attempt, start, judge, ranked, failures, version)
    except TrainingFailed as exc:  # recorded; the daemon retries the incident later
        finish(
            engine, attempt.model, candidate_id, CandidateStatus.FAILED, f"training failed: {exc}"
        )
        raise
    except Exception as exc:  # noqa: BLE001 - recorded as a rejection with the reason
        log.exception("correction failed for %s", candidate_id)
        reason = f"correction failed: {exc!r}"
        return finish(engine, attempt.model, candidate_id, CandidateStatus.REJECTED, reason)
    outcome.summary["seconds_total"] = round(time.perf_counter() - started, 3)
    return _record(engine, registry, attempt.model, candidate_id, outcome)


def _start(registry: ModelRegistry, attempt: Attempt) -> Start:
    """Stage 1, prepare: load the champions and select, encode and split the rows."""
    parent = registry.active(attempt.model)
    if parent is None:
        raise NothingToCorrect(f"model {attempt.model!r} has no active version to correct")
    serving = load_champion(registry, attempt.model, parent)
    base = attempt.base_version
    champion = load_champion(registry, attempt.model, base) if base and base != parent else serving
    reference = load_reference(attempt.definition)
    try:
        prepared = prepare(
            champion,
            attempt.window,
            reference,
            list(attempt.drifted_columns),
            attempt.settings,
            flagged_ids=set(attempt.flagged_ids),
            focus_group=attempt.focus_group,
        )
    except FineTuneFailed as exc:
        raise TrainingFailed(exc.reason) from exc
    return Start(parent, serving, champion, prepared)


def _judge(start: Start, attempt: Attempt) -> Judge:
    """The gate's side of the comparison: the serving champion on the attempt's sets."""
    champion, task = start.serving.onnx.proba_encoded, start.champion.task
    return Judge(
        champion=champion,
        champion_scores=evaluate(champion, start.prepared.sets, task),
        sets=start.prepared.sets,
        task=task,
        shifted=start.prepared.shifted,
        settings=attempt.settings,
        focus=GroupKey(*attempt.focus_group) if attempt.focus_group else None,
        group_rows=start.prepared.group_rows,
    )


def _train_and_rank(
    engine: Engine,
    attempt: Attempt,
    start: Start,
    judge: Judge,
    candidate_id: str,
    on_epoch: EpochCallback | None,
) -> tuple[list[Judged], list[dict]]:
    """Stage 2: train every strategy (a dead worker fails the candidate, the daemon lives and
    the incident retries) and rank them by the gate."""
    try:
        champion = start.champion
        trained, failures = adapter_for(champion.kind).train(
            champion.native, start.prepared, attempt.settings, champion.task, on_epoch=on_epoch
        )
    except FineTuneFailed as exc:
        finish(engine, attempt.model, candidate_id, CandidateStatus.FAILED, exc.reason)
        raise TrainingFailed(exc.reason) from exc
    return rank(trained, judge), failures


def _record(
    engine: Engine, registry: ModelRegistry, model: str, candidate_id: str, outcome: Outcome
) -> Candidate:
    """Stage 4: the candidate's final row and event."""
    verdict = outcome.verdict
    status = CandidateStatus.VALIDATED if verdict.passed else CandidateStatus.REJECTED
    return settle(
        engine,
        model,
        candidate_id,
        status,
        verdict.reasons,
        training=outcome.summary,
        champion_metrics=outcome.champion_metrics,
        candidate_metrics=outcome.candidate_metrics,
        verdict=verdict.to_dict(),
        onnx_path=str(outcome.onnx_path),
        onnx_sha256=registry.card(model, outcome.version)["onnx_sha256"],
    )
