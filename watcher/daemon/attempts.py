"""When does an incident get (another) correction attempt?

An incident's attempts are the candidates made for it. A validated, waiting or serving
candidate covers the incident. After a rejected, failed or rolled-back one, the next attempt
comes once the labelled rows since the change have grown by `correction.retry_growth` (or by
`retry_after_rows`) over what the last attempt had — more of the new truth, a sharper gate —
or at once after a worker failure. Both kinds count towards `correction.max_attempts` (a
rejected attempt, and one whose training worker failed: `Incident.correction_attempts`); then
a person is needed. An operator's `warden retry INCIDENT` (an event) allows one more attempt
at the next round.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlmodel import col, select

from correctors.settings import CorrectionConfig
from storage.audit import record_event
from storage.db import session_scope
from storage.tables import Candidate, Event, Incident

COVERING = ("training", "validated", "awaiting_approval", "active")
RETRY_REQUESTED = "correction_retry_requested"
CONVERGED_AFTER = 2  # refinements in a row that do not beat the serving version


@dataclass(frozen=True)
class Plan:
    due: bool
    attempt: int  # the number the next attempt would have (1-based)
    reason: str  # why (not) now, in words an alert can carry
    needed_rows: int | None = None  # rows since the change the next attempt waits for
    exhausted: bool = False  # max_attempts reached: a person is needed
    serving: bool = False  # covered by the candidate now serving (it may still be refined)


def attempts_of(engine: Engine, incident_id: int | None) -> list[Candidate]:
    with session_scope(engine) as session:
        return list(
            session.exec(
                select(Candidate)
                .where(Candidate.incident_id == incident_id)
                .order_by(col(Candidate.created_at))
            )
        )


def retry_requested(engine: Engine, incident_id: int | None, after) -> bool:
    with session_scope(engine) as session:
        query = select(Event).where(
            Event.kind == RETRY_REQUESTED, Event.subject == str(incident_id)
        )
        if after is not None:
            query = query.where(Event.ts > after)
        return session.exec(query).first() is not None


def request_retry(engine: Engine, incident_id: int, reason: str | None = None) -> Incident:
    """`warden retry`: an operator asks for one more attempt; the daemon takes it next round."""
    with session_scope(engine) as session:
        incident = session.get(Incident, incident_id)
        if incident is None:
            raise LookupError(f"no incident {incident_id}")
        if incident.status != "open":
            raise ValueError(f"incident {incident_id} is {incident.status}, not open")
        record_event(
            session,
            RETRY_REQUESTED,
            actor="operator",
            model=incident.model,
            subject=str(incident_id),
            reason=reason or "",
        )
        return incident


def needed_rows(last_rows: int, settings: CorrectionConfig) -> int:
    grown = math.ceil(last_rows * settings.retry_growth)
    if settings.retry_after_rows is not None:
        grown = min(grown, last_rows + settings.retry_after_rows)
    return grown


def plan(engine: Engine, incident: Incident, rows_now: int, settings: CorrectionConfig) -> Plan:
    """Whether `incident` gets an attempt now, given `rows_now` labelled rows since the change."""
    history = attempts_of(engine, incident.id)
    judged = [c for c in history if c.status != "failed"]
    used = len(judged) + incident.correction_attempts  # judged, and failed in training
    attempt = used + 1
    last = history[-1] if history else None
    if last is not None and last.status in COVERING:
        reason = f"covered by {last.id} ({last.status})"
        return Plan(False, attempt, reason, serving=last.status == "active")
    if retry_requested(engine, incident.id, last.created_at if last else None):
        return Plan(True, attempt, "an operator asked for another attempt")
    if used >= settings.max_attempts:
        reason = exhausted_reason(len(judged), incident.correction_attempts, settings)
        return Plan(False, attempt, reason, exhausted=True)
    if last is None and not incident.correction_attempts:
        return Plan(True, attempt, "first attempt")
    if last is None or last.status == "failed" or not judged:
        return Plan(True, attempt, "the last attempt's training failed: trying again")
    last = judged[-1]
    last_rows = int((last.training or {}).get("window_labelled_rows") or 0)
    wanted = needed_rows(last_rows, settings)
    if rows_now >= wanted:
        return Plan(True, attempt, f"{rows_now} labelled rows since the change (had {last_rows})")
    return Plan(
        False,
        attempt,
        f"waits for {wanted} labelled rows since the change (now {rows_now})",
        needed_rows=wanted,
    )


def exhausted_reason(rejected: int, failed: int, settings: CorrectionConfig) -> str:
    """Why no further attempt comes by itself, in an alert's words."""
    if not failed:
        return f"{rejected} of {settings.max_attempts} attempts rejected: a person is needed"
    return (
        f"{rejected + failed} of {settings.max_attempts} attempts used, {failed} of them failed "
        "in training: a person is needed (check the correction budgets and the log)"
    )


def serving_candidate(engine: Engine, model: str, version: str | None) -> Candidate | None:
    """The candidate that became the serving `version`, if a correction made it."""
    with session_scope(engine) as session:
        return session.exec(
            select(Candidate).where(
                Candidate.model == model, Candidate.version == version, Candidate.status == "active"
            )
        ).first()


def refinement_plan(
    engine: Engine, serving: Candidate, rows_now: int, settings: CorrectionConfig
) -> Plan:
    """A swapped correction learnt from the rows it had; once the rows since the change have
    grown by `retry_growth` (over the last attempt), another attempt starts again from the
    version that served before the change, with all of them, and must beat the one serving.
    `CONVERGED_AFTER` attempts in a row that do not beat it mean the correction has converged
    (one alone may be noise, or a gradual drift still under way)."""
    later = [
        c
        for c in attempts_of(engine, serving.incident_id)
        if c.created_at > serving.created_at and c.status != "failed"
    ]
    rejected = [c for c in later if c.status == "rejected"]
    if len(rejected) >= CONVERGED_AFTER:
        return Plan(
            False, len(later) + 1, f"converged: {len(rejected)} later attempts did not beat it"
        )
    if any(c.status in COVERING for c in later):
        return Plan(False, len(later) + 1, "a later attempt is in progress")
    last = later[-1] if later else serving
    had = int((last.training or {}).get("window_labelled_rows") or 0)
    if had >= settings.max_rows:
        return Plan(False, len(later) + 1, f"{last.id} learnt from max_rows rows already")
    wanted = min(needed_rows(had, settings), settings.max_rows)
    if rows_now >= wanted:
        return Plan(
            True, len(later) + 1, f"refinement: {rows_now} rows since the change (had {had})"
        )
    return Plan(False, len(later) + 1, f"refinement waits for {wanted} rows", needed_rows=wanted)
