"""Incident → candidate: select samples, fine-tune, export, check parity, validate.

The candidate row is written first (status `training`) and every later state is an update plus
an audit event, so a crash mid-way leaves a visible trace rather than nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import pandas as pd
from sqlalchemy import Engine

from correctors.models.champion import load_champion, load_reference, register_version
from correctors.settings import CorrectionConfig, ModelDefinition
from correctors.training.dataset import NothingToCorrect, prepare
from correctors.training.worker import FineTuneFailed, fine_tune_in_worker
from correctors.validation.export import onnx_session, parity
from correctors.validation.gate import evaluate, headline, judge
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


def train_candidate(
    engine: Engine,
    registry: ModelRegistry,
    model: str,
    definition: ModelDefinition,
    settings: CorrectionConfig,
    window: pd.DataFrame,
    *,
    incident_id: int | None = None,
    drifted_columns: list[str] | None = None,
    on_epoch: EpochCallback | None = None,
    flagged_ids: set[str] | None = None,
    focus_group: tuple[str, str] | None = None,
) -> Candidate:
    """Produce a validated or rejected candidate for `model` from a labelled window."""
    started = time.perf_counter()
    parent = registry.active(model)
    if parent is None:
        raise NothingToCorrect(f"model {model!r} has no active version to correct")
    champion = load_champion(registry, model, parent)
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
            result = fine_tune_in_worker(
                champion.torch_model,
                prepared.train_x,
                prepared.train_y,
                settings,
                on_epoch=on_epoch,
            )
        except FineTuneFailed as exc:  # the worker died: the daemon lives, the incident retries
            _finish(engine, model, candidate_id, "failed", exc.reason)
            raise TrainingFailed(exc.reason) from exc
        summary = {**prepared.counts, "fine_tune": result.summary()}
        champ_metrics = evaluate(champion.onnx.proba_encoded, prepared.sets, champion.task)
        card = {
            "factory": champion.card["factory"],
            "factory_kwargs": champion.card["factory_kwargs"],
            "encoder": champion.encoder.to_dict(),
            "classes": champion.classes,
            "task": champion.task,
            "parent": parent,
            "candidate_id": candidate_id,
            "incident_id": incident_id,
            "training": summary,
        }
        onnx_path = register_version(registry, model, version, result.model, champion.encoder, card)
        sample = prepared.x_win[:PARITY_ROWS]
        max_diff = parity(result.model, onnx_path, sample, champion.task)
        served = onnx_session(onnx_path)
        cand_metrics = evaluate(
            lambda x: served.run(None, {"features": x})[0], prepared.sets, champion.task
        )
        verdict = judge(champ_metrics, cand_metrics, max_diff, prepared.shifted, settings)
        metric = headline(champion.task)
        baseline = {
            metric: cand_metrics[f"recent_holdout_{metric}"],
            "drift_reference": {
                "kind": "window",
                "start_seq": prepared.window_seq[0],
                "end_seq": prepared.window_seq[1],
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
