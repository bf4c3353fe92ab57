"""Connecting to the store: SQLite file by default, PostgreSQL by URL (psycopg 3), with the
settings intake and checks need. The schema is `storage.migrate`'s job, sessions `storage.db`'s."""

from __future__ import annotations

from pathlib import Path

import msgspec
from sqlalchemy import Engine, create_engine, event


def normalise_url(url: str) -> str:
    """Use the psycopg 3 driver for plain `postgresql://` URLs, the one we install."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def _json_dumps(value) -> str:
    """JSON columns: msgspec encodes the features dict ~5x faster than the json module."""
    return msgspec.json.encode(value).decode("utf-8")


def connect(url: str, *, lock_timeout_s: float = 30.0) -> Engine:
    """An engine tuned for concurrent intake and checks, without touching the schema.

    `lock_timeout_s`: how long a SQLite write waits for a lock held elsewhere before it fails
    (and the intake retries); on PostgreSQL it bounds the connect attempt."""
    url = normalise_url(url)
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": lock_timeout_s},
            json_serializer=_json_dumps,
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record) -> None:  # WAL: readers never block the writer
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute(f"PRAGMA busy_timeout={int(lock_timeout_s * 1000)}")
            cur.close()
    else:
        engine = create_engine(
            url,
            pool_pre_ping=True,
            pool_size=5,
            max_overflow=5,
            json_serializer=_json_dumps,
            connect_args={"connect_timeout": max(1, int(lock_timeout_s))},
        )
    return engine
