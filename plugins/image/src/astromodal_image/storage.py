"""How cutouts sit in a parquet datacube, and reading them back in record batches.

Layout: one column per band named ``<prefix><band>`` (default prefix ``splus_cut_``, so
``splus_cut_R``), of type ``fixed_size_list<float32>[cutout_size**2]`` (a plain
``list<float32>`` is accepted too), holding the cutout row-major. A row without that band holds
a null (or an empty list); NaN pixels are missing pixels, and so are blank values: finite pixels
with ``|x| >= BLANK_LIMIT`` (FITS fill values such as -1e30), which are read as NaN. ±inf, a
wrong length or a non-numeric column is a :class:`DataError` naming the file, the column and the
row id.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from astromodal_core import DataError
from astromodal_core.io import id_column, iter_batches
from astromodal_core.serialize import atomic_path

DEFAULT_PREFIX = "splus_cut_"
#: finite pixels at least this large in magnitude are blank (fill) values: read as missing
BLANK_LIMIT = 1e20
PathLike = str | os.PathLike[str]
T = TypeVar("T")


def band_column(band: str, prefix: str = DEFAULT_PREFIX) -> str:
    """The datacube column holding ``band``'s cutouts."""
    return f"{prefix}{band}"


def blank_to_nan(values: np.ndarray) -> np.ndarray:
    """``values`` as float32, with blank values (finite, ``|x| >= BLANK_LIMIT``) as NaN.

    ±inf stay, for the caller to report; the input is never modified.
    """
    a = np.asarray(values)
    if a.dtype.kind == "f" and a.dtype.itemsize > 4:  # blank before the cast turns them into inf
        with np.errstate(invalid="ignore"):
            huge = np.isfinite(a) & (np.abs(a) >= BLANK_LIMIT)
        if huge.any():
            a = np.where(huge, np.nan, a)
    out = a.astype(np.float32, copy=False)
    with np.errstate(invalid="ignore"):
        big = np.abs(out) >= BLANK_LIMIT  # False at NaN
    if big.any():
        blank = big & np.isfinite(out)
        if blank.any():
            out = np.where(blank, np.float32(np.nan), out)
    return out


def _is_number(t: pa.DataType) -> bool:
    return pa.types.is_floating(t) or pa.types.is_integer(t)


def band_planes(
    col: pa.Array, ids: np.ndarray, cutout_size: int, path: PathLike, name: str
) -> np.ndarray:
    """One band column of a record batch as float32 (n, H, W); rows without the band are NaN."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    t = col.type
    if not (pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)):
        raise DataError(f"{path}: column {name!r} has type {t}, expected a list of float32 pixels")
    if not _is_number(t.value_type):
        raise DataError(f"{path}: column {name!r} holds {t.value_type}, expected float pixels")
    n, npix = len(col), cutout_size * cutout_size
    if pa.types.is_fixed_size_list(t):
        if t.list_size != npix and n:
            raise DataError(
                f"{path}: column {name!r}, row id {int(ids[0])}: cutout has {t.list_size} pixels, "
                f"expected {npix} ({cutout_size}x{cutout_size})"
            )
        present = ~col.is_null().to_numpy(zero_copy_only=False) if col.null_count else None
        flat = col.flatten() if present is None else col.filter(col.is_valid()).flatten()
        values = flat.to_numpy(zero_copy_only=False)
    else:
        offsets = np.asarray(col.offsets.to_numpy(zero_copy_only=False), dtype=np.int64)
        lengths = np.diff(offsets)
        if col.null_count:
            lengths = np.where(col.is_null().to_numpy(zero_copy_only=False), 0, lengths)
        bad = np.flatnonzero((lengths != npix) & (lengths != 0))
        if bad.size:
            i = int(bad[0])
            raise DataError(
                f"{path}: column {name!r}, row id {int(ids[i])}: cutout has {int(lengths[i])} "
                f"pixels, expected {npix} ({cutout_size}x{cutout_size}) ({bad.size} such rows)"
            )
        present = None if (lengths == npix).all() else lengths == npix
        raw = col.values.to_numpy(zero_copy_only=False)
        if present is None:
            values = raw[offsets[0] : offsets[-1]]
        else:
            values = np.concatenate(
                [raw[offsets[i] : offsets[i] + npix] for i in np.flatnonzero(present)]
                or [np.empty(0, dtype=raw.dtype)]
            )
    values = blank_to_nan(values)
    if present is None:
        planes = values.reshape(n, cutout_size, cutout_size)
    else:
        planes = np.full((n, cutout_size, cutout_size), np.nan, dtype=np.float32)
        planes[present] = values.reshape(-1, cutout_size, cutout_size)
    if not pa.types.is_floating(t.value_type):
        return planes
    if not np.isinf(planes).any():
        return planes
    bad_rows = np.isinf(planes).any(axis=(1, 2))
    if bad_rows.any():
        i = int(np.flatnonzero(bad_rows)[0])
        raise DataError(
            f"{path}: column {name!r}, row id {int(ids[i])}: cutout holds infinite pixels "
            f"({int(bad_rows.sum())} such rows); use NaN for missing pixels"
        )
    return planes


def iter_cutouts(
    path: PathLike,
    bands: Sequence[str],
    cutout_size: int,
    *,
    batch_size: int = 256,
    id_col: str = "id",
    prefix: str = DEFAULT_PREFIX,
    buffers: int = 0,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(ids, flux)`` batches: int64 (n,) and float32 (n, bands, H, W) with NaN = missing.

    With ``buffers=k`` the batches are written into k arrays used in turn (no new allocation
    per batch); a batch stays intact until k more have been read.
    """
    cols = [band_column(b, prefix) for b in bands]
    pool: list[np.ndarray] = []
    for i, batch in enumerate(iter_batches(path, [id_col, *cols], batch_size=batch_size)):
        ids = id_column(batch, id_col, path)
        shape = (len(ids), len(bands), cutout_size, cutout_size)
        if buffers and len(pool) == buffers and pool[i % buffers].shape[0] >= shape[0]:
            flux = pool[i % buffers][: shape[0]]
        else:
            flux = np.empty(shape, dtype=np.float32)
            if buffers and len(pool) < buffers:
                pool.append(flux)
        for j, name in enumerate(cols):
            flux[:, j] = band_planes(batch.column(name), ids, cutout_size, path, name)
        yield ids, flux


