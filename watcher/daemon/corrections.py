"""Correction orchestration: when open incidents have enough labelled errors, train a
candidate (in the worker process), then reject it, await approval, or swap it in."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
import structlog

from correctors.pipeline import Attempt, TrainingFailed
from storage.queries import recent_window
from storage.tables import Incident
from watcher.alerts.message import build_alert
from watcher.checks.incidents import mark_covered, mark_for_retry, open_incidents
from watcher.config import ModelConfig
from watcher.daemon.attempts import Plan, plan
from watcher.daemon.change_start import change_start, served_errors
from watcher.daemon.context import DaemonContext
from watcher.daemon.decisions import Decide
from watcher.daemon.training import run_attempt

log = structlog.get_logger("warden.daemon")
ACTIONABLE = ("error", "bias")  # drift alone never starts a correction
DRIFT_ONLY = "drift without quality impact is watched, not corrected"
Refine = Callable[[str, ModelConfig], None]


@dataclass(frozen=True)
class Due:
    """An attempt that is due: where the change began, the labelled rows since, the plan."""

    change: dict
    window: pd.DataFrame
    plan: Plan
    errors: int  # labelled errors of the serving version in `window`


class Corrections:
    def __init__(self, ctx: DaemonContext, *, decide: Decide, refine: Refine) -> None:
        self.ctx, self.decide, self.refine = ctx, decide, refine

    def next_action(self, name: str, model: ModelConfig, incident: Incident | None = None) -> str:
        """What an incident's alert says happens next."""
        if not model.correction.enabled:
            return "nothing: correction is disabled for this model"
        if incident is not None and incident.kind not in ACTIONABLE:
            others = [i for i in open_incidents(self.ctx.engine, name) if i.kind in ACTIONABLE]
            if not others:
                return f"nothing yet: {DRIFT_ONLY}; a correction starts if quality drops"
        errors = self.labelled_errors(name, model)
        if errors >= model.correction.min_flagged:
            return f"correction started ({errors} labelled errors to learn from)"
        return (
            f"correction waits for labels: {errors} of {model.correction.min_flagged} labelled "
            "errors so far"
        )

    def waiting_action(self, incident: Incident) -> str:
        """An incident page's next action while no candidate exists (the alert's words)."""
        model = self.ctx.config().models[incident.model]
        return self.next_action(incident.model, model, incident)

    def labelled_errors(self, name: str, model: ModelConfig, window=None) -> int:
        """Labelled rows the serving version got wrong (regression: |error| above twice the
        reference MAE), the material a correction learns from; reads the labelled window
        unless the caller already has it."""
        ctx = self.ctx
        active = ctx.registry.active(name)
        if active is None:
            return 0
        if window is None:
            window = recent_window(ctx.engine, name, model.checks.window, labelled_only=True)
        served = window[window["model_version"] == active]
        return int(served_errors(ctx.registry, name, model, served, active).sum())

    def maybe_correct(self, name: str, model: ModelConfig) -> None:
        """Correct for open error or bias incidents (drift alone is watched, not corrected),
        on the labelled rows since the change, when the attempt plan says it is due."""
        if not model.correction.enabled:
            return
        incidents = open_incidents(self.ctx.engine, name)
        actionable = [i for i in incidents if i.kind in ACTIONABLE]
        if not actionable:
            if incidents:
                log.info("correction_not_needed", model=name, reason=DRIFT_ONLY)
            self.refine(name, model)
            return
        primary = next((i for i in actionable if i.kind == "error"), actionable[0])
        due = self.due(name, model, primary)
        if due is None:
            return
        attempt = self.attempt(name, model, incidents, primary, due)
        cand = run_attempt(
            self.ctx,
            attempt,
            on_failure=lambda exc: self.failed(name, model, incidents, primary, due, exc),
        )
        if cand is None:
            return
        mark_covered(self.ctx.engine, [i.id for i in incidents if i.id is not None], cand.id)
        log.info(
            "candidate_result",
            model=name,
            candidate=cand.id,
            status=cand.status,
            strategy=(cand.training or {}).get("strategy"),
            reasons=cand.verdict.get("reasons"),
        )
        self.decide(name, model, cand, primary, len(due.window))

    def due(self, name: str, model: ModelConfig, primary: Incident) -> Due | None:
        """The attempt for `primary`, if the plan says it is due and the rows since the change
        hold enough labelled errors; otherwise None (logged; a covered incident whose
        candidate serves may be refined instead)."""
        ctx, settings = self.ctx, model.correction
        change = change_start(ctx.engine, ctx.registry, name, model, primary)
        window = recent_window(
            ctx.engine, name, settings.max_rows, labelled_only=True, start_seq=change["seq"]
        )
        due = plan(ctx.engine, primary, len(window), settings)
        if not due.due:
            log.info("correction_not_due", model=name, incident=primary.id, reason=due.reason)
            if due.serving:
                self.refine(name, model)
            return None
        errors = self.labelled_errors(name, model, window)
        if errors < settings.min_flagged:
            log.info(
                "correction_waiting",
                model=name,
                labelled_errors=errors,
                needed=settings.min_flagged,
                since_seq=change["seq"],
            )
            return None
        return Due(change, window, due, errors)

    def attempt(
        self, name: str, model: ModelConfig, incidents: list[Incident], primary: Incident, due: Due
    ) -> Attempt:
        """The first attempt (or a retry) for the open incidents, as `train_candidate` takes it."""
        drifted = sorted(
            {
                c
                for i in incidents
                if i.kind == "drift"
                for c in i.figures.get("drifted_columns", [])
            }
        )
        log.info(
            "correction_started",
            model=name,
            incident=primary.id,
            attempt=due.plan.attempt,
            why=due.plan.reason,
            since_seq=due.change["seq"],
            change_method=due.change["method"],
            labelled_rows=len(due.window),
            labelled_errors=due.errors,
            drifted_columns=drifted,
        )
        return Attempt(
            name,
            model,
            model.correction,
            due.window,
            incident_id=primary.id,
            drifted_columns=tuple(drifted),
            flagged_ids=frozenset(i for inc in incidents for i in (inc.flagged_ids or [])),
            focus_group=focus_group([i for i in incidents if i.kind in ACTIONABLE]),
            change={**due.change, "attempt": due.plan.attempt},
            base_version=str(due.window["model_version"].iloc[0]),
        )

    def failed(
        self,
        name: str,
        model: ModelConfig,
        incidents: list[Incident],
        primary: Incident,
        due: Due,
        exc: TrainingFailed,
    ) -> None:
        """The worker died, not us: the failure counts as an attempt, retried next round."""
        ids = [i.id for i in incidents if i.id is not None]
        failures = mark_for_retry(self.ctx.engine, ids, str(exc))
        log.error("correction_failed", model=name, reason=str(exc), attempts=failures)
        used, limit = due.plan.attempt, model.correction.max_attempts
        self.ctx.send_alert(
            build_alert(
                "correction_failed",
                name,
                incident_id=primary.id,
                severity="high",
                summary=f"training failed: {exc}",
                next_action=(
                    f"retrying at the next check round (attempt {used + 1} of {limit}, "
                    "correction.max_attempts)"
                    if used < limit
                    else f"no more automatic attempts ({used} of {limit} used): check the "
                    f"correction budgets and the log; `warden retry {primary.id}` allows one more"
                ),
            )
        )


def focus_group(incidents: list[Incident]) -> tuple[str, str] | None:
    """The disadvantaged group of the worst open bias incident, for the corrector to target."""
    for incident in incidents:
        failures = (incident.figures or {}).get("failures") if incident.kind == "bias" else None
        if failures:
            return failures[0]["attribute"], str(failures[0]["disadvantaged"])
    return None
