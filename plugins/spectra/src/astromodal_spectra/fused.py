"""Fused numba kernels of the per-pixel DESI path: Arrow list buffers -> row scales, features.

:func:`read_flux_rows` takes a flux_ivar group's columns of one record batch as flat value
buffers and offsets (zero copy, no per-row Python, no padded float64 arrays) and computes each
row's valid-pixel count, median abs(flux) and median sigma in one pass. :meth:`FluxRows.features`
then writes the feature vectors of the patches that hold a valid pixel straight into one
``(m, 2 * patch_size)`` float32 array, and :meth:`FluxRows.sample` picks a training row's
patches by hashed key and writes only theirs.

The arithmetic is the reference path's (``points.read_flux_ivar``, ``group_model.row_norm``,
``point_features``, ``patchify``, ``GroupSample.add``), operation for operation: float64 from
the stored values, ``1 / sqrt(ivar)``, medians as ``np.nanmedian`` forms them (the mean of the
two middle values of an even count), features rounded once to float32, the ``ABSENT`` sentinel
for masked and padded pixels, the same splitmix64 patch keys and the same ``cap`` smallest
(key, patch) pairs a row. So tokens and training samples are bit-identical to that path, which
still serves every other group kind, ``level_shape``, no numba, and the error messages.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import attrs
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from astromodal_core.errors import DataError
from astromodal_core.io import check_same_lengths, list_column

try:
    import numba

    from astromodal_core.jit import njit

    HAVE_NUMBA = True
except ImportError:  # pragma: no cover - numba absent: the reference path runs instead
    HAVE_NUMBA = False

ABSENT = -20.0  # = group_model.ABSENT (a masked point's error channel)
SIGMA_CLIP = 10.0  # = group_model.SIGMA_CLIP
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
PathLike = str | os.PathLike[str]
_NO_MASK = np.zeros(1, dtype=np.int8)

if HAVE_NUMBA:

    @njit(cache=True, inline="always")
    def _is_valid(flux, ivar, mask, has_mask, t):
        f = np.float64(flux[t])
        v = np.float64(ivar[t])
        ok = np.isfinite(f) and np.isfinite(v) and v > 0.0
        if ok and has_mask:
            ok = np.float64(mask[t]) == 0.0
        return ok

    @njit(cache=True)
    def _select(buf, n, k):
        """The k-th smallest of ``buf[:n]`` (reorders it: ``buf[:k] <= buf[k]``)."""
        lo, hi = 0, n - 1
        while hi > lo:
            mid = (lo + hi) >> 1
            a, b, c = buf[lo], buf[mid], buf[hi]
            pivot = max(min(a, b), min(max(a, b), c))
            i, j = lo, hi
            while i <= j:
                while buf[i] < pivot:
                    i += 1
                while buf[j] > pivot:
                    j -= 1
                if i <= j:
                    buf[i], buf[j] = buf[j], buf[i]
                    i += 1
                    j -= 1
            if k <= j:
                hi = j
            elif k >= i:
                lo = i
            else:
                return buf[k]
        return buf[k]

    @njit(cache=True)
    def _bracket(buf, n, tmp, first, last):
        """Bracket an order statistic of ``buf[:n]`` (n >= 63) by the ``first``-th and
        ``last``-th of a sorted sample of 63 values: one branch-free pass gathers the values
        inside the bracket into ``tmp``; returns (values below it, values gathered)."""
        smp = np.empty(63, dtype=buf.dtype)
        for j in range(63):
            smp[j] = buf[(j * n) // 63]
        smp.sort()
        lo, hi = smp[first], smp[last]
        below = 0
        m = 0
        for t in range(n):
            v = buf[t]
            below += v < lo
            tmp[m] = v
            m += (v >= lo) & (v <= hi)
        return below, m

    @njit(cache=True)
    def _middle_select(buf, n):
        h = n // 2
        upper = _select(buf, n, h)
        if n % 2:
            return upper, upper
        lower = buf[0]
        for t in range(1, h):
            lower = max(lower, buf[t])
        return lower, upper

    @njit(cache=True)
    def _middle(buf, n, tmp):
        """``(lower, upper)``: the ``(n - 1) // 2``-th and ``n // 2``-th smallest of
        ``buf[:n]`` (no NaN; ``buf`` may be reordered, ``tmp`` is scratch of ``n``). Exact
        order statistics: a sorted sample of 63 values brackets the middle, one branch-free
        pass counts the values below the bracket and gathers those inside into ``tmp``, and
        only those are selected (a quickselect of all when the bracket misses the middle)."""
        h = n // 2
        r = (n - 1) // 2
        if n >= 256:
            below, m = _bracket(buf, n, tmp, 25, 37)
            if below <= r and h < below + m:  # both middle values inside the bracket
                upper = _select(tmp, m, h - below)
                if r == h:
                    return upper, upper
                lower = tmp[0]
                for t in range(1, h - below):
                    lower = max(lower, tmp[t])
                return lower, upper
        return _middle_select(buf, n)

    @njit(cache=True)
    def _median(buf, n, tmp):
        """``np.median`` of ``buf[:n]`` (no NaN), as numpy forms it: the middle value, or the
        mean of the two middle values."""
        lower, upper = _middle(buf, n, tmp)
        if n % 2:
            return upper
        return (lower + upper) / 2.0

    @njit(cache=True)
    def _median_sigma(iv, n, tmp):
        """``np.median`` of ``1 / sqrt(iv[:n])`` from order statistics of ``iv`` itself: the
        map is monotone (decreasing), so the k-th smallest sigma is the map of the k-th
        largest ivar; only the middle one or two are mapped."""
        lower, upper = _middle(iv, n, tmp)
        if n % 2:
            return 1.0 / np.sqrt(upper)
        return (1.0 / np.sqrt(upper) + 1.0 / np.sqrt(lower)) / 2.0

    @njit(parallel=True, cache=True)
    def _row_stats(flux, ivar, mask, has_mask, off):
        n = len(off) - 1
        count = np.zeros(n, dtype=np.int64)
        med_abs = np.full(n, np.nan)
        med_sig = np.full(n, np.nan)
        bad = np.zeros(n, dtype=np.uint8)
        for i in numba.prange(n):
            a, b = off[i], off[i + 1]
            fa = np.empty(b - a)
            iv = np.empty(b - a)
            tmp = np.empty(b - a)
            m = 0
            for t in range(a, b):
                f = np.float64(flux[t])
                v = np.float64(ivar[t])
                if np.isinf(f) or np.isinf(v) or v < 0.0:
                    bad[i] = 1
                if _is_valid(flux, ivar, mask, has_mask, t):
                    fa[m] = abs(f)
                    iv[m] = v
                    m += 1
            count[i] = m
            if m:
                med_abs[i] = _median(fa, m, tmp)
                if not med_abs[i] > 0:  # the row's scale falls back on its median sigma
                    med_sig[i] = _median_sigma(iv, m, tmp)
        return count, med_abs, med_sig, bad

    @njit(parallel=True, cache=True)
    def _patch_valid(flux, ivar, mask, has_mask, off, rows, n_patches, p):
        out = np.zeros((len(rows), n_patches), dtype=np.bool_)
        for q in numba.prange(len(rows)):
            a, b = off[rows[q]], off[rows[q] + 1]
            for t in range(b - a):
                if _is_valid(flux, ivar, mask, has_mask, a + t):
                    out[q, t // p] = True
        return out

    @njit(cache=True, inline="always")
    def _write_patch(flux, ivar, mask, has_mask, a, length, s, col, p, out, r):
        for j in range(p):
            t = col * p + j
            if t < length and _is_valid(flux, ivar, mask, has_mask, a + t):
                out[r, 2 * j] = np.float32(np.float64(flux[a + t]) / s)
                out[r, 2 * j + 1] = np.float32(min((1.0 / np.sqrt(np.float64(ivar[a + t]))) / s,
                                                   SIGMA_CLIP))
            else:
                out[r, 2 * j] = np.float32(0.0)
                out[r, 2 * j + 1] = np.float32(ABSENT)

    @njit(parallel=True, cache=True)
    def _patch_features(flux, ivar, mask, has_mask, off, rows, scale, valid, start, p):
        out = np.empty((start[-1], 2 * p), dtype=np.float32)
        for q in numba.prange(len(rows)):
            a, b = off[rows[q]], off[rows[q] + 1]
            r = start[q]
            for col in range(valid.shape[1]):
                if valid[q, col]:
                    _write_patch(flux, ivar, mask, has_mask, a, b - a, scale[q], col, p, out, r)
                    r += 1
        return out

    @njit(cache=True)
    def _kth(buf, n, k, tmp):
        """The k-th smallest of ``buf[:n]`` (left as it is; ``tmp`` is scratch of ``n``): a
        sorted sample of 63 values brackets rank k, one branch-free pass gathers the values
        inside the bracket, and only those are selected (all of them when it misses)."""
        if n >= 256:
            c = (k * 63) // n
            below, m = _bracket(buf, n, tmp, max(c - 6, 0), min(c + 6, 62))
            if below <= k < below + m:
                return _select(tmp, m, k - below)
        tmp[:n] = buf[:n]
        return _select(tmp, n, k)

    @njit(cache=True, inline="always")
    def _splitmix(x):
        x = x + _GOLDEN
        x = (x ^ (x >> np.uint64(30))) * _M1
        x = (x ^ (x >> np.uint64(27))) * _M2
        return x ^ (x >> np.uint64(31))

    @njit(cache=True)
    def _row_pick(valid, q, row_key, cap, keys, cols, tmp):
        """The patches of row ``q`` kept for the sample: the ``cap`` smallest (key, patch)
        pairs of its valid patches, in ``keys[:m]`` / ``cols[:m]``; returns m."""
        m = 0
        for col in range(valid.shape[1]):
            if valid[q, col]:
                keys[m] = _splitmix(row_key ^ np.uint64(col))
                cols[m] = col
                m += 1
        if m <= cap:
            return m
        kth = _kth(keys, m, cap - 1, tmp)
        below = 0
        for t in range(m):
            if keys[t] < kth:
                below += 1
        ties = cap - below  # equal keys: the lowest patch indices first (cols ascend)
        w = 0
        for t in range(m):
            if keys[t] < kth or (keys[t] == kth and ties > 0):
                if keys[t] == kth:
                    ties -= 1
                keys[w] = keys[t]
                cols[w] = cols[t]
                w += 1
        return w

    @njit(parallel=True, cache=True)
    def _sample_patches(flux, ivar, mask, has_mask, off, rows, scale, valid, row_keys, cap,
                        limit, p):
        n, width = valid.shape
        keys = np.empty((n, width), dtype=np.uint64)  # one batch's picks (bounded by the batch)
        cols = np.empty((n, width), dtype=np.int64)
        count = np.zeros(n + 1, dtype=np.int64)
        offered = np.zeros(n, dtype=np.int64)
        for q in numba.prange(n):
            m = _row_pick(valid, q, row_keys[q], cap, keys[q], cols[q], np.empty(width, dtype=np.uint64))
            offered[q] = m
            w = 0
            for t in range(m):
                if keys[q, t] <= limit:
                    keys[q, w] = keys[q, t]
                    cols[q, w] = cols[q, t]
                    w += 1
            count[q + 1] = w
        start = np.cumsum(count)
        out = np.empty((start[-1], 2 * p), dtype=np.float32)
        out_keys = np.empty(start[-1], dtype=np.uint64)
        for q in numba.prange(n):
            a, b = off[rows[q]], off[rows[q] + 1]
            r = start[q]
            for t in range(count[q + 1]):
                out_keys[r] = keys[q, t]
                _write_patch(flux, ivar, mask, has_mask, a, b - a, scale[q], cols[q, t], p, out, r)
                r += 1
        return out_keys, out, offered.sum()


# ----------------------------------------------------------------------------- Python side


@attrs.define
class FluxRows:
    """One flux_ivar group's rows of a record batch, as flat Arrow buffers (no padding).

    ``flux`` / ``ivar`` / ``mask`` hold the stored values (their own dtypes) and ``offsets``
    the rows' starts; ``width`` is the group's padded width (the longest row, or the fitted
    length); ``norm`` / ``has`` are :func:`group_model.row_norm`'s ``(log10 scale, has data)``.
    """

    flux: np.ndarray
    ivar: np.ndarray
    mask: np.ndarray | None
    offsets: np.ndarray
    lengths: np.ndarray
    width: int
    norm: np.ndarray
    has: np.ndarray
    time: None = None

    def _args(self) -> tuple:
        mask = _NO_MASK if self.mask is None else self.mask
        return self.flux, self.ivar, mask, self.mask is not None, self.offsets

    def patch_valid(self, rows: np.ndarray, p: int) -> np.ndarray:
        """``(len(rows), ceil(width / p))`` bool: the patches holding a valid pixel."""
        return _patch_valid(*self._args(), np.asarray(rows, dtype=np.int64), -(-self.width // p), p)

    def features(self, rows: np.ndarray, scale: np.ndarray, valid: np.ndarray, p: int) -> np.ndarray:
        """``(valid.sum(), 2 p)`` float32: the feature vector of every valid patch of ``rows``
        (row-major), values and sigmas over the row's ``scale``."""
        start = np.concatenate([[0], np.cumsum(valid.sum(axis=1))]).astype(np.int64)
        return _patch_features(*self._args(), np.asarray(rows, dtype=np.int64),
                               np.ascontiguousarray(scale, dtype=np.float64), valid, start, p)

    def sample(self, rows: np.ndarray, scale: np.ndarray, valid: np.ndarray, row_keys: np.ndarray,
               cap: int, limit: np.uint64, p: int) -> tuple[np.ndarray, np.ndarray, int]:
        """``(keys, vectors, offered)``: per row the ``cap`` valid patches of smallest key
        ``splitmix(row_key ^ patch)``, those with a key ``<= limit`` and their features, and
        how many patches were offered before the ``limit`` cut."""
        keys, vec, offered = _sample_patches(
            *self._args(), np.asarray(rows, dtype=np.int64), np.ascontiguousarray(scale, dtype=np.float64),
            valid, np.ascontiguousarray(row_keys, dtype=np.uint64), int(cap), np.uint64(limit), p)
        return keys, vec, int(offered)


