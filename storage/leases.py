"""Leases in the shared database: one daemon at a time runs a model's checks and corrections.

A lease is a row (name, holder, expires_at). Taking it is one conditional UPDATE (free,
expired, or already ours), which both SQLite and PostgreSQL execute atomically, so two
daemons can never both hold it. The holder renews it every few seconds; if it dies, another
daemon takes over once the lease expires.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Engine, case, or_, update
from sqlalchemy.dialects import postgresql, sqlite

from storage.core import table_of
from storage.tables import Lease, utcnow

LEASES = table_of(Lease)


def acquire(engine: Engine, name: str, holder: str, ttl_s: float) -> bool:
    """Take or renew `name` for `holder`; False while another live holder has it."""
    now = utcnow()
    expires = now + timedelta(seconds=ttl_s)
    dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
    with engine.begin() as conn:
        conn.execute(
            dialect.insert(LEASES)
            .values(name=name, holder=holder, acquired_at=now, expires_at=now)
            .on_conflict_do_nothing(index_elements=["name"])
        )
        taken = conn.execute(
            update(LEASES)
            .where(
                LEASES.c.name == name,
                or_(LEASES.c.holder == holder, LEASES.c.expires_at <= now),
            )
            .values(
                holder=holder,
                expires_at=expires,
                acquired_at=case((LEASES.c.holder == holder, LEASES.c.acquired_at), else_=now),
            )
        )
        return taken.rowcount == 1


def renew_all(engine: Engine, holder: str, ttl_s: float) -> list[str]:
    """Extend every unexpired lease `holder` has; returns their names."""
    now = utcnow()
    with engine.begin() as conn:
        conn.execute(
            update(LEASES)
            .where(LEASES.c.holder == holder, LEASES.c.expires_at > now)
            .values(expires_at=now + timedelta(seconds=ttl_s))
        )
        rows = conn.execute(
            LEASES.select().where(LEASES.c.holder == holder, LEASES.c.expires_at > now)
        ).all()
    return sorted(r.name for r in rows)


def release_all(engine: Engine, holder: str) -> None:
    """On a clean stop: let another daemon take over at once instead of after the TTL."""
    with engine.begin() as conn:
        conn.execute(update(LEASES).where(LEASES.c.holder == holder).values(expires_at=utcnow()))
