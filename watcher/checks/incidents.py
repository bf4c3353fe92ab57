"""Check runs → incidents: one open incident per model and kind, updated rather than duplicated,
resolved after `resolve_after` clean checks. Cooldown: a kind that resolved less than
`cooldown_minutes` ago reopens its incident instead of opening (and alerting) a new one, and an
open incident alerts again only when its severity rises, so a flapping check cannot storm."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from storage.audit import record_event
from storage.db import session_scope
from storage.tables import CheckRun, Incident, utcnow
from watcher.checks.outcome import CheckOutcome
from watcher.config import ChecksConfig
from watcher.jsonsafe import json_safe

SEVERITY_RANK = {"info": 0, "warning": 1, "high": 2, "critical": 3}


@dataclass
class IncidentChange:
    incident: Incident
    opened: bool  # a new incident
    alert: bool  # worth an alert: newly opened, or its severity rose
    reopened: bool = False  # failed again within the cooldown after resolving
    escalated: bool = False


def record_outcomes(
    engine: Engine, model: str, outcomes: list[CheckOutcome], checks: ChecksConfig | None = None
) -> list[IncidentChange]:
    """Store every check run; open, update, reopen or resolve incidents accordingly."""
    checks = checks or ChecksConfig.model_validate({})  # the defaults
    changes: list[IncidentChange] = []
    with session_scope(engine) as session:
        for out in outcomes:
            run = _store_run(session, model, out)
            if out.skipped_reason:
                continue
            change = _follow_up(session, model, out, run.id, checks)
            if change is not None:
                changes.append(change)
    return changes


def _store_run(session: Session, model: str, out: CheckOutcome) -> CheckRun:
    run = CheckRun(
        model=model,
        model_version=out.version,
        kind=out.kind,
        rows=out.rows,
        labelled_rows=out.labelled_rows,
        passed=out.passed,
        skipped_reason=out.skipped_reason,
        figures=json_safe(out.figures),
        report_path=str(out.report_path) if out.report_path else None,
        window_start_seq=out.seq_range[0],
        window_end_seq=out.seq_range[1],
        duration_s=out.duration_s,
    )
    session.add(run)
    session.flush()
    return run


def _follow_up(
    session: Session, model: str, out: CheckOutcome, run_id: int | None, checks: ChecksConfig
) -> IncidentChange | None:
    """One judged outcome against the kind's open incident: count a clean check, or open,
    reopen (within the cooldown) or update the incident."""
    current = session.exec(
        select(Incident).where(
            Incident.model == model, Incident.kind == out.kind, Incident.status == "open"
        )
    ).first()
    if out.passed:
        if current is not None:
            _count_clean(session, current, model, checks.resolve_after)
        return None
    if current is None:
        resolved = _recently_resolved(session, model, out.kind, checks.cooldown_minutes)
        if resolved is not None:
            return _reopen(session, resolved, model, out, run_id, checks.cooldown_minutes)
        return IncidentChange(_open(session, model, out, run_id), opened=True, alert=True)
    rose = SEVERITY_RANK.get(out.severity, 0) > SEVERITY_RANK.get(current.severity, 0)
    _update(current, out, run_id)
    session.add(current)
    return IncidentChange(current, opened=False, alert=rose, escalated=rose)


def _reopen(
    session: Session,
    incident: Incident,
    model: str,
    out: CheckOutcome,
    run_id: int | None,
    cooldown_minutes: float,
) -> IncidentChange:
    """Failed again within the cooldown: the resolved incident opens again, quietly."""
    _update(incident, out, run_id)
    incident.status, incident.resolved_at = "open", None
    incident.reopened += 1
    session.add(incident)
    record_event(
        session,
        "incident_reopened",
        actor="daemon",
        model=model,
        subject=str(incident.id),
        incident_kind=out.kind,
        summary=out.summary,
        cooldown_minutes=cooldown_minutes,
    )
    return IncidentChange(incident, opened=False, alert=False, reopened=True)


def _open(session: Session, model: str, out: CheckOutcome, run_id: int | None) -> Incident:
    incident = Incident(
        model=model,
        model_version=out.version,
        kind=out.kind,
        severity=out.severity,
        summary=out.summary,
        figures=json_safe(out.figures),
        flagged_ids=list(out.flagged_ids),
        check_run_id=run_id,
        window_start_seq=out.seq_range[0],
        window_end_seq=out.seq_range[1],
        report_path=str(out.report_path) if out.report_path else None,
    )
    session.add(incident)
    session.flush()
    record_event(
        session,
        "incident_opened",
        actor="daemon",
        model=model,
        subject=str(incident.id),
        incident_kind=out.kind,
        severity=out.severity,
        summary=out.summary,
        report=incident.report_path,
    )
    return incident


def _update(incident: Incident, out: CheckOutcome, run_id: int | None) -> None:
    incident.severity, incident.summary = out.severity, out.summary
    incident.figures, incident.check_run_id = json_safe(out.figures), run_id
    incident.window_end_seq, incident.updated_at = out.seq_range[1], utcnow()
    incident.clean_checks = 0
    if out.flagged_ids:
        incident.flagged_ids = list(out.flagged_ids)
    if out.report_path:
        incident.report_path = str(out.report_path)


def _count_clean(session: Session, incident: Incident, model: str, resolve_after: int) -> None:
    incident.clean_checks += 1
    if incident.clean_checks >= resolve_after:
        incident.status, incident.resolved_at = "resolved", utcnow()
        record_event(
            session,
            "incident_resolved",
            actor="daemon",
            model=model,
            subject=str(incident.id),
            clean_checks=incident.clean_checks,
        )
    session.add(incident)


def _recently_resolved(session: Session, model: str, kind: str, minutes: float) -> Incident | None:
    if minutes <= 0:
        return None
    since = utcnow() - timedelta(minutes=minutes)
    found = session.exec(
        select(Incident)
        .where(Incident.model == model, Incident.kind == kind, Incident.status == "resolved")
        .order_by(col(Incident.resolved_at).desc())
    ).first()
    if found is None or found.resolved_at is None:
        return None
    resolved = found.resolved_at
    if resolved.tzinfo is None:  # SQLite hands back naive datetimes
        resolved = resolved.replace(tzinfo=UTC)
    return found if resolved >= since else None


def mark_alerted(engine: Engine, incident_id: int, when: datetime | None = None) -> None:
    with session_scope(engine) as session:
        incident = session.get(Incident, incident_id)
        if incident is not None:
            incident.alerted_at = when or utcnow()
            session.add(incident)


def open_incidents(engine: Engine, model: str) -> list[Incident]:
    with session_scope(engine) as session:
        query = select(Incident).where(Incident.model == model, Incident.status == "open")
        return list(session.exec(query.order_by(col(Incident.id))))


def mark_for_retry(engine: Engine, incident_ids: list[int], reason: str) -> int:
    """A correction's training failed: count the attempt and keep the incident open, so the
    next round tries again (each failure counts towards `correction.max_attempts`). Returns the
    highest count."""
    highest = 0
    with session_scope(engine) as session:
        for incident_id in incident_ids:
            incident = _incident(session, incident_id)
            incident.correction_attempts += 1
            incident.correction_error = reason[:2000]
            highest = max(highest, incident.correction_attempts)
            session.add(incident)
            record_event(
                session,
                "correction_retry",
                actor="daemon",
                model=incident.model,
                subject=str(incident_id),
                attempts=incident.correction_attempts,
                reason=reason,
            )
    return highest


def mark_covered(engine: Engine, incident_ids: list[int], candidate_id: str) -> None:
    with session_scope(engine) as session:
        for incident_id in incident_ids:
            incident = _incident(session, incident_id)
            incident.candidate_id = candidate_id
            session.add(incident)


def _incident(session: Session, incident_id: int) -> Incident:
    incident = session.get(Incident, incident_id)
    if incident is None:
        raise LookupError(f"no incident {incident_id}")
    return incident
