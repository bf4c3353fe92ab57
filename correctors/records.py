"""A candidate's row and audit events: written first (status `training`), every later state an
update plus an event, so a crash mid-way leaves a visible trace rather than nothing."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine

from storage.audit import record_event
from storage.db import session_scope
from storage.tables import Candidate, CandidateStatus, utcnow


def unused_version(engine: Engine, model: str, first: str) -> str:
    """`first` (the registry's next version), or the next one no candidate row holds yet: an
    attempt whose training failed leaves its row (status `failed`) but no version directory."""
    number = int(first[1:])
    with session_scope(engine) as session:
        while session.get(Candidate, f"{model}-v{number}") is not None:
            number += 1
    return f"v{number}"


def open_candidate(
    engine: Engine,
    model: str,
    version: str,
    parent: str,
    incident_id: int | None,
    counts: dict,
) -> str:
    """Write the candidate's row (status `training`) and its event; return its id."""
    candidate_id = f"{model}-{version}"
    with session_scope(engine) as session:
        session.add(
            Candidate(
                id=candidate_id,
                model=model,
                version=version,
                parent_version=parent,
                incident_id=incident_id,
                status=CandidateStatus.TRAINING.value,
                training=counts,
            )
        )
        record_event(
            session,
            f"candidate_{CandidateStatus.TRAINING}",
            actor="daemon",
            model=model,
            subject=candidate_id,
            incident_id=incident_id,
            **counts,
        )
    return candidate_id


def update(engine: Engine, candidate_id: str, **fields: Any) -> Candidate:
    with session_scope(engine) as session:
        row = session.get(Candidate, candidate_id)
        if row is None:
            raise LookupError(f"no candidate {candidate_id!r}")
        for key, value in fields.items():
            setattr(row, key, value)
        row.updated_at = utcnow()
        session.add(row)
    return row


def settle(
    engine: Engine,
    model: str,
    candidate_id: str,
    status: CandidateStatus,
    reasons: list[str],
    **fields: Any,
) -> Candidate:
    """Set the candidate's final status (with `fields`) and record the event with its reasons."""
    row = update(engine, candidate_id, status=status.value, **fields)
    with session_scope(engine) as s:
        record_event(
            s,
            f"candidate_{status}",
            actor="daemon",
            model=model,
            subject=candidate_id,
            reasons=reasons,
        )
    return row


def finish(
    engine: Engine, model: str, candidate_id: str, status: CandidateStatus, reason: str
) -> Candidate:
    """End a candidate that never reached the gate (`rejected` or `failed`), with its reason."""
    verdict = {"passed": False, "reasons": [reason], "rules": []}
    return settle(engine, model, candidate_id, status, [reason], verdict=verdict)
