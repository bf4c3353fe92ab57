"""Approvals in the config file: candidates it approves (listed ids in manual mode, any waiting
one in auto mode) are swapped in by the daemon holding the model's lease.

Auto mode does not approve a waiting candidate whose verdict asks for a person: only its id
in the approved list does. Each swap first proves the candidate on the rows labelled since its
training cut-off; one significantly worse there is refused (logged and alerted with the
figures) unless an operator forced its approval, so a direct edit of the config is held to
the same rule as `warden approve`."""

from __future__ import annotations

from collections.abc import Callable

import structlog
from sqlmodel import col, select

from correctors.swap import APPROVABLE, SwapRefused
from correctors.validation.fresh import WorseOnFreshRows
from storage.db import session_scope
from storage.tables import Candidate
from watcher.alerts.message import AlertKind, build_alert
from watcher.config import ModelConfig
from watcher.daemon.context import DaemonContext
from watcher.daemon.decisions import needs_person

log = structlog.get_logger("warden.daemon")
Swap = Callable[..., None]  # swap(candidate_id, *, actor)


class ConfigApprovals:
    def __init__(self, ctx: DaemonContext, swap: Swap) -> None:
        self.ctx, self.swap = ctx, swap

    def apply(self) -> None:
        """Swap candidates the config approves: listed ids (manual) or any waiting one (auto)."""
        ctx = self.ctx
        with session_scope(ctx.engine) as session:
            query = select(Candidate).where(col(Candidate.status).in_(APPROVABLE))
            waiting = list(session.exec(query))
        cfg = ctx.config()
        for cand in waiting:
            model = cfg.models.get(cand.model)
            if model is None or not ctx.holds(f"model:{cand.model}"):
                continue
            if approved(model, cand) and cand.status in APPROVABLE:
                self.try_swap(cand)
        for name, model in cfg.models.items():
            for cid in model.approval.approved:
                if not any(c.id == cid for c in waiting):
                    self.explain_unswappable(name, cid)

    def try_swap(self, cand: Candidate) -> None:
        try:
            self.swap(cand.id, actor="config")
        except WorseOnFreshRows as exc:
            log.error("approval_refused", candidate=cand.id, reason=str(exc))
            self.ctx.send_alert(
                build_alert(
                    AlertKind.APPROVAL_REFUSED,
                    cand.model,
                    candidate_id=cand.id,
                    severity="high",
                    summary=str(exc),
                    fresh=exc.proof.to_dict(),
                    next_action=f"the champion keeps serving; `warden approve {cand.id} --force` "
                    "overrides, `warden reject` drops the candidate",
                )
            )
        except SwapRefused as exc:
            log.error("approval_refused", candidate=cand.id, reason=str(exc))

    def explain_unswappable(self, name: str, candidate_id: str) -> None:
        with session_scope(self.ctx.engine) as session:
            cand = session.get(Candidate, candidate_id)
        if cand is None:
            log.warning("approval_unknown_candidate", model=name, candidate=candidate_id)
        elif cand.status == "withdrawn":
            log.warning(
                "approval_not_possible",
                model=name,
                candidate=candidate_id,
                status=cand.status,
                reason="withdrawn: the incident it was made for resolved by itself",
            )
        elif cand.status not in ("active", "retired", "rolled_back"):
            log.warning(
                "approval_not_possible",
                model=name,
                candidate=candidate_id,
                status=cand.status,
                reason="only validated candidates can be swapped in",
            )


def approved(model: ModelConfig, cand: Candidate) -> bool:
    """Listed in the approved ids, or (auto mode) waiting without asking for a person."""
    if cand.id in model.approval.approved:
        return True
    return model.approval.mode == "auto" and not needs_person(cand.verdict)
