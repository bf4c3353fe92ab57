"""Approval, swap, rejection and rollback: registry pointer + candidate status + audit event.

Only `validated` or `awaiting_approval` candidates can go live; a `withdrawn` one (its
incident healed by itself) never can. The registry's ACTIVE pointer is
written atomically before the database records it, so serving never points at a missing model.
"""

from __future__ import annotations

from sqlalchemy import Engine
from sqlmodel import col, select

from storage.audit import record_event
from storage.db import session_scope
from storage.registry import ModelRegistry, RegistryError
from storage.tables import Candidate, CandidateStatus, Event, Incident, utcnow

APPROVABLE = (CandidateStatus.VALIDATED.value, CandidateStatus.AWAITING_APPROVAL.value)
# not yet swapped: what a healed incident's candidates can be withdrawn from
WITHDRAWABLE = (CandidateStatus.TRAINING.value, *APPROVABLE)
WITHDRAWN_EVENT = "candidate_withdrawn"


class SwapRefused(RuntimeError):
    """The requested transition is not allowed; the message says why."""


def await_approval(engine: Engine, candidate_id: str) -> Candidate:
    """Manual mode: park a validated candidate until an operator approves it in config."""
    with session_scope(engine) as session:
        cand = _get(session, candidate_id)
        if cand.status != CandidateStatus.VALIDATED:
            raise SwapRefused(f"{candidate_id} is {cand.status}, not validated")
        cand.status, cand.updated_at = CandidateStatus.AWAITING_APPROVAL.value, utcnow()
        session.add(cand)
        record_event(
            session, "awaiting_approval", actor="daemon", model=cand.model, subject=candidate_id
        )
    return cand


def swap(
    engine: Engine,
    registry: ModelRegistry,
    candidate_id: str,
    *,
    actor: str,
    watch_checks: int = 0,
) -> Candidate:
    """Make a validated candidate the serving version; retire the one it replaces. The new
    champion is then watched for `watch_checks` judged quality checks (see the daemon)."""
    with session_scope(engine) as session:
        cand = _get(session, candidate_id)
        if cand.status not in APPROVABLE:
            raise SwapRefused(
                f"{candidate_id} is {cand.status}: only validated candidates can be swapped in"
            )
        previous = registry.active(cand.model)
        try:  # verifies the ONNX file against the card's sha256 first
            registry.activate(cand.model, cand.version, actor=actor)
        except RegistryError as exc:
            raise SwapRefused(f"{candidate_id} cannot go live: {exc}") from exc
        now = utcnow()
        for old in session.exec(
            select(Candidate).where(
                Candidate.model == cand.model, Candidate.status == CandidateStatus.ACTIVE.value
            )
        ):
            old.status, old.updated_at = CandidateStatus.RETIRED.value, now
            session.add(old)
        cand.status, cand.updated_at = CandidateStatus.ACTIVE.value, now
        cand.watch_checks_left = watch_checks
        session.add(cand)
        for incident in session.exec(
            select(Incident).where(Incident.model == cand.model, Incident.status == "open")
        ):
            incident.status, incident.resolved_at, incident.updated_at = "corrected", now, now
            session.add(incident)
        record_event(
            session,
            "swapped",
            actor=actor,
            model=cand.model,
            subject=candidate_id,
            previous_version=previous,
            version=cand.version,
        )
    return cand


def reject(engine: Engine, candidate_id: str, *, actor: str, reason: str) -> Candidate:
    with session_scope(engine) as session:
        cand = _get(session, candidate_id)
        if cand.status not in APPROVABLE:
            raise SwapRefused(f"{candidate_id} is {cand.status}: nothing to reject")
        cand.status, cand.updated_at = CandidateStatus.REJECTED.value, utcnow()
        session.add(cand)
        record_event(
            session,
            "candidate_rejected",
            actor=actor,
            model=cand.model,
            subject=candidate_id,
            reasons=[reason],
        )
    return cand


def withdraw(engine: Engine, candidate_id: str, *, reason: str, incident_id: int | None) -> bool:
    """The incident a candidate was made for resolved by itself: the candidate can no longer
    be approved. False when it had left WITHDRAWABLE meanwhile (nothing changed)."""
    with session_scope(engine) as session:
        cand = _get(session, candidate_id)
        if cand.status not in WITHDRAWABLE:
            return False
        previous = cand.status
        cand.status, cand.updated_at = CandidateStatus.WITHDRAWN.value, utcnow()
        session.add(cand)
        record_event(
            session,
            WITHDRAWN_EVENT,
            actor="daemon",
            model=cand.model,
            subject=candidate_id,
            reason=reason,
            incident_id=incident_id,
            previous_status=previous,
        )
    return True


def withdrawal_reason(engine: Engine, candidate_id: str) -> str | None:
    """Why a candidate was withdrawn (its event's reason), or None."""
    with session_scope(engine) as session:
        event = session.exec(
            select(Event)
            .where(Event.kind == WITHDRAWN_EVENT, Event.subject == candidate_id)
            .order_by(col(Event.id).desc())
        ).first()
        return None if event is None else str(event.detail.get("reason", ""))


def rollback(engine: Engine, registry: ModelRegistry, model: str, *, actor: str) -> tuple[str, str]:
    """Restore the version that served before the current one; returns (from, to)."""
    current, target = registry.rollback(model, actor=actor)
    with session_scope(engine) as session:
        now = utcnow()
        for cand in session.exec(select(Candidate).where(Candidate.model == model)):
            if cand.version == current and cand.status == CandidateStatus.ACTIVE:
                cand.status, cand.updated_at = CandidateStatus.ROLLED_BACK.value, now
                cand.watch_checks_left = 0
                session.add(cand)
            elif cand.version == target:
                cand.status, cand.updated_at = CandidateStatus.ACTIVE.value, now
                cand.watch_checks_left = 0
                session.add(cand)
        record_event(
            session,
            "rolled_back",
            actor=actor,
            model=model,
            subject=current,
            restored_version=target,
        )
    return current, target


def _get(session, candidate_id: str) -> Candidate:
    cand = session.get(Candidate, candidate_id)
    if cand is None:
        raise SwapRefused(f"no candidate with id {candidate_id!r}")
    return cand