def cutout_table(
    ids: np.ndarray,
    flux: np.ndarray,
    bands: Sequence[str],
    *,
    id_col: str = "id",
    prefix: str = DEFAULT_PREFIX,
    band_mask: np.ndarray | None = None,
    extra: Mapping[str, pa.Array | np.ndarray] | None = None,
) -> pa.Table:
    """A datacube table in the layout above; rows with ``band_mask`` False get a null."""
    flux = np.asarray(flux, dtype=np.float32)
    n, nb, h, w = flux.shape
    if h != w:
        raise ValueError(f"cutouts must be square, got {h}x{w}")
    if nb != len(bands):
        raise ValueError(f"flux has {nb} band planes for {len(bands)} bands")
    arrays: dict[str, pa.Array] = {id_col: pa.array(np.asarray(ids, dtype=np.int64))}
    for j, band in enumerate(bands):
        values = pa.array(np.ascontiguousarray(flux[:, j]).reshape(-1), type=pa.float32())
        mask = None if band_mask is None else pa.array(~np.asarray(band_mask[:, j], dtype=bool))
        arrays[band_column(band, prefix)] = pa.FixedSizeListArray.from_arrays(
            values, h * w, mask=mask
        )
    for name, value in (extra or {}).items():
        arrays[name] = value if isinstance(value, pa.Array) else pa.array(value)
    return pa.table(arrays)


def write_cutouts(path: PathLike, table: pa.Table, *, row_group_size: int = 1024) -> None:
    """Write a cutout table to parquet atomically."""
    with atomic_path(path, suffix=".parquet") as tmp:
        pq.write_table(table, tmp, row_group_size=row_group_size)


def prefetched(items: Iterable[T], depth: int = 1) -> Iterator[T]:
    """Iterate ``items`` in a background thread, ``depth`` items ahead (errors re-raised here).

    Pair it with ``iter_cutouts(..., buffers=depth + 2)``: the consumer's batch, the queued
    ones and the one being filled each need their own buffer.
    """
    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def work() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                q.put((True, item))
            q.put((True, done))
        except BaseException as exc:  # handed to the consumer
            q.put((False, exc))

    thread = threading.Thread(target=work, name="astromodal-image-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            ok, item = q.get()
            if not ok:
                raise item
            if item is done:
                return
            yield item
    finally:
        stop.set()
        while thread.is_alive():
            try:
                q.get(timeout=0.05)
            except queue.Empty:
                pass
        thread.join()
