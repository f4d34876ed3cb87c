"""Read one group's points from a parquet record batch into padded arrays, validating them.

Every kind becomes ``Points``: per row a run of points with a value, an uncertainty and (ZTF)
a time, padded to a common width. ``valid`` marks usable points; ``lengths`` the row lengths.
Masking rules (documented in the README): NaN values, ivar = 0, mask bits, magnitudes
beyond +-90 (sentinels) and non-positive errors mask a point; inf, negative ivar, unsorted
or non-finite times, lengths that disagree and XP rows with the wrong number of coefficients
raise :class:`DataError` naming the file, column and row id.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from typing import Any

import attrs
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from astromodal_core.errors import DataError
from astromodal_core.io import check_same_lengths, list_column

PathLike = str | os.PathLike[str]
MAG_SENTINEL = 90.0


@attrs.define
class Points:
    """Padded per-row points of one group (n rows, W points)."""

    value: np.ndarray  # (n, W) flux / mag, NaN where not valid
    sigma: np.ndarray  # (n, W) 1-sigma uncertainty
    valid: np.ndarray  # (n, W) bool
    lengths: np.ndarray  # (n,) points in each row (absent row = 0)
    time: np.ndarray | None = None  # (n, W) ZTF times


def pad(values: np.ndarray, offsets: np.ndarray, width: int, fill: float = np.nan) -> np.ndarray:
    """Scatter a flat list column into an (n, width) array."""
    n = len(offsets) - 1
    lens = np.diff(offsets)
    out = np.full((n, width), fill, dtype=np.float64)
    if len(values):
        rows = np.repeat(np.arange(n), lens)
        cols = np.arange(len(values)) - np.repeat(offsets[:-1], lens)
        keep = cols < width
        out[rows[keep], cols[keep]] = values[keep]
    return out


def _first_bad(bad_flat: np.ndarray, offsets: np.ndarray) -> int:
    i = int(np.flatnonzero(bad_flat)[0])
    return int(np.searchsorted(offsets, i, side="right") - 1)


def _raise_row(path: PathLike, ids: np.ndarray, row: int, col: str, what: str, n: int) -> None:
    raise DataError(f"{path}: row id {int(ids[row])}: column {col!r} {what} ({n} such values)")


def _list(batch: pa.RecordBatch, col: str, path: PathLike) -> tuple[np.ndarray, np.ndarray]:
    arr = batch.column(col)
    t = arr.type
    if (pa.types.is_list(t) or pa.types.is_large_list(t)) and pa.types.is_boolean(t.value_type):
        arr = pc.cast(arr, pa.list_(pa.int8()))
        batch = pa.RecordBatch.from_arrays([arr], names=[col])
    return list_column(batch, col, path)


def _width(lengths: np.ndarray, length: int | None, path: PathLike, ids: np.ndarray, col: str,
           name: str) -> int:
    if length is None:
        return max(1, int(lengths.max(initial=0)))
    over = np.flatnonzero(lengths > length)
    if over.size:
        i = int(over[0])
        raise DataError(
            f"{path}: row id {int(ids[i])}: column {col!r} has {int(lengths[i])} points, more "
            f"than group {name!r} was trained for ({length}); retrain or set the group's 'length'"
        )
    return int(length)


def read_flux_ivar(batch: pa.RecordBatch, spec: Mapping[str, Any], mask_col: str | None,
                   ids: np.ndarray, path: PathLike, length: int | None) -> Points:
    fcol, icol = spec["flux_col"], spec["ivar_col"]
    flux, off = _list(batch, fcol, path)
    ivar, off_i = _list(batch, icol, path)
    check_same_lengths(off, off_i, ids, path, fcol, icol)
    for col, v in ((fcol, flux), (icol, ivar)):
        bad = np.isinf(v)
        if bad.any():
            _raise_row(path, ids, _first_bad(bad, off), col, "holds inf", int(bad.sum()))
    neg = ivar < 0
    if neg.any():
        _raise_row(path, ids, _first_bad(neg, off), icol, "holds negative ivar", int(neg.sum()))
    valid = np.isfinite(flux) & np.isfinite(ivar) & (ivar > 0)
    if mask_col is not None:
        mask, off_m = _list(batch, mask_col, path)
        check_same_lengths(off, off_m, ids, path, fcol, mask_col)
        valid &= np.nan_to_num(mask, nan=1.0) == 0
    lengths = np.diff(off)
    w = _width(lengths, length, path, ids, fcol, spec["name"])
    sigma = np.where(valid, 1.0 / np.sqrt(np.where(valid, ivar, 1.0)), np.nan)
    vmask = pad(valid.astype(np.float64), off, w, 0.0) > 0
    return Points(
        value=np.where(vmask, pad(flux, off, w), np.nan),
        sigma=np.where(vmask, pad(sigma, off, w), np.nan),
        valid=vmask,
        lengths=lengths,
    )


def _cap(lengths: np.ndarray, length: int | None, name: str) -> np.ndarray:
    """Ragged ZTF rows keep their first ``length`` points; a warning counts the longer rows."""
    if length is None:
        return lengths
    over = int(np.count_nonzero(lengths > length))
    if over:
        warnings.warn(f"group {name!r}: {over} light curve(s) longer than the {length} points "
                      "it was trained for keep their first points (set the group's 'length')",
                      RuntimeWarning, stacklevel=4)
    return np.minimum(lengths, length)


def read_ztf(batch: pa.RecordBatch, spec: Mapping[str, Any], ids: np.ndarray, path: PathLike,
             length: int | None) -> Points:
    mcol, ecol, tcol = spec["mag_col"], spec["err_col"], spec["time_col"]
    mag, off = _list(batch, mcol, path)
    err, off_e = _list(batch, ecol, path)
    t, off_t = _list(batch, tcol, path)
    check_same_lengths(off, off_e, ids, path, mcol, ecol)
    check_same_lengths(off, off_t, ids, path, mcol, tcol)
    for col, v in ((mcol, mag), (ecol, err)):
        bad = np.isinf(v)
        if bad.any():
            _raise_row(path, ids, _first_bad(bad, off), col, "holds inf", int(bad.sum()))
    bad = ~np.isfinite(t)
    if bad.any():
        _raise_row(path, ids, _first_bad(bad, off), tcol, "holds a non-finite time", int(bad.sum()))
    if len(t) > 1:
        step = np.diff(t) < 0
        same_row = np.diff(np.searchsorted(off, np.arange(len(t)), side="right")) == 0
        unsorted = np.concatenate([[False], step & same_row])
        if unsorted.any():
            _raise_row(path, ids, _first_bad(unsorted, off), tcol,
                       "is not sorted in time", int(unsorted.sum()))
    valid = np.isfinite(mag) & (np.abs(mag) < MAG_SENTINEL) & np.isfinite(err) & (err > 0)
    lengths = np.diff(off)
    if spec.get("layout") == "ragged":
        lengths = _cap(lengths, length, spec["name"])
        w = max(1, int(lengths.max(initial=0))) if length is None else int(length)
    else:
        w = _width(lengths, length, path, ids, mcol, spec["name"])
    vmask = pad(valid.astype(np.float64), off, w, 0.0) > 0
    return Points(
        value=np.where(vmask, pad(mag, off, w), np.nan),
        sigma=np.where(vmask, pad(err, off, w), np.nan),
        valid=vmask,
        lengths=lengths,
        time=pad(t, off, w),
    )


def _matmul_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` for ``a`` of one row or many, with the same bits per row: numpy sends a
    single row to BLAS gemv, whose sums round differently from gemm (the many-row path), so a
    single row goes through gemm as two."""
    if len(a) == 1:
        return (np.concatenate([a, a]) @ b)[:1]
    return a @ b


