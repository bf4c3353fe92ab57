"""Incident → candidate: select samples, train every strategy, judge them, export the best to
ONNX, check parity, validate.

The candidate row is written first (status `training`) and every later state is an update plus
an audit event, so a crash mid-way leaves a visible trace rather than nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd
from sqlalchemy import Engine

from correctors.models.champion import load_champion, load_reference, register_version
from correctors.settings import CorrectionConfig, ModelDefinition
from correctors.training.dataset import NothingToCorrect, prepare
from correctors.training.strategies import train_strategies
from correctors.training.worker import FineTuneFailed
from correctors.validation.compare import judge_model, rank
from correctors.validation.export import onnx_session, parity
from correctors.validation.gate import evaluate, headline
from storage.audit import record_event
from storage.db import session_scope
from storage.registry import ModelRegistry
from storage.tables import Candidate, utcnow

EpochCallback = Callable[[int, float, float], None]
PARITY_ROWS = 1000
log = logging.getLogger(__name__)


class TrainingFailed(RuntimeError):
    """The training worker crashed, ran out of memory or time: retry the incident later."""


def _update(engine: Engine, candidate_id: str, **fields) -> Candidate:
    with session_scope(engine) as session:
        row = session.get(Candidate, candidate_id)
        for key, value in fields.items():
            setattr(row, key, value)
        row.updated_at = utcnow()
        session.add(row)
    return row


@dataclass(frozen=True)
class Attempt:
    """One correction attempt, as the daemon (first attempt or refinement), the benches and the
    tests ask for it: which model, on which labelled rows since the change, for which incident."""

    model: str
    definition: ModelDefinition
    settings: CorrectionConfig
    window: pd.DataFrame  # the labelled rows since the change
    incident_id: int | None = None
    change: dict = field(default_factory=dict)  # where the change began, attempt number, …
    base_version: str | None = None  # the version that served when the change began
    drifted_columns: tuple[str, ...] = ()
    flagged_ids: frozenset[str] = frozenset()
    focus_group: tuple[str, str] | None = None  # (attribute, disadvantaged value)


def train_candidate(
    engine: Engine,
    registry: ModelRegistry,
    attempt: Attempt,
    *,
    on_epoch: EpochCallback | None = None,
) -> Candidate:
    """Produce a validated or rejected candidate for `model` from the labelled rows since the
    change (`window`): every strategy is trained and judged, the best that passes is kept.

    `base_version` is the version that served when the change began: strategies start from
    it, and it decides what was flagged and which reference rows the new data contradicts (a
    refinement after an earlier swap starts again from there, with more rows). The gate
    compares with the serving champion."""
    started = time.perf_counter()
    model, definition, settings, window = (
        attempt.model,
        attempt.definition,
        attempt.settings,
        attempt.window,
    )
    incident_id, change, base_version = attempt.incident_id, attempt.change, attempt.base_version
    focus_group = attempt.focus_group
    drifted_columns, flagged_ids = list(attempt.drifted_columns), set(attempt.flagged_ids)
    parent = registry.active(model)
    if parent is None:
        raise NothingToCorrect(f"model {model!r} has no active version to correct")
    serving = load_champion(registry, model, parent)
    base = base_version if base_version and base_version != parent else None
    champion = load_champion(registry, model, base) if base else serving
    try:
        prepared = prepare(
            champion,
            window,
            load_reference(definition),
            drifted_columns or [],
            settings,
            flagged_ids=flagged_ids,
            focus_group=focus_group,
        )
    except FineTuneFailed as exc:
        raise TrainingFailed(exc.reason) from exc
    version = registry.next_version(model)
    candidate_id = f"{model}-{version}"
    with session_scope(engine) as session:
        session.add(
            Candidate(
                id=candidate_id,
                model=model,
                version=version,
                parent_version=parent,
                incident_id=incident_id,
                training=prepared.counts,
            )
        )
        record_event(
            session,
            "candidate_training",
            actor="daemon",
            model=model,
            subject=candidate_id,
            incident_id=incident_id,
            **prepared.counts,
        )
    try:
        try:
            trained, failures = train_strategies(
                champion.torch_model, prepared, settings, on_epoch=on_epoch
            )
        except FineTuneFailed as exc:  # the worker died: the daemon lives, the incident retries
            _finish(engine, model, candidate_id, "failed", exc.reason)
            raise TrainingFailed(exc.reason) from exc
        task, metric = champion.task, headline(champion.task)
        focus = focus_group[0] if focus_group else None
        champ_metrics = evaluate(serving.onnx.proba_encoded, prepared.sets, task)
        ranked = rank(
            trained,
            serving.onnx.proba_encoded,
            champ_metrics,
            prepared.sets,
            task,
            prepared.shifted,
            settings,
            focus,
        )
        chosen = ranked[0].trained
        strategies = [j.row(metric) for j in ranked] + failures
        summary = {
            **prepared.counts,
            "change": {**(change or {}), "base_version": base or parent},
            "strategy": chosen.label,
            "strategies": strategies,
            "fine_tune": chosen.summary,
        }
        card = {
            "factory": champion.card["factory"],
            "factory_kwargs": champion.card["factory_kwargs"],
            **{k: champion.card[k] for k in ("encoding", "python_path") if k in champion.card},
            "encoder": champion.encoder.to_dict(),
            "classes": champion.classes,
            "task": task,
            "parent": parent,
            "candidate_id": candidate_id,
            "incident_id": incident_id,
            "training": summary,
        }
        onnx_path = register_version(registry, model, version, chosen.model, champion.encoder, card)
        sample = prepared.x_win[:PARITY_ROWS]
        max_diff = parity(chosen.model, onnx_path, sample, task)
        served = onnx_session(onnx_path)
        cand_metrics, verdict = judge_model(
            lambda x: served.run(None, {"features": x})[0],
            serving.onnx.proba_encoded,
            champ_metrics,
            prepared.sets,
            task,
            max_diff,
            prepared.shifted,
            settings,
            focus,
        )
        verdict.reasons.insert(0, f"strategy {chosen.label} chosen of {len(strategies)} tried")
        verdict.figures["strategies"] = strategies
        baseline = {
            metric: cand_metrics[f"recent_holdout_{metric}"],
            "drift_reference": {
                "kind": "window",
                "start_seq": prepared.window_seq[0],
                "end_seq": prepared.window_seq[1],
                # rows none of the strategies trained on: the quality baseline after a swap
                "holdout_seqs": prepared.holdout_seqs,
            },
        }
        registry.write_card(
            model,
            version,
            {
                **card,
                "model": model,
                "version": version,
                "baseline": baseline,
                "champion_metrics": champ_metrics,
                "candidate_metrics": cand_metrics,
                "verdict": verdict.to_dict(),
            },
        )
    except TrainingFailed:
        raise
    except Exception as exc:  # noqa: BLE001 - recorded as a rejection with the reason
        log.exception("correction failed for %s", candidate_id)
        return _reject(engine, model, candidate_id, f"correction failed: {exc!r}")
    summary["seconds_total"] = round(time.perf_counter() - started, 3)
    status = "validated" if verdict.passed else "rejected"
    row = _update(
        engine,
        candidate_id,
        status=status,
        training=summary,
        champion_metrics=champ_metrics,
        candidate_metrics=cand_metrics,
        verdict=verdict.to_dict(),
        onnx_path=str(onnx_path),
        onnx_sha256=registry.card(model, version)["onnx_sha256"],
    )
    with session_scope(engine) as s:
        record_event(
            s,
            f"candidate_{status}",
            actor="daemon",
            model=model,
            subject=candidate_id,
            reasons=verdict.reasons,
        )
    return row


def _reject(engine: Engine, model: str, candidate_id: str, reason: str) -> Candidate:
    return _finish(engine, model, candidate_id, "rejected", reason)


def _finish(engine: Engine, model: str, candidate_id: str, status: str, reason: str) -> Candidate:
    """End a candidate that never reached the gate (`rejected` or `failed`), with its reason."""
    row = _update(
        engine, candidate_id, status=status, verdict={"passed": False, "reasons": [reason]}
    )
    with session_scope(engine) as s:
        record_event(
            s,
            f"candidate_{status}",
            actor="daemon",
            model=model,
            subject=candidate_id,
            reasons=[reason],
        )
    return row
