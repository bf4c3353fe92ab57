"""When does an incident get (another) correction attempt?

An incident's attempts are the candidates made for it. A validated, waiting or serving
candidate covers the incident. After a rejected, failed or rolled-back one, the next attempt
comes once the labelled rows since the change have grown by `correction.retry_growth` (or by
`retry_after_rows`) over what the last attempt had — more of the new truth, a sharper gate —
or at once after a worker failure, up to `max_attempts`; then a person is needed. An
operator's `warden retry INCIDENT` (an event) allows one more attempt at the next round.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlmodel import select

from correctors.settings import CorrectionConfig
from storage.audit import record_event
from storage.db import session_scope
from storage.tables import Candidate, Event, Incident
from watcher.checks.incidents import MAX_CORRECTION_ATTEMPTS

COVERING = ("training", "validated", "awaiting_approval", "active")
RETRY_REQUESTED = "correction_retry_requested"


@dataclass(frozen=True)
class Plan:
    due: bool
    attempt: int  # the number the next attempt would have (1-based)
    reason: str  # why (not) now, in words an alert can carry
    needed_rows: int | None = None  # rows since the change the next attempt waits for
    exhausted: bool = False  # max_attempts reached: a person is needed


def attempts_of(engine: Engine, incident_id: int) -> list[Candidate]:
    with session_scope(engine) as session:
        return list(
            session.exec(
                select(Candidate)
                .where(Candidate.incident_id == incident_id)
                .order_by(Candidate.created_at)
            )
        )


def retry_requested(engine: Engine, incident_id: int, after) -> bool:
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
    attempt = len(judged) + 1
    last = history[-1] if history else None
    if last is not None and last.status in COVERING:
        return Plan(False, attempt, f"covered by {last.id} ({last.status})")
    if retry_requested(engine, incident.id, last.created_at if last else None):
        return Plan(True, attempt, "an operator asked for another attempt")
    if incident.correction_attempts >= MAX_CORRECTION_ATTEMPTS:
        return Plan(
            False,
            attempt,
            f"training failed {incident.correction_attempts} times: check the correction "
            "budgets and the log",
            exhausted=True,
        )
    if len(judged) >= settings.max_attempts:
        return Plan(
            False,
            attempt,
            f"{len(judged)} of {settings.max_attempts} attempts rejected: a person is needed",
            exhausted=True,
        )
    if last is None:
        return Plan(True, attempt, "first attempt")
    if last.status == "failed" or not judged:
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
