"""One conversion to plain JSON for figures stored in the database and documents served by
`status`: numpy scalars → Python, NaN/Infinity → null (JSON and PostgreSQL's json type have
neither), datetimes → ISO 8601 in UTC, tuples and sets → lists."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any


def iso(value: datetime | None) -> str | None:
    """ISO 8601 in UTC; a naive datetime (SQLite hands those back) is read as UTC."""
    if value is None:
        return None
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value.isoformat()


def json_safe(value: Any) -> Any:
    if hasattr(value, "item") and not isinstance(value, dict | list | tuple | set):
        value = value.item()  # numpy scalars
    if isinstance(value, bool) or value is None or isinstance(value, int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [json_safe(v) for v in value]
    return str(value)
