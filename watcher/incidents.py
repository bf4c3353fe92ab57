"""Check runs → incidents: one open incident per model and kind, updated rather than duplicated,
resolved after a run of clean checks."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine
from sqlmodel import select

from storage.audit import record_event
from storage.db import session_scope
from storage.tables import CheckRun, Incident, utcnow
from watcher.detection import CheckOutcome

RESOLVE_AFTER_CLEAN = 3


@dataclass
class IncidentChange:
    incident: Incident
    opened: bool  # False: an open incident of the same kind was updated


def record_outcomes(
    engine: Engine, model: str, outcomes: list[CheckOutcome]
) -> list[IncidentChange]:
    """Store every check run; open, update or resolve incidents accordingly."""
    changes: list[IncidentChange] = []
    with session_scope(engine) as session:
        for out in outcomes:
            run = CheckRun(
                model=model,
                model_version=out.version,
                kind=out.kind,
                rows=out.rows,
                labelled_rows=out.labelled_rows,
                passed=out.passed,
                skipped_reason=out.skipped_reason,
                figures=_json_safe(out.figures),
                report_path=str(out.report_path) if out.report_path else None,
                window_start_seq=out.seq_range[0],
                window_end_seq=out.seq_range[1],
                duration_s=out.duration_s,
            )
            session.add(run)
            session.flush()
            current = session.exec(
                select(Incident).where(
                    Incident.model == model, Incident.kind == out.kind, Incident.status == "open"
                )
            ).first()
            if out.skipped_reason:
                continue
            if out.passed:
                if current is not None:
                    current.clean_checks += 1
                    if current.clean_checks >= RESOLVE_AFTER_CLEAN:
                        current.status, current.resolved_at = "resolved", utcnow()
                        record_event(
                            session,
                            "incident_resolved",
                            actor="daemon",
                            model=model,
                            subject=str(current.id),
                            clean_checks=current.clean_checks,
                        )
                    session.add(current)
                continue
            now = utcnow()
            if current is None:
                current = Incident(
                    model=model,
                    model_version=out.version,
                    kind=out.kind,
                    severity=out.severity,
                    summary=out.summary,
                    figures=_json_safe(out.figures),
                    check_run_id=run.id,
                    window_start_seq=out.seq_range[0],
                    window_end_seq=out.seq_range[1],
                    report_path=str(out.report_path) if out.report_path else None,
                )
                session.add(current)
                session.flush()
                record_event(
                    session,
                    "incident_opened",
                    actor="daemon",
                    model=model,
                    subject=str(current.id),
                    incident_kind=out.kind,
                    severity=out.severity,
                    summary=out.summary,
                    report=current.report_path,
                )
                changes.append(IncidentChange(current, opened=True))
            else:
                current.severity, current.summary = out.severity, out.summary
                current.figures, current.check_run_id = _json_safe(out.figures), run.id
                current.window_end_seq, current.updated_at = out.seq_range[1], now
                current.clean_checks = 0
                if out.report_path:
                    current.report_path = str(out.report_path)
                session.add(current)
                changes.append(IncidentChange(current, opened=False))
    return changes


def open_incidents(engine: Engine, model: str, *, uncovered: bool = False) -> list[Incident]:
    """Open incidents, optionally only those no correction has been attempted for."""
    with session_scope(engine) as session:
        query = select(Incident).where(Incident.model == model, Incident.status == "open")
        if uncovered:
            query = query.where(Incident.candidate_id.is_(None))
        return list(session.exec(query.order_by(Incident.id)))


def mark_covered(engine: Engine, incident_ids: list[int], candidate_id: str) -> None:
    with session_scope(engine) as session:
        for incident_id in incident_ids:
            incident = session.get(Incident, incident_id)
            incident.candidate_id = candidate_id
            session.add(incident)


def _json_safe(value):
    """numpy scalars and other non-JSON values out, so every figure can be stored."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if hasattr(value, "item"):
        return value.item()
    return value
