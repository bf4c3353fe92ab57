"""Approvals in the config file: candidates it approves (listed ids in manual mode, any waiting
one in auto mode) are swapped in by the daemon holding the model's lease."""

from __future__ import annotations

from collections.abc import Callable

import structlog
from sqlmodel import col, select

from correctors.swap import APPROVABLE, SwapRefused
from storage.db import session_scope
from storage.tables import Candidate
from watcher.daemon.context import DaemonContext

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
            approved = model.approval.mode == "auto" or cand.id in model.approval.approved
            if approved and cand.status in APPROVABLE:
                try:
                    self.swap(cand.id, actor="config")
                except SwapRefused as exc:
                    log.error("approval_refused", candidate=cand.id, reason=str(exc))
        for name, model in cfg.models.items():
            for cid in model.approval.approved:
                if not any(c.id == cid for c in waiting):
                    self.explain_unswappable(name, cid)

    def explain_unswappable(self, name: str, candidate_id: str) -> None:
        with session_scope(self.ctx.engine) as session:
            cand = session.get(Candidate, candidate_id)
        if cand is None:
            log.warning("approval_unknown_candidate", model=name, candidate=candidate_id)
        elif cand.status not in ("active", "retired", "rolled_back"):
            log.warning(
                "approval_not_possible",
                model=name,
                candidate=candidate_id,
                status=cand.status,
                reason="only validated candidates can be swapped in",
            )
