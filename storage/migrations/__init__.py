"""Alembic migrations for the SQLModel tables; driven by `storage.migrate` (no alembic.ini).

`versions/` holds one module per revision. A package (with `__init__.py` files) so that the
revisions ship in the wheel like any other module."""
