"""The features column of a window (one JSON object per row) decoded into a DataFrame in one
pass, exactly as `pd.DataFrame(list_of_dicts)` would build it, only faster.

Measured (bench/window_read.py, 1M rows × 22 features, 2 shared cores): one dict per row
(json per row, then pandas from the dicts) ~6 s; pyarrow's JSON reader over the whole column
(C++, typed columns, no Python object per value) ~2 s. Arrow's frame equals pandas' one when
every column is a number, or a string / boolean with no missing value; anything else (a
missing string, a nested value, mixed types, a line Arrow cannot parse) takes the dict path,
so callers always receive the same frame.
"""

from __future__ import annotations

import gc
import io
from collections.abc import Sequence

import msgspec
import pandas as pd
import pyarrow as pa
import pyarrow.json as pa_json

_DECODE = msgspec.json.Decoder()
_READ = pa_json.ReadOptions(block_size=1 << 24)


def features_frame(texts: Sequence[str] | Sequence[bytes]) -> pd.DataFrame:
    """A frame with one column per feature key (in order of first appearance) and one row
    per JSON text (all str or all UTF-8 bytes); a key a row lacks is NaN, as pandas does for
    a list of dicts."""
    if not texts:
        return pd.DataFrame()
    frame = lines_frame(_joined(texts, "\n"), len(texts))
    return frame if frame is not None else _dicts_frame(texts)


def lines_frame(payload: bytes, rows: int) -> pd.DataFrame | None:
    """The frame of `rows` JSON objects, one per line of `payload`; None when Arrow's frame
    could differ from pandas' (see the module's docstring): the caller then takes the dicts'
    path."""
    if rows == 0 or payload.count(b"\n") != rows - 1:  # a row's JSON spans lines
        return None
    try:
        table = pa_json.read_json(io.BytesIO(payload), read_options=_READ)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    if table.num_rows != rows or table.num_columns == 0:
        return None
    if not all(_same_in_pandas(column) for column in table.columns):
        return None
    return table.to_pandas()


def _same_in_pandas(column: pa.ChunkedArray) -> bool:
    kind = column.type
    if pa.types.is_floating(kind) or pa.types.is_integer(kind):
        return True  # missing values are NaN (ints with gaps become float64) either way
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_boolean(kind):
        return (
            column.null_count == 0
        )  # pandas keeps None for null and NaN for absent: Arrow cannot tell them apart
    return False


def _joined(texts: Sequence[str] | Sequence[bytes], separator: str) -> bytes:
    if isinstance(texts[0], bytes):
        return separator.encode().join(texts)  # type: ignore[arg-type]
    return separator.join(texts).encode()  # type: ignore[arg-type]


def _dicts_frame(texts: Sequence[str] | Sequence[bytes]) -> pd.DataFrame:
    """The general path: every row's dict, then pandas. The collector is paused meanwhile: a
    million new dicts would trigger it again and again for nothing (none of them is garbage)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        rows = _DECODE.decode(b"[" + _joined(texts, ",") + b"]")
        return pd.DataFrame.from_records(rows)
    finally:
        if enabled:
            gc.enable()
