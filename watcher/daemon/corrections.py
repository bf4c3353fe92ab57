"""Correction orchestration: when open incidents have enough labelled errors, train a
candidate (in the worker process), then reject it, await approval, or swap it in."""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog

from correctors.pipeline import Attempt, TrainingFailed, train_candidate
from correctors.swap import await_approval, swap
from correctors.training.dataset import NothingToCorrect
from storage.db import session_scope
from storage.queries import recent_window
from storage.tables import Candidate, Incident
from watcher.alerts.message import build_alert
from watcher.checks.incidents import (
    MAX_CORRECTION_ATTEMPTS,
    mark_covered,
    mark_for_retry,
    open_incidents,
)
from watcher.config import ModelConfig
from watcher.daemon.attempts import plan
from watcher.daemon.change_start import change_start, served_errors
from watcher.daemon.refinement import maybe_refine

if TYPE_CHECKING:
    from watcher.daemon.service import Daemon

log = structlog.get_logger("warden.daemon")
ACTIONABLE = ("error", "bias")  # drift alone never starts a correction
DRIFT_ONLY = "drift without quality impact is watched, not corrected"


class Corrections:
    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon

    def next_action(self, name: str, model: ModelConfig, incident: Incident | None = None) -> str:
        """What an incident's alert says happens next."""
        if not model.correction.enabled:
            return "nothing: correction is disabled for this model"
        if incident is not None and incident.kind not in ACTIONABLE:
            others = [i for i in open_incidents(self.daemon.engine, name) if i.kind in ACTIONABLE]
            if not others:
                return f"nothing yet: {DRIFT_ONLY}; a correction starts if quality drops"
        errors = self.labelled_errors(name, model)
        if errors >= model.correction.min_flagged:
            return f"correction started ({errors} labelled errors to learn from)"
        return (
            f"correction waits for labels: {errors} of {model.correction.min_flagged} labelled "
            "errors so far"
        )

    def labelled_errors(self, name: str, model: ModelConfig, window=None) -> int:
        """Labelled rows the serving version got wrong (regression: |error| above twice the
        reference MAE), the material a correction learns from; reads the labelled window
        unless the caller already has it."""
        d = self.daemon
        active = d.registry.active(name)
        if window is None:
            window = recent_window(d.engine, name, model.checks.window, labelled_only=True)
        served = window[window["model_version"] == active]
        return int(served_errors(d.registry, name, model, served, active).sum())

    def maybe_correct(self, name: str, model: ModelConfig) -> None:
        """Correct for open error or bias incidents (drift alone is watched, not corrected),
        on the labelled rows since the change, when the attempt plan says it is due."""
        d, settings = self.daemon, model.correction
        if not settings.enabled:
            return
        incidents = open_incidents(d.engine, name)
        actionable = [i for i in incidents if i.kind in ACTIONABLE]
        if not actionable:
            if incidents:
                log.info("correction_not_needed", model=name, reason=DRIFT_ONLY)
            maybe_refine(self, name, model)
            return
        primary = next((i for i in actionable if i.kind == "error"), actionable[0])
        change = change_start(d.engine, d.registry, name, model, primary)
        window = recent_window(
            d.engine, name, settings.max_rows, labelled_only=True, start_seq=change["seq"]
        )
        due = plan(d.engine, primary, len(window), settings)
        if not due.due:
            log.info("correction_not_due", model=name, incident=primary.id, reason=due.reason)
            if due.serving:
                maybe_refine(self, name, model)
            return
        errors = self.labelled_errors(name, model, window)
        if errors < settings.min_flagged:
            log.info(
                "correction_waiting",
                model=name,
                labelled_errors=errors,
                needed=settings.min_flagged,
                since_seq=change["seq"],
            )
            return
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
            attempt=due.attempt,
            why=due.reason,
            since_seq=change["seq"],
            change_method=change["method"],
            labelled_rows=len(window),
            labelled_errors=errors,
            drifted_columns=drifted,
        )
        try:
            attempt = Attempt(
                name,
                model,
                settings,
                window,
                incident_id=primary.id,
                drifted_columns=tuple(drifted),
                flagged_ids=frozenset(i for inc in incidents for i in (inc.flagged_ids or [])),
                focus_group=focus_group(actionable),
                change={**change, "attempt": due.attempt},
                base_version=str(window["model_version"].iloc[0]),
            )
            cand = train_candidate(d.engine, d.registry, attempt, on_epoch=d.on_epoch)
        except NothingToCorrect as exc:
            log.info("correction_skipped", model=name, reason=str(exc))
            return
        except TrainingFailed as exc:  # the worker died, not us: retry at a later round
            attempts = mark_for_retry(d.engine, [i.id for i in incidents], str(exc))
            log.error("correction_failed", model=name, reason=str(exc), attempts=attempts)
            d.send_alert(
                build_alert(
                    "correction_failed",
                    name,
                    incident_id=primary.id,
                    severity="high",
                    summary=f"training failed: {exc}",
                    next_action=(
                        f"retrying at the next check round (attempt {attempts} of "
                        f"{MAX_CORRECTION_ATTEMPTS})"
                        if attempts < MAX_CORRECTION_ATTEMPTS
                        else "no more automatic retries: check correction budgets and the log"
                    ),
                )
            )
            return
        mark_covered(d.engine, [i.id for i in incidents], cand.id)
        log.info(
            "candidate_result",
            model=name,
            candidate=cand.id,
            status=cand.status,
            strategy=(cand.training or {}).get("strategy"),
            reasons=cand.verdict.get("reasons"),
        )
        self.decide(name, model, cand, primary, len(window))

    def next_attempt(self, incident: Incident, settings, rows_now: int) -> str:
        """What a rejection's alert says comes next."""
        due = plan(self.daemon.engine, incident, rows_now, settings)
        hint = f"`warden retry {incident.id}` starts another attempt at the next round"
        if due.exhausted:
            return f"no more automatic attempts ({due.reason}); {hint}"
        if due.needed_rows is not None:
            return (
                f"attempt {due.attempt} of {settings.max_attempts} once {due.needed_rows} "
                f"labelled rows since the change have arrived (now {rows_now}); or {hint}"
            )
        return f"attempt {due.attempt} of {settings.max_attempts} at the next round"

    def decide(
        self, name: str, model: ModelConfig, cand: Candidate, incident: Incident, rows: int
    ) -> None:
        """A rejected candidate is reported; a validated one is swapped (auto) or awaits."""
        d, incident_id = self.daemon, incident.id
        metrics = {"champion": cand.champion_metrics, "candidate": cand.candidate_metrics}
        if cand.status != "validated" and (cand.training or {}).get("change", {}).get("refinement"):
            log.info("correction_converged", model=name, candidate=cand.id)
        elif cand.status != "validated":
            d.send_alert(
                build_alert(
                    "candidate_rejected",
                    name,
                    candidate_id=cand.id,
                    incident_id=incident_id,
                    reasons=cand.verdict.get("reasons"),
                    metrics=metrics,
                    strategies=(cand.training or {}).get("strategies", []),
                    next_action="the champion keeps serving; "
                    + self.next_attempt(incident, model.correction, rows),
                )
            )
        elif model.approval.mode == "auto":
            self.swap(cand.id, actor="daemon")
        else:
            await_approval(d.engine, cand.id)
            d.send_alert(
                build_alert(
                    "awaiting_approval",
                    name,
                    candidate_id=cand.id,
                    incident_id=incident_id,
                    reasons=cand.verdict.get("reasons"),
                    metrics=metrics,
                    next_action=f'add "{cand.id}" to models.{name}.approval.approved in '
                    f"{d.config_path} to swap it in",
                )
            )

    def swap(self, candidate_id: str, *, actor: str) -> None:
        d = self.daemon
        with session_scope(d.engine) as session:
            model_name = session.get(Candidate, candidate_id).model
        model = d.cfg.models.get(model_name)
        watch = model.approval.watch_checks if model is not None else 0
        cand = swap(d.engine, d.registry, candidate_id, actor=actor, watch_checks=watch)
        log.info("swapped", model=cand.model, candidate=cand.id, version=cand.version, actor=actor)
        d.send_alert(
            build_alert(
                "swapped",
                cand.model,
                candidate_id=cand.id,
                version=cand.version,
                actor=actor,
                next_action=f"serving {cand.version}; `warden rollback {cand.model}` restores the "
                "previous version",
            )
        )


def focus_group(incidents) -> tuple[str, str] | None:
    """The disadvantaged group of the worst open bias incident, for the corrector to target."""
    for incident in incidents:
        failures = (incident.figures or {}).get("failures") if incident.kind == "bias" else None
        if failures:
            return failures[0]["attribute"], str(failures[0]["disadvantaged"])
    return None
