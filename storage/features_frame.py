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

import msgspec
import pandas as pd
import pyarrow as pa
import pyarrow.json as pa_json

_DECODE = msgspec.json.Decoder()
_READ = pa_json.ReadOptions(block_size=1 << 24)


def features_frame(texts: list[str] | list[bytes]) -> pd.DataFrame:
    """A frame with one column per feature key (in order of first appearance) and one row
    per JSON text (all str or all UTF-8 bytes); a key a row lacks is NaN, as pandas does for
    a list of dicts.

    Empties `texts` once they are joined (one JSON text per line): at 1M rows the texts
    (~360 MB) would otherwise live beside their joined copy and the frames."""
    if not texts:
        return pd.DataFrame()
    rows, payload = len(texts), _joined(texts, "\n")
    if payload.count(b"\n") != rows - 1:  # a row's JSON spans lines
        return _dicts_frame(_joined(texts, ","))
    texts.clear()
    table = _arrow_table(payload, rows)
    if table is None:
        return _dicts_frame(payload.replace(b"\n", b","))
    del payload
    # column by column, each Arrow buffer released once converted (peak memory at 1M rows)
    return table.to_pandas(split_blocks=True, self_destruct=True)


def _arrow_table(payload: bytes, rows: int) -> pa.Table | None:
    """The table of `rows` JSON objects, one per line of `payload`; None when its frame could
    differ from pandas' (see the module's docstring). Allocated with the system allocator,
    which gives freed memory back (Arrow's default pool kept ~0.5 GB at 1M rows)."""
    try:
        table = pa_json.read_json(
            io.BytesIO(payload), read_options=_READ, memory_pool=pa.system_memory_pool()
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    if table.num_rows != rows or table.num_columns == 0:
        return None
    if not all(_same_in_pandas(column) for column in table.columns):
        return None
    return table


def _same_in_pandas(column: pa.ChunkedArray) -> bool:
    kind = column.type
    if pa.types.is_floating(kind) or pa.types.is_integer(kind):
        return True  # missing values are NaN (ints with gaps become float64) either way
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_boolean(kind):
        # pandas keeps None for a null and NaN for an absent key: Arrow cannot tell them apart
        return column.null_count == 0
    return False


def _joined(texts: list[str] | list[bytes], separator: str) -> bytes:
    if isinstance(texts[0], bytes):
        return separator.encode().join(texts)
    return separator.join(texts).encode()


def _dicts_frame(joined: bytes) -> pd.DataFrame:
    """The general path (`joined`: the texts joined by commas): every row's dict, then
    pandas. The collector is paused meanwhile: a million new dicts would trigger it again and
    again for nothing (none of them is garbage)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        return pd.DataFrame.from_records(_DECODE.decode(b"[" + joined + b"]"))
    finally:
        if enabled:
            gc.enable()
