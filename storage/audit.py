"""The append-only audit log: one row per state change, with the actor that caused it."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from storage.tables import Event

ACTORS = ("daemon", "config", "operator")


def record_event(
    session: Session,
    kind: str,
    *,
    actor: str,
    model: str | None = None,
    subject: str | None = None,
    **detail: Any,
) -> Event:
    """Append an event; callers commit it together with the state change it describes."""
    if actor not in ACTORS:
        raise ValueError(f"unknown actor {actor!r}; expected one of {ACTORS}")
    event = Event(kind=kind, actor=actor, model=model, subject=subject, detail=detail)
    session.add(event)
    return event