def _raw_list(batch: pa.RecordBatch, col: str, path: PathLike) -> tuple[np.ndarray, np.ndarray]:
    """A list column as ``(values, offsets)``: the stored values without a copy where Arrow
    allows (list / large_list of ints or floats), else :func:`list_column`'s float64."""
    arr = batch.column(col)
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    t = arr.type
    if (pa.types.is_list(t) or pa.types.is_large_list(t)) and pa.types.is_boolean(t.value_type):
        arr = pc.cast(arr, pa.list_(pa.int8()))
        t = arr.type
    plain = (pa.types.is_list(t) or pa.types.is_large_list(t)) and (
        pa.types.is_integer(t.value_type) or pa.types.is_float32(t.value_type)
        or pa.types.is_float64(t.value_type))
    if not plain:
        return list_column(pa.RecordBatch.from_arrays([arr], names=[col]), col, path)
    if arr.null_count:
        arr = pc.if_else(arr.is_null(), pa.scalar([], type=t), arr)
    off = np.asarray(arr.offsets.to_numpy(zero_copy_only=False), dtype=np.int64)
    values = arr.values.to_numpy(zero_copy_only=False)[off[0]:off[-1]]
    return values, off - off[0]


def read_flux_rows(batch: pa.RecordBatch, spec: Mapping[str, Any], mask_col: str | None,
                   ids: np.ndarray, path: PathLike, length: int | None) -> FluxRows:
    """A flux_ivar group's rows of one batch, validated as ``points.read_flux_ivar`` does
    (the same DataError for inf, negative ivar, lengths that disagree or rows too long)."""
    from .points import _width, read_flux_ivar

    fcol, icol = spec["flux_col"], spec["ivar_col"]
    flux, off = _raw_list(batch, fcol, path)
    ivar, off_i = _raw_list(batch, icol, path)
    check_same_lengths(off, off_i, ids, path, fcol, icol)
    mask = None
    if mask_col is not None:
        mask, off_m = _raw_list(batch, mask_col, path)
        check_same_lengths(off, off_m, ids, path, fcol, mask_col)
    count, med_abs, med_sig, bad = _row_stats(flux, ivar, _NO_MASK if mask is None else mask,
                                              mask is not None, off)
    if bad.any():  # the reference reader names the first bad row and column
        read_flux_ivar(batch, spec, mask_col, ids, path, length)
        raise DataError(f"{path}: columns {fcol!r} / {icol!r} hold inf or negative ivar")
    lengths = np.diff(off)
    w = _width(lengths, length, path, ids, fcol, spec["name"])
    has = count > 0
    norm = np.full(len(has), np.nan)
    if has.any():  # as group_model.row_norm
        scale, sig = med_abs[has], med_sig[has]
        scale = np.where(scale > 0, scale, np.where(sig > 0, sig, 1.0))
        norm[has] = np.log10(scale)
    return FluxRows(flux=flux, ivar=ivar, mask=mask, offsets=off, lengths=lengths, width=w,
                    norm=norm, has=has)
