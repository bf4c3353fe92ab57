"""Candidates follow their incident: when an incident resolves by itself (quality back within
its bound for `checks.resolve_after` clean checks), the candidates made for it and not yet
swapped are withdrawn. A change that was a passing segment is not the new normal, and a
candidate fitted to it would break the rest once the segment has gone.

A candidate stays while another open error or bias incident it was made for (it covers
several) is still open; drift alone never holds it, as drift alone never starts a correction.
A swap marks its incidents `corrected`, not `resolved`, so a serving candidate's incident never
withdraws anything.
"""

from __future__ import annotations

import structlog
from sqlmodel import col, select

from correctors.swap import WITHDRAWABLE, withdraw
from storage.db import session_scope
from storage.tables import Candidate, Incident
from watcher.alerts.message import AlertKind, build_alert
from watcher.config import ModelConfig
from watcher.daemon.context import DaemonContext

log = structlog.get_logger("warden.daemon")
QUALITY = ("error", "bias")  # the incidents a correction is made for


def healed(session, model: str) -> list[tuple[Candidate, Incident]]:
    """Not-yet-swapped candidates of `model` whose incident resolved by itself and which no
    open incident still waits on."""
    pending = session.exec(
        select(Candidate).where(
            Candidate.model == model,
            col(Candidate.status).in_(WITHDRAWABLE),
            col(Candidate.incident_id).is_not(None),
        )
    ).all()
    found = []
    for cand in pending:
        incident = session.get(Incident, cand.incident_id)
        if incident is None or incident.status != "resolved":
            continue
        still_open = session.exec(
            select(Incident).where(
                Incident.model == model,
                Incident.status == "open",
                Incident.candidate_id == cand.id,
                col(Incident.kind).in_(QUALITY),
            )
        ).first()
        if still_open is None:
            session.expunge(cand)
            session.expunge(incident)
            found.append((cand, incident))
    return found


class Withdrawals:
    def __init__(self, ctx: DaemonContext) -> None:
        self.ctx = ctx

    def withdraw_healed(self, name: str, model: ModelConfig) -> None:
        """After a round's incidents are recorded: withdraw the healed incidents' candidates,
        each with an event and a `candidate_withdrawn` alert giving the reason."""
        with session_scope(self.ctx.engine) as session:
            found = healed(session, name)
        for cand, incident in found:
            reason = (
                f"incident {incident.id} ({incident.kind}) resolved by itself after "
                f"{incident.clean_checks} clean checks (checks.resolve_after "
                f"{model.checks.resolve_after}): the change it was made for has passed"
            )
            if not withdraw(self.ctx.engine, cand.id, reason=reason, incident_id=incident.id):
                continue
            log.info("candidate_withdrawn", model=name, candidate=cand.id, reason=reason)
            self.ctx.send_alert(
                build_alert(
                    AlertKind.CANDIDATE_WITHDRAWN,
                    name,
                    candidate_id=cand.id,
                    incident_id=incident.id,
                    summary=f"{cand.id} withdrawn: {reason}",
                    reason=reason,
                    next_action=f"nothing: the champion keeps serving; {cand.id} can no longer "
                    "be approved",
                )
            )
