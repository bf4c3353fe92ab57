"""What follows a trained candidate: a rejected one is reported (with what comes next), a
validated one is swapped in (approval mode auto) or awaits an operator's approval."""

from __future__ import annotations

from collections.abc import Callable

import structlog

from correctors.settings import CorrectionConfig
from correctors.swap import await_approval, swap
from storage.db import session_scope
from storage.tables import Candidate, Incident
from watcher.alerts.message import build_alert
from watcher.config import ModelConfig
from watcher.daemon.attempts import plan
from watcher.daemon.context import DaemonContext

log = structlog.get_logger("warden.daemon")
# decide(model name, model config, candidate, incident, labelled rows since the change)
Decide = Callable[[str, ModelConfig, Candidate, Incident, int], None]


class Decisions:
    def __init__(self, ctx: DaemonContext) -> None:
        self.ctx = ctx

    def decide(
        self, name: str, model: ModelConfig, cand: Candidate, incident: Incident, rows: int
    ) -> None:
        """A rejected candidate is reported; a validated one is swapped (auto) or awaits."""
        training = cand.training or {}
        if cand.status != "validated" and training.get("change", {}).get("refinement"):
            log.info("correction_converged", model=name, candidate=cand.id)
        elif cand.status != "validated":
            next_action = "the champion keeps serving; " + self.next_attempt(
                incident, model.correction, rows
            )
            strategies = training.get("strategies", [])
            self.ctx.send_alert(
                self._alert(
                    "candidate_rejected", name, cand, incident, next_action, strategies=strategies
                )
            )
        elif model.approval.mode == "auto":
            self.swap(cand.id, actor="daemon")
        else:
            await_approval(self.ctx.engine, cand.id)
            next_action = (
                f'add "{cand.id}" to models.{name}.approval.approved in '
                f"{self.ctx.config_path} to swap it in"
            )
            self.ctx.send_alert(self._alert("awaiting_approval", name, cand, incident, next_action))

    @staticmethod
    def _alert(
        kind: str, name: str, cand: Candidate, incident: Incident, next_action: str, **extra
    ) -> dict:
        return build_alert(
            kind,
            name,
            candidate_id=cand.id,
            incident_id=incident.id,
            reasons=cand.verdict.get("reasons"),
            metrics={"champion": cand.champion_metrics, "candidate": cand.candidate_metrics},
            **extra,
            next_action=next_action,
        )

    def next_attempt(self, incident: Incident, settings: CorrectionConfig, rows_now: int) -> str:
        """What a rejection's alert says comes next."""
        due = plan(self.ctx.engine, incident, rows_now, settings)
        hint = f"`warden retry {incident.id}` starts another attempt at the next round"
        if due.exhausted:
            return f"no more automatic attempts ({due.reason}); {hint}"
        if due.needed_rows is not None:
            return (
                f"attempt {due.attempt} of {settings.max_attempts} once {due.needed_rows} "
                f"labelled rows since the change have arrived (now {rows_now}); or {hint}"
            )
        return f"attempt {due.attempt} of {settings.max_attempts} at the next round"

    def swap(self, candidate_id: str, *, actor: str) -> None:
        """Swap a validated candidate in (the daemon, or an approval in the config)."""
        ctx = self.ctx
        with session_scope(ctx.engine) as session:
            found = session.get(Candidate, candidate_id)
            model_name = found.model if found is not None else None
        model = ctx.config().models.get(model_name) if model_name is not None else None
        watch = model.approval.watch_checks if model is not None else 0
        cand = swap(ctx.engine, ctx.registry, candidate_id, actor=actor, watch_checks=watch)
        log.info("swapped", model=cand.model, candidate=cand.id, version=cand.version, actor=actor)
        ctx.send_alert(
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