def read_xp(batch: pa.RecordBatch, spec: Mapping[str, Any], design: np.ndarray,
            ids: np.ndarray, path: PathLike, corr_col: str | None = None) -> Points:
    """Sample XP coefficients as gaiaxpy.convert does: flux = c @ D and
    sigma^2 = diag(D^T diag(e) R diag(e) D), R the coefficient correlations (identity when the
    file has no correlation column)."""
    ccol, ecol = spec["coefficients_col"], spec["errors_col"]
    ncoef = int(spec["n_coefficients"])
    coef, off = _list(batch, ccol, path)
    errs, off_e = _list(batch, ecol, path)
    lengths = np.diff(off)
    present = lengths > 0
    wrong = np.flatnonzero(present & (lengths != ncoef))
    if wrong.size:
        i = int(wrong[0])
        raise DataError(
            f"{path}: row id {int(ids[i])}: column {ccol!r} has {int(lengths[i])} coefficients, "
            f"expected {ncoef} ({wrong.size} such rows)"
        )
    check_same_lengths(off, off_e, ids, path, ccol, ecol)
    for col, v in ((ccol, coef), (ecol, errs)):
        bad = ~np.isfinite(v)
        if bad.any():
            _raise_row(path, ids, _first_bad(bad, off), col, "holds NaN or inf", int(bad.sum()))
    n, w = len(ids), design.shape[1]
    value = np.full((n, w), np.nan)
    sigma = np.full((n, w), np.nan)
    if present.any():
        c = coef.reshape(-1, ncoef)
        e = errs.reshape(-1, ncoef)
        value[present] = _matmul_rows(c, design)
        if corr_col is None:
            sigma[present] = np.sqrt(_matmul_rows(e * e, design * design))
        else:
            r, off_r = _list(batch, corr_col, path)
            ntri = ncoef * (ncoef - 1) // 2
            lr = np.diff(off_r)
            bad = np.flatnonzero(present & (lr != ntri))
            if bad.size:
                i = int(bad[0])
                raise DataError(f"{path}: row id {int(ids[i])}: column {corr_col!r} has "
                                f"{int(lr[i])} values, expected {ntri}")
            keep = np.repeat(present, lr)
            tri = r[keep].reshape(-1, ntri)
            if not np.isfinite(tri).all():
                i = int(np.flatnonzero(present)[np.flatnonzero(~np.isfinite(tri).all(1))[0]])
                raise DataError(f"{path}: row id {int(ids[i])}: column {corr_col!r} holds NaN")
            rmat = np.zeros((len(tri), ncoef, ncoef))
            li, lj = np.tril_indices(ncoef, k=-1)
            rmat[:, li, lj] = tri
            rmat += np.transpose(rmat, (0, 2, 1))
            rmat[:, np.arange(ncoef), np.arange(ncoef)] = 1.0
            a = e[:, :, None] * design[None]
            sigma[present] = np.sqrt(np.maximum(np.einsum("nik,nik->nk", a, rmat @ a), 0.0))
    valid = np.repeat(present[:, None], w, axis=1) & (sigma > 0)
    return Points(value=value, sigma=sigma, valid=valid, lengths=np.where(present, w, 0))
