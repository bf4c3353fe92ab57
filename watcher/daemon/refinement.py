"""Refinement: a swapped correction learnt from the rows it had when it was made. As labels of
the new truth keep arriving, the daemon tries again (from the version that served before the
change, with all rows since it) each time they have grown by `correction.retry_growth`; the
candidate must beat the serving version. The first that does not means it has converged."""

from __future__ import annotations

import structlog

from correctors.pipeline import Attempt, TrainingFailed
from storage.db import session_scope
from storage.queries import recent_window
from storage.tables import Incident
from watcher.config import ModelConfig
from watcher.daemon.attempts import refinement_plan, serving_candidate
from watcher.daemon.change_start import change_start
from watcher.daemon.context import DaemonContext
from watcher.daemon.decisions import Decide
from watcher.daemon.training import run_attempt

log = structlog.get_logger("warden.daemon")


class Refinement:
    def __init__(self, ctx: DaemonContext, decide: Decide) -> None:
        self.ctx, self.decide = ctx, decide

    def maybe_refine(self, name: str, model: ModelConfig) -> None:
        """Another attempt for the correction now serving, when its plan says it is due."""
        ctx, settings = self.ctx, model.correction
        serving = serving_candidate(ctx.engine, name, ctx.registry.active(name))
        change = (serving.training or {}).get("change", {}) if serving is not None else {}
        if serving is None or serving.incident_id is None or "seq" not in change:
            return
        window = recent_window(
            ctx.engine, name, settings.max_rows, labelled_only=True, start_seq=change["seq"]
        )
        due = refinement_plan(ctx.engine, serving, len(window), settings)
        if not due.due:
            return
        with session_scope(ctx.engine) as session:
            incident = session.get(Incident, serving.incident_id)
        base = change.get("base_version")
        if incident is not None and base:
            change = {**change, **self.refreshed_start(name, model, incident, base, change)}
            window = window[window["seq"] >= change["seq"]].reset_index(drop=True)
        log.info("refinement_started", model=name, serving=serving.id, why=due.reason)
        attempt = Attempt(
            name,
            model,
            settings,
            window,
            incident_id=serving.incident_id,
            change={**change, "attempt": due.attempt, "refinement": True},
            base_version=change.get("base_version"),
        )
        cand = run_attempt(ctx, attempt, on_failure=lambda exc: skipped(name, exc))
        if cand is None:
            return
        log.info("refinement_result", model=name, candidate=cand.id, status=cand.status)
        if incident is not None:
            self.decide(name, model, cand, incident, len(window))

    def refreshed_start(
        self, name: str, model: ModelConfig, incident: Incident, base: str, change: dict
    ) -> dict:
        """Where the change began, asked again of the base version on every row since: never
        earlier than the serving version's estimate (the refinement's schedule counts from
        it)."""
        ctx = self.ctx
        fresh = change_start(ctx.engine, ctx.registry, name, model, incident, base_version=base)
        if fresh["seq"] <= change["seq"]:
            return {}
        log.info("refinement_change_moved", model=name, was=change["seq"], now=fresh["seq"])
        return {**fresh, "scheduled_from_seq": change["seq"]}


def skipped(name: str, exc: TrainingFailed) -> None:
    """A refinement whose worker failed waits for its next turn; the serving version stays."""
    log.info("refinement_skipped", model=name, reason=str(exc))
