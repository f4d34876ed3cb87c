"""Streamed reading with clear errors naming the file, column and row.

Every function here takes a *source*: a parquet file path (the fast path: pyarrow reads it
directly, no extra copy) or anything :func:`astromodal_core.sources.open_source` reads (a FITS
table, an astropy Table, a directory of parquet files, ``hats://`` catalogues, plugin sources).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .errors import DataError

DEFAULT_BATCH_SIZE = 65_536
PathLike = str | os.PathLike[str]


def open_parquet(path: Any) -> Any:
    """Open a parquet file, raising :class:`DataError` for a missing, empty or corrupt file.

    Any other source gives its :class:`~astromodal_core.sources.Source`, which offers what a
    tokenizer reads of a ``ParquetFile``: ``schema_arrow``, ``metadata.num_rows`` and
    ``iter_batches(batch_size=, columns=)``.
    """
    from .sources import is_parquet_path, open_source

    if not is_parquet_path(path):
        return open_source(path)
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: empty file (0 bytes), not a parquet file")
    try:
        # pre_buffer=False keeps memory bounded by the record batch, not the row group.
        return pq.ParquetFile(path, pre_buffer=False)
    except (pa.ArrowException, OSError, UnicodeDecodeError) as exc:  # a damaged footer: any of them
        raise DataError(f"{path}: not a readable parquet file ({exc})") from exc


def require_columns(pf: Any, path: Any, columns: Sequence[str]) -> None:
    """Raise :class:`DataError` naming the file and the first absent column."""
    from .sources import Source

    if isinstance(pf, Source):
        pf.require(columns)
        return
    names = set(pf.schema_arrow.names)
    missing = [c for c in columns if c not in names]
    if missing:
        raise DataError(
            f"{path}: missing column {missing[0]!r}"
            + (f" (and {len(missing) - 1} more: {missing[1:6]})" if len(missing) > 1 else "")
            + f"; the file has {sorted(names)[:20]}"
        )


def iter_batches(
    path: Any,
    columns: Sequence[str],
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    allow_empty: bool = False,
) -> Iterator[pa.RecordBatch]:
    """Yield record batches of the projected ``columns`` of any source; memory is bounded by
    ``batch_size``."""
    from .sources import is_parquet_path, open_source

    if not is_parquet_path(path):
        yield from open_source(path).iter_batches(batch_size=batch_size, columns=columns,
                                                  allow_empty=allow_empty)
        return
    pf = open_parquet(path)
    require_columns(pf, path, columns)
    if pf.metadata.num_rows == 0 and not allow_empty:
        raise DataError(f"{path}: the file has no rows")
    try:
        yield from pf.iter_batches(batch_size=batch_size, columns=list(columns))
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{path}: corrupt parquet data ({exc})") from exc


def num_rows(path: Any) -> int:
    """Rows of a source (a parquet file's footer, a FITS header, a table's length...)."""
    return int(open_parquet(path).metadata.num_rows)


def _is_numeric(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)


def numeric_column(batch: pa.RecordBatch, name: str, path: PathLike) -> np.ndarray:
    """A float64 copy of a numeric column with nulls as NaN; DataError for other types."""
    col = batch.column(name)
    if not _is_numeric(col.type):
        raise DataError(f"{path}: column {name!r} has type {col.type}, expected a number")
    return col.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)


def id_column(batch: pa.RecordBatch, name: str, path: PathLike) -> np.ndarray:
    """The row ids as int64; nulls and non-integer types are a DataError."""
    col = batch.column(name)
    if not pa.types.is_integer(col.type):
        raise DataError(f"{path}: id column {name!r} has type {col.type}, expected an integer")
    if col.null_count:
        raise DataError(f"{path}: id column {name!r} has {col.null_count} null ids")
    return col.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)


def list_column(
    batch: pa.RecordBatch, name: str, path: PathLike, *, dtype: type = np.float64
) -> tuple[np.ndarray, np.ndarray]:
    """A list<number> column as ``(values, offsets)``; a null row is an empty list."""
    col = batch.column(name)
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    t = col.type
    if not (pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)):
        raise DataError(f"{path}: column {name!r} has type {t}, expected a list of numbers")
    if not (_is_numeric(t.value_type) or pa.types.is_boolean(t.value_type)):
        raise DataError(f"{path}: column {name!r} holds {t.value_type}, expected numbers")
    if pa.types.is_fixed_size_list(t):
        n = len(col)
        size = t.list_size
        offsets = np.arange(n + 1, dtype=np.int64) * size
        if col.null_count:
            lengths = np.where(col.is_null().to_numpy(zero_copy_only=False), 0, size)
            offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
            col = col.filter(col.is_valid())
        values = col.flatten().to_numpy(zero_copy_only=False).astype(dtype, copy=False)
        return values, offsets
    if col.null_count:
        col = pc.if_else(col.is_null(), pa.scalar([], type=t), col)
    raw = np.asarray(col.offsets.to_numpy(zero_copy_only=False), dtype=np.int64)
    flat = col.values.to_numpy(zero_copy_only=False)
    values = flat[raw[0] : raw[-1]].astype(dtype, copy=False)
    return values, raw - raw[0]


def check_same_lengths(
    offsets_a: np.ndarray,
    offsets_b: np.ndarray,
    ids: np.ndarray,
    path: PathLike,
    col_a: str,
    col_b: str,
) -> None:
    """Raise :class:`DataError` at the first row whose two list columns differ in length."""
    la = np.diff(offsets_a)
    lb = np.diff(offsets_b)
    bad = np.flatnonzero(la != lb)
    if bad.size:
        i = int(bad[0])
        raise DataError(
            f"{path}: row id {int(ids[i])}: column {col_a!r} has {int(la[i])} values but "
            f"{col_b!r} has {int(lb[i])} ({bad.size} such rows)"
        )
