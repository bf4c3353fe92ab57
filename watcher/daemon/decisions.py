"""What follows a trained candidate: a rejected one is reported (with what comes next), a
validated one is swapped in (approval mode auto) or awaits an operator's approval.

In auto mode a validated candidate still awaits a person when its verdict says it needs one
(`needs_person`: a gate rule passed but asks for a person, e.g. a large loss on the full
reference while much of it was excluded), or when it is significantly worse than the champion
on the rows labelled since its training cut-off (`correctors.validation.fresh`); the alert
says why, with the figures. Every swap makes that fresh-row proof first, unless an operator
forced the approval (`warden approve --force`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from correctors.settings import CorrectionConfig
from correctors.swap import await_approval, swap
from correctors.validation.fresh import FreshProof, WorseOnFreshRows
from storage.db import session_scope
from storage.tables import Candidate, Incident
from watcher.alerts.message import build_alert
from watcher.config import ModelConfig
from watcher.daemon.approvals import fresh_proof, was_forced
from watcher.daemon.attempts import plan
from watcher.daemon.context import DaemonContext

log = structlog.get_logger("warden.daemon")
# decide(model name, model config, candidate, incident, labelled rows since the change)
Decide = Callable[[str, ModelConfig, Candidate, Incident, int], None]
NEEDS_PERSON = "needs_person"


def needs_person(verdict: dict | None) -> list[dict]:
    """The rule results of a stored verdict that passed but ask for a person (status
    "needs_person": today the full-reference rule, when the candidate loses on the whole
    reference holdout while much of it left the guard)."""
    rules = (verdict or {}).get("rules", [])
    return [r for r in rules if isinstance(r, dict) and r.get("status") == NEEDS_PERSON]


@dataclass(frozen=True)
class Hold:
    """Why a validated candidate waits for a person, and the figures that say so."""

    why: str
    figures: list[Any]

    @classmethod
    def asked(cls, asks: list[dict]) -> Hold:
        """The verdict's rules that ask for a person."""
        why = "the gate asks for a person: " + "; ".join(str(r.get("message")) for r in asks)
        return cls(why, [r.get("figures") for r in asks])

    @classmethod
    def fresh(cls, proof: FreshProof) -> Hold:
        """Worse than the champion on the rows labelled since the cut-off."""
        return cls("worse than the champion on fresh rows: " + proof.sentence(), [proof.to_dict()])


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
            self.auto(name, cand, incident)
        else:
            asks = needs_person(cand.verdict)
            self.park(name, cand, incident, Hold.asked(asks) if asks else None)

    def auto(self, name: str, cand: Candidate, incident: Incident) -> None:
        """Approval mode auto: swap, unless the verdict needs a person or the fresh rows say
        the candidate is worse (then it awaits approval, and the alert says why)."""
        asks = needs_person(cand.verdict)
        if asks:
            self.park(name, cand, incident, Hold.asked(asks))
            return
        try:
            self.swap(cand.id, actor="daemon")
        except WorseOnFreshRows as exc:
            self.park(name, cand, incident, Hold.fresh(exc.proof))

    def park(self, name: str, cand: Candidate, incident: Incident, hold: Hold | None) -> None:
        """The candidate awaits an operator's approval; the alert says why when the daemon
        holds it for a person (`hold`)."""
        await_approval(self.ctx.engine, cand.id)
        next_action = (
            f'add "{cand.id}" to models.{name}.approval.approved in '
            f"{self.ctx.config_path} to swap it in"
        )
        extra = {} if hold is None else {"why": hold.why, "why_figures": hold.figures}
        if hold is not None:
            next_action = f"a person decides ({hold.why}); {next_action}"
            log.warning("awaiting_a_person", model=name, candidate=cand.id, why=hold.why)
        self.ctx.send_alert(
            self._alert("awaiting_approval", name, cand, incident, next_action, **extra)
        )

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
        """Swap a validated candidate in (the daemon, or an approval in the config), once the
        rows labelled since its cut-off do not say it is worse (WorseOnFreshRows otherwise),
        unless an operator forced its approval."""
        ctx = self.ctx
        with session_scope(ctx.engine) as session:
            found = session.get(Candidate, candidate_id)
            if found is not None:
                session.expunge(found)
        model = ctx.config().models.get(found.model) if found is not None else None
        if found is not None and model is not None and not was_forced(ctx.engine, found.id):
            proof = fresh_proof(ctx.engine, ctx.registry, found, model)
            if proof.significantly_worse:
                raise WorseOnFreshRows(candidate_id, proof)
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
