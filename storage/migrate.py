"""Schema migrations (Alembic), driven from code: no alembic.ini at runtime.

The revisions live in `storage/migrations/versions/` (shipped as package modules). They are
applied by `warden db upgrade` and, through `make_engine(create=True)`, whenever the daemon or a
command opens the database. `upgrade()` at head costs one small query (the version read), so it
can run on every engine.

Migrations run inside one transaction holding a lock, so daemons starting together do not race:
`pg_advisory_xact_lock` keyed by the current schema on PostgreSQL (the `alembic_version` table
lives in that schema too, the first of the `search_path`), `BEGIN IMMEDIATE` on SQLite. The
revision is read again once the lock is held.

Databases made before migrations existed (`SQLModel.metadata.create_all`) have the tables but no
`alembic_version` table. `upgrade()` recognises them by their columns and stamps them first:

- all columns of revision 0002 present (created by the code as it was when migrations were
  introduced): stamped `0002`, nothing to change;
- the tables of revision 0001 (the schema at commit 0ca2bfa) but not all of 0002's columns:
  stamped `0001`, and 0002 adds only the columns that are missing (databases created between
  those commits have some of them);
- some of 0001's tables or columns missing: `MigrationError`, the database is left alone;
- none of our tables: an empty database, migrated from the start.

For developers, a new revision from the difference between `storage/tables.py` and a database
at head (`tests/storage/test_migrations.py` fails until there is one):

    command.revision(alembic_config(url=URL), "message", autogenerate=True, rev_id="0003")

then review it (batch operations for SQLite, server defaults for new NOT NULL columns), and
extend the tests if it changes data. Once every database carries `alembic_version`, the
unversioned detection above stays tied to 0001/0002 (`LAST_UNVERSIONED`).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_random

from storage.engine import connect

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
LAST_UNVERSIONED = "0002"  # the schema create_all made when migrations replaced it


class MigrationError(RuntimeError):
    """The database cannot be migrated safely (an unversioned schema we do not recognise)."""


def alembic_config(connection: Connection | None = None, url: str | None = None) -> Config:
    """An in-memory alembic config: the migrations folder, and the connection (or URL) to use."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["connection"] = connection
    return cfg


@functools.cache
def _script() -> ScriptDirectory:
    return ScriptDirectory(str(MIGRATIONS_DIR))


def head() -> str:
    """The newest revision id."""
    newest = _script().get_current_head()
    if newest is None:
        raise MigrationError(f"no revisions in {MIGRATIONS_DIR}")
    return newest


def revision_module(revision: str) -> ModuleType:
    """The loaded module of a revision (e.g. "0001".schema(), the tables it creates)."""
    return _script().get_revision(revision).module


def _read(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def current(engine: Engine) -> str | None:
    """The revision the database is at; None when it has no `alembic_version` table (empty, or
    made by `create_all` before migrations existed)."""
    with engine.connect() as conn:
        return _read(conn)


@contextmanager
def _locked(engine: Engine) -> Iterator[Connection]:
    """A connection in a transaction that holds the migration lock; committed on success."""
    with engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")  # pysqlite would not begin before DDL
        elif conn.dialect.name == "postgresql":
            conn.execute(
                sa.text("SELECT pg_advisory_xact_lock(hashtext(:key || current_schema()))"),
                {"key": "model-warden:migrations:"},
            )
        yield conn
        conn.commit()


def unversioned_revision(conn: Connection) -> str | None:
    """The revision an unversioned database matches (see the module docstring), None if it has
    none of our tables; `MigrationError` if it has some but not the whole 0001 schema."""
    inspector = sa.inspect(conn)
    existing = set(inspector.get_table_names())
    if not existing:
        return None
    initial = revision_module("0001").schema()
    if not existing & set(initial.tables):
        return None
    missing = sorted(set(initial.tables) - existing)
    columns = {name: {c["name"] for c in inspector.get_columns(name)} for name in existing}
    missing += [
        f"{table.name}.{column.name}"
        for table in initial.sorted_tables
        if table.name in existing
        for column in table.columns
        if column.name not in columns[table.name]
    ]
    if missing:
        raise MigrationError(
            "the database has model-warden tables but no alembic_version and does not match "
            f"the first revision (missing: {', '.join(missing)}); not migrating it"
        )
    added = revision_module(LAST_UNVERSIONED).added_columns()
    if all(c.name in columns[table] for table, cols in added.items() for c in cols):
        return LAST_UNVERSIONED
    return "0001"


def _engine(url_or_engine: str | Engine) -> tuple[Engine, bool]:
    if isinstance(url_or_engine, Engine):
        return url_or_engine, False
    return connect(url_or_engine), True


def _sqlite_locked(exc: BaseException) -> bool:
    """SQLite answers "database is locked" at once, without its busy timeout, when several
    connections switch a new file to WAL or open it at the same moment (daemons starting
    together): worth another try, unlike any other error."""
    return isinstance(exc, sa.exc.OperationalError) and "database is locked" in str(exc)


@retry(
    retry=retry_if_exception(_sqlite_locked),
    stop=stop_after_attempt(5),
    wait=wait_random(0.1, 0.5),
    reraise=True,
)
def upgrade(url_or_engine: str | Engine, revision: str = "head") -> str:
    """Migrate the database to `revision` (default: head) and return the revision it is at.

    A no-op at the target costs one version read. Unversioned databases made by `create_all`
    are recognised and stamped first (module docstring); `MigrationError` if unrecognised."""
    engine, owned = _engine(url_or_engine)
    try:
        target = _script().get_revision(revision).revision
        with engine.connect() as conn:
            if _read(conn) == target:
                return target
        with _locked(engine) as conn:
            before = _read(conn)  # again: another process may have migrated meanwhile
            if before is None:
                found = unversioned_revision(conn)
                if found is not None:
                    command.stamp(alembic_config(conn), found)
                    before = found
            if before != target:
                command.upgrade(alembic_config(conn), revision)
            after = _read(conn)
            if after is None:
                raise MigrationError(f"no alembic_version after upgrading to {revision}")
            return after
    finally:
        if owned:
            engine.dispose()


def downgrade(url_or_engine: str | Engine, revision: str) -> str | None:
    """Migrate the database down to `revision` ("base": drop everything); for tests and repairs."""
    engine, owned = _engine(url_or_engine)
    try:
        with _locked(engine) as conn:
            command.downgrade(alembic_config(conn), revision)
            return _read(conn)
    finally:
        if owned:
            engine.dispose()
