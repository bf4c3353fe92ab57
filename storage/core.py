"""The SQLAlchemy Core table behind a SQLModel class, for bulk statements (insert, update,
delete over many rows) that bypass the ORM.

SQLModel's metaclass sets `__table__` on each table class without declaring it, so a type
checker cannot see it; the mapper's `local_table` is the same object, typed."""

from __future__ import annotations

from sqlalchemy import Table, inspect
from sqlmodel import SQLModel


def table_of(model: type[SQLModel]) -> Table:
    """The `Table` that `model` (a SQLModel class with `table=True`) maps."""
    table = inspect(model).local_table
    if not isinstance(table, Table):
        raise TypeError(f"{model.__name__} maps no single table")
    return table
