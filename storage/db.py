"""Engine and session set-up: SQLite file by default, PostgreSQL by URL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import msgspec
from sqlalchemy import Engine, create_engine, event
from sqlmodel import Session

from storage import tables  # noqa: F401  (registers the tables on SQLModel.metadata)


def normalise_url(url: str) -> str:
    """Use the psycopg 3 driver for plain `postgresql://` URLs, the one we install."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def _json_dumps(value) -> str:
    """JSON columns: msgspec encodes the features dict ~5x faster than the json module."""
    return msgspec.json.encode(value).decode("utf-8")


def make_engine(url: str, *, create: bool = True, lock_timeout_s: float = 30.0) -> Engine:
    """Create an engine, tuned for concurrent intake and checks; with `create`, migrate the
    schema to the newest revision first (`storage.migrate.upgrade`: creates the tables in an
    empty database, one version read when already at head).

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
    if create:
        from storage.migrate import upgrade

        upgrade(engine)
    return engine


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def redact_url(url: str) -> str:
    """The URL with its password masked (`postgresql+psycopg://user:***@host/db`), for logs.
    Query parameters that carry a secret (`?password=...`) are masked too."""
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(normalise_url(url))
        query = {
            k: ("***" if k.lower() in {"password", "passwd", "sslpassword"} else v)
            for k, v in parsed.query.items()
        }
        return parsed.set(query=query).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL is still not logged verbatim
        return "<unparsable database url>"


def with_password(url: str, password: str | None) -> str:
    """`url` with `password` inserted (escaped as the URL syntax needs); unchanged for None.
    The result holds the secret: give it to `make_engine`, never to a log."""
    if password is None:
        return url
    from sqlalchemy.engine import make_url

    return make_url(url).set(password=password).render_as_string(hide_password=False)
