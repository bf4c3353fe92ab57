"""Refinement: a swapped correction learnt from the rows it had when it was made. As labels of
the new truth keep arriving, the daemon tries again (from the version that served before the
change, with all rows since it) each time they have grown by `correction.retry_growth`; the
candidate must beat the serving version. The first that does not means it has converged."""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog

from correctors.pipeline import Attempt, NothingToCorrect, TrainingFailed, train_candidate
from storage.db import session_scope
from storage.queries import recent_window
from storage.tables import Incident
from watcher.config import ModelConfig
from watcher.daemon.attempts import refinement_plan, serving_candidate
from watcher.daemon.change_start import change_start

if TYPE_CHECKING:
    from watcher.daemon.corrections import Corrections

log = structlog.get_logger("warden.daemon")


def maybe_refine(corrections: Corrections, name: str, model: ModelConfig) -> None:
    d, settings = corrections.daemon, model.correction
    serving = serving_candidate(d.engine, name, d.registry.active(name))
    change = (serving.training or {}).get("change", {}) if serving is not None else {}
    if serving is None or serving.incident_id is None or "seq" not in change:
        return
    window = recent_window(
        d.engine, name, settings.max_rows, labelled_only=True, start_seq=change["seq"]
    )
    due = refinement_plan(d.engine, serving, len(window), settings)
    if not due.due:
        return
    with session_scope(d.engine) as session:
        incident = session.get(Incident, serving.incident_id)
    base = change.get("base_version")
    if incident is not None and base:
        change = {**change, **refreshed_start(corrections, name, model, incident, base, change)}
        window = window[window["seq"] >= change["seq"]].reset_index(drop=True)
    log.info("refinement_started", model=name, serving=serving.id, why=due.reason)
    try:
        attempt = Attempt(
            name,
            model,
            settings,
            window,
            incident_id=serving.incident_id,
            change={**change, "attempt": due.attempt, "refinement": True},
            base_version=change.get("base_version"),
        )
        cand = train_candidate(d.engine, d.registry, attempt, on_epoch=d.on_epoch)
    except (NothingToCorrect, TrainingFailed) as exc:
        log.info("refinement_skipped", model=name, reason=str(exc))
        return
    log.info("refinement_result", model=name, candidate=cand.id, status=cand.status)
    corrections.decide(name, model, cand, incident, len(window))


def refreshed_start(
    corrections: Corrections,
    name: str,
    model: ModelConfig,
    incident: Incident,
    base: str,
    change: dict,
) -> dict:
    """Where the change began, asked again of the base version on every row since: never
    earlier than the serving version's estimate (the refinement's schedule counts from it)."""
    d = corrections.daemon
    fresh = change_start(d.engine, d.registry, name, model, incident, base_version=base)
    if fresh["seq"] <= change["seq"]:
        return {}
    log.info("refinement_change_moved", model=name, was=change["seq"], now=fresh["seq"])
    return {**fresh, "scheduled_from_seq": change["seq"]}
