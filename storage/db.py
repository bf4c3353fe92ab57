"""Opening the store (connect, then migrate) and session scopes; URLs with and without secrets."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine
from sqlmodel import Session

from storage import tables  # noqa: F401  (registers the tables on SQLModel.metadata)
from storage.engine import connect, normalise_url
from storage.migrate import upgrade


def make_engine(url: str, *, create: bool = True, lock_timeout_s: float = 30.0) -> Engine:
    """An engine (see `storage.engine.connect`); with `create`, the schema is migrated to the
    newest revision first (`storage.migrate.upgrade`: creates the tables in an empty database,
    one version read when already at head)."""
    engine = connect(url, lock_timeout_s=lock_timeout_s)
    if create:
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
