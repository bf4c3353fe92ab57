"""Alembic environment. `storage.migrate` hands over an open connection (inside the transaction
that holds the migration lock) through `config.attributes["connection"]`; the alembic command
line (developers writing a revision) gives a URL as `sqlalchemy.url` or `-x url=...`."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine
from sqlmodel import SQLModel

from storage import tables  # noqa: F401  (registers the tables on SQLModel.metadata)

config = context.config
target_metadata = SQLModel.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # ALTER TABLE is limited there
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def main() -> None:
    if context.is_offline_mode():
        raise SystemExit("model-warden migrations run online only (no --sql)")
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    from storage.engine import normalise_url

    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option(
        "sqlalchemy.url"
    )
    if not url:
        raise SystemExit("no database: pass -x url=... or set sqlalchemy.url")
    engine = create_engine(normalise_url(url))
    try:
        with engine.begin() as conn:
            _run(conn)
    finally:
        engine.dispose()


main()
