"""The quantile codec building block: values -> ordinal tokens by per-column quantile bins.

A plugin for a new photometric system, a catalogue of scalars or a per-epoch light curve is
mostly configuration of :class:`QuantileBins`: it fits bin edges on sampled values, encodes
scalar columns ``(n,)``, several columns ``(n, k)`` (one table per column) and ragged value
arrays ``(flat, indptr)`` (one shared table), decodes tokens to bin medians, gives the value of
every token id (the value protocol of ordinal keys) and saves as a JSON config plus small
arrays (what :meth:`astromodal_core.Tokenizer._state` returns)::

    from astromodal_core.blocks import QuantileBins

    bins = QuantileBins(64, columns=["w1", "w2"], sentinels={"w1": [99.0]})
    bins.fit({"w1": sample_w1, "w2": sample_w2})  # NaN, inf and sentinels are left out
    tokens = bins.encode(mags)                     # (n, 2) values -> (n, 2) uint16; missing -> 64
    values = bins.decode(tokens)                   # bin medians, NaN at the mask token
    per_id = bins.token_values("w1")               # float64 (65,): value of every token id
    config, arrays = bins.state()                  # JSON-able config, small float arrays
    again = QuantileBins.from_state(config, arrays)  # validated: CodecFormatError if damaged

Tokens. The token of a value ``x`` is ``np.searchsorted(edges, x, side="right")``: bin ``t``
holds ``edges[t-1] <= x < edges[t]``; the first and last bins are open-ended. NaN, +-inf and a
column's declared sentinels are the mask token ``n_bins`` (``vocab_size = n_bins + 1``); keys
built on these tokens are ordinal. Ties in the sample (a discrete column, a catalogue default)
merge edges, so a column may use fewer than ``n_bins`` bins: its ``effective_bins``, never
padded with empty or repeated bins; ids at or above it decode to NaN.

Speed. With numba installed (``astromodal-core[fast]``) encoding runs a compiled, GIL-free
lookup-table kernel on a thread pool (``ASTROMODAL_THREADS`` threads, default all cores);
without it (or with ``ASTROMODAL_NO_NUMBA=1``, or ``backend="numpy"``) a numpy path gives
identical tokens. On a CPU with AVX2, float32 values take an eight-lane kernel with hardware
gathers (:mod:`astromodal_core.blocks.simd`; ``ASTROMODAL_NO_SIMD=1`` turns it off), again
with the same tokens. Arrow columns are encoded where they lie: given pyarrow int / float32 /
float64 arrays (e.g. the columns of a record batch), :meth:`QuantileBins.start_encode` has the
kernel read their value buffers and take their validity bitmaps as the missing mask (no copy,
no float64 round trip) and write the tokens straight into the caller's ``(n, k)`` array, while
the caller reads the next batch::

    pending = bins.start_encode([batch.column(c) for c in bins.columns], out[start:stop])
    ...                                  # read the next batch meanwhile
    n_missing = pending.result()         # mask tokens written per column

New ``(n, k)`` token arrays are stored column by column (each column contiguous), the layout
the kernels write fastest (a row-major ``out`` costs about 15 % more end to end).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import attrs
import numpy as np
import pyarrow as pa

from ..errors import CodecFormatError, DataError, NotFittedError
from ..tokenizer import check_edges
from . import simd

try:  # optional dependency: astromodal-core[fast]
    import numba

    from ..jit import njit

    HAVE_NUMBA = os.environ.get("ASTROMODAL_NO_NUMBA", "") == ""
except ImportError:  # pragma: no cover - exercised when numba is absent
    numba = None
    HAVE_NUMBA = False

__all__ = [
    "BACKENDS",
    "HAVE_NUMBA",
    "BinTable",
    "Lookup",
    "PendingTokens",
    "QuantileBins",
    "arrow_values",
    "build_lookup",
    "encode_many",
    "encode_numpy",
    "encode_values",
    "fit_bins",
    "missing_mask",
    "num_threads",
    "quantile_edges",
    "resolve_backend",
    "sentinel_flags",
    "submit_many",
    "zero_copy_type",
]

BACKENDS = ("auto", "numba", "numpy")
MAX_BINS = 65535  # uint16 tokens: ids 0..65534 plus the mask token 65535
_ARRAYS = ("edges", "centers", "widths", "counts")


# ------------------------------------------------------------------------------ one column's bins
@attrs.frozen(eq=False)
class BinTable:
    """Fitted bins of one column.

    ``edges`` (effective_bins - 1,) increasing float64; ``centers`` (effective_bins,) the
    median training value of each bin; ``widths`` (effective_bins,) each bin's extent (the
    outer bins end at the sample's minimum / maximum); ``counts`` training values per bin.
    """

    edges: np.ndarray
    centers: np.ndarray
    widths: np.ndarray
    counts: np.ndarray
    n_samples: int

    @property
    def effective_bins(self) -> int:
        """The number of bins (token ids) the column really uses."""
        return int(len(self.edges) + 1)

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        """``{prefix + "edges": ..., "centers", "widths", "counts"}``."""
        return {f"{prefix}{name}": getattr(self, name) for name in _ARRAYS}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, Any], prefix: str, n_samples: int,
                    where: str = "bins") -> BinTable:
        """A table from saved arrays, validated: :class:`CodecFormatError` naming ``where`` and
        the array when one is absent, not numeric, of the wrong shape, or holds bad values."""
        raw = {}
        for name in _ARRAYS:
            key = f"{prefix}{name}"
            if key not in arrays:
                raise CodecFormatError(f"{where}: missing array {key!r}")
            a = np.asarray(arrays[key])
            if not (np.issubdtype(a.dtype, np.number) and not np.issubdtype(a.dtype, np.complexfloating)):
                raise CodecFormatError(f"{where}: array {key!r} has dtype {a.dtype}, expected numbers")
            if a.ndim != 1:
                raise CodecFormatError(f"{where}: array {key!r} has shape {a.shape}, expected 1-D")
            raw[name] = a
        edges = check_edges(raw["edges"].astype(np.float64), f"{where} (array {prefix}edges)")
        n = len(edges) + 1
        for name in _ARRAYS[1:]:
            if raw[name].shape != (n,):
                raise CodecFormatError(
                    f"{where}: array {prefix}{name!s} has shape {raw[name].shape}, expected ({n},) "
                    f"for {len(edges)} edges"
                )
        centers = raw["centers"].astype(np.float64)
        widths = raw["widths"].astype(np.float64)
        if not np.all(np.isfinite(centers)):
            raise CodecFormatError(f"{where}: array {prefix}centers holds NaN or infinite values")
        if not np.all(np.isfinite(widths)) or np.any(widths < 0):
            raise CodecFormatError(f"{where}: array {prefix}widths holds negative, NaN or infinite values")
        if np.any(raw["counts"] < 0) or not np.all(raw["counts"] == np.round(raw["counts"])):
            raise CodecFormatError(f"{where}: array {prefix}counts holds negative or fractional counts")
        if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples < 0:
            raise CodecFormatError(f"{where}: n_samples must be a count, got {n_samples!r}")
        return cls(edges=edges, centers=centers, widths=widths,
                   counts=raw["counts"].astype(np.int64), n_samples=int(n_samples))


def _midpoint_edges(s: np.ndarray, n_bins: int) -> np.ndarray:
    n = len(s)
    k = np.arange(1, n_bins, dtype=np.int64)
    idx = np.clip((k * n) // n_bins, 1, n - 1)
    # a midpoint of two equal values is that value; keep edges strictly increasing
    return np.unique(0.5 * (s[idx - 1] + s[idx]))


def quantile_edges(sorted_values: np.ndarray, n_bins: int) -> np.ndarray:
    """Strictly increasing edges splitting a sorted sample into ``<= n_bins`` equal-count bins.

    With at most ``n_bins`` distinct values every value gets its own bin (edges at the
    midpoints between distinct values). Otherwise edge ``k`` is the midpoint of the order
    statistics either side of quantile ``k / n_bins``. A value repeated more often than one
    bin holds (an "atom": a tie, a catalogue default) gets a bin of its own and the other
    bins are spread over the remaining values, so ties cost one bin each instead of
    collapsing many quantiles into one.
    """
    s = np.asarray(sorted_values, dtype=np.float64)
    n = len(s)
    if n < 2:
        return np.empty(0, dtype=np.float64)
    first = np.concatenate([[True], s[1:] != s[:-1]])
    distinct = s[first]
    if len(distinct) <= n_bins:
        return 0.5 * (distinct[:-1] + distinct[1:])
    counts = np.diff(np.concatenate([np.flatnonzero(first), [n]]))
    mid = 0.5 * (distinct[:-1] + distinct[1:])  # midpoint above each distinct value

    def atom_edges(mask: np.ndarray) -> np.ndarray:
        where = np.flatnonzero(mask)
        below = mid[where[where > 0] - 1]
        above = mid[where[where < len(distinct) - 1]]
        return np.unique(np.concatenate([below, above]))

    atoms = np.zeros(len(distinct), dtype=bool)
    fixed = np.empty(0)
    while True:
        budget = n_bins - len(fixed)  # bins left for the other values
        rest = int(counts[~atoms].sum())
        new = (~atoms) & (counts * budget > rest)
        if not new.any():
            break
        trial = atom_edges(atoms | new)
        if n_bins - len(trial) < 2:
            break
        atoms |= new
        fixed = trial
    if not atoms.any():
        return _midpoint_edges(s, n_bins)
    others = s[~np.repeat(atoms, counts)]
    edges = _midpoint_edges(others, n_bins - len(fixed)) if len(others) >= 2 else np.empty(0)
    return _drop_empty(s, np.unique(np.concatenate([edges, fixed])))


def _drop_empty(s: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Remove the lower edge of every bin holding no sample value (the partition is unchanged)."""
    while len(edges):
        bounds = np.concatenate([[0], np.searchsorted(s, edges, side="left"), [len(s)]])
        empty = np.flatnonzero(np.diff(bounds) == 0)
        if not len(empty):
            break
        edges = np.delete(edges, np.unique(np.maximum(empty - 1, 0)))
    return edges


def fit_bins(values: np.ndarray, n_bins: int) -> BinTable:
    """Bins of a sample of finite values (order does not matter)."""
    s = np.sort(np.asarray(values, dtype=np.float64))
    if not len(s):
        raise ValueError("no finite values to fit bins on")
    edges = quantile_edges(s, n_bins)
    bounds = np.concatenate([[0], np.searchsorted(s, edges, side="left"), [len(s)]])
    start, stop = bounds[:-1], bounds[1:]
    counts = (stop - start).astype(np.int64)
    lower = np.concatenate([[s[0]], edges])
    upper = np.concatenate([edges, [s[-1]]])
    nonempty = counts > 0
    lo_mid = np.where(nonempty, (start + stop - 1) // 2, 0)
    hi_mid = np.where(nonempty, (start + stop) // 2, 0)
    lo_mid = np.minimum(lo_mid, len(s) - 1)
    hi_mid = np.minimum(hi_mid, len(s) - 1)
    centers = np.where(nonempty, 0.5 * (s[lo_mid] + s[hi_mid]), 0.5 * (lower + upper))
    widths = np.maximum(upper - lower, 0.0)
    return BinTable(edges=edges, centers=centers, widths=widths, counts=counts, n_samples=len(s))


def missing_mask(values: Any, sentinels: Sequence[float] = ()) -> np.ndarray:
    """True where a value is NaN, +-inf or one of ``sentinels``."""
    values = np.asarray(values, dtype=np.float64)
    out = ~np.isfinite(values)
    for s in sentinels:
        out |= values == s
    return out


# ------------------------------------------------------------------------------ value -> token kernels
_CELLS_PER_EDGE = (4, 8, 16, 32, 64)
_MAX_CELLS = 1 << 16


@attrs.frozen(eq=False)
class Lookup:
    """Edges plus the cell table the numba kernel uses.

    The kernel maps a value to one of ``n_cells`` equal-width cells between the first and last
    edge; ``lut[c]:lut[c+1]`` is the range of edges that can lie in cell ``c``, and a binary
    search over that (usually tiny) range finishes. The cell function is monotone, so the
    result is exactly ``searchsorted(edges, x, "right")`` whatever the distribution. When no
    cell holds more than one edge (``max_run <= 1``, the usual case) the kernel takes a
    branch-free step instead of the search: ``lut[c] + (padded[lut[c]] <= x)``, where
    ``padded`` is ``edges`` followed by +inf.
    """

    edges: np.ndarray
    lut: np.ndarray
    lo: float
    scale: float
    n_cells: int
    padded: np.ndarray | None = None
    max_run: int = -1  # the most edges one cell holds (-1: unknown, search every value)
    f32: simd.Float32Cells | None = None  # float32 tables of the AVX2 kernel (None: not built)


def _cell_numpy(x: np.ndarray, lo: float, scale: float, n_cells: int) -> np.ndarray:
    v = (np.asarray(x, dtype=np.float64) - lo) * scale
    c = np.zeros(v.shape, dtype=np.int64)
    inside = v >= 0
    c[inside] = np.minimum(v[inside], n_cells - 1).astype(np.int64)
    return c


def build_lookup(edges: np.ndarray) -> Lookup:
    """The cell table of a set of non-decreasing edges: the smallest (from 4 cells per edge,
    doubling up to 64 or ``_MAX_CELLS``) in which no cell holds two edges, so the kernel's
    branch-free path applies and the table stays in the core's cache (uint16 entries)."""
    edges = np.ascontiguousarray(edges, dtype=np.float64)
    n = len(edges)
    padded = np.concatenate([edges, [np.inf]])
    index = np.uint16 if n <= np.iinfo(np.uint16).max else np.uint32
    if n < 2 or edges[-1] <= edges[0]:
        lut = np.array([0, n], dtype=index)
        return Lookup(edges=edges, lut=lut, lo=float(edges[0]) if n else 0.0, scale=0.0, n_cells=1,
                      padded=padded, max_run=n)
    lo = float(edges[0])
    for per_edge in _CELLS_PER_EDGE:
        n_cells = int(min(_MAX_CELLS, per_edge * (n + 1)))
        scale = float(n_cells / (edges[-1] - edges[0]))
        if not np.isfinite(scale):
            scale = 0.0
        cells = _cell_numpy(edges, lo, scale, n_cells)
        lut = np.searchsorted(cells, np.arange(n_cells + 1), side="left").astype(index)
        lut[-1] = n
        max_run = int(np.diff(lut.astype(np.int64)).max())
        if max_run <= 1 or n_cells == _MAX_CELLS:
            break
    f32 = simd.float32_cells(edges) if simd.AVAILABLE else None
    return Lookup(edges=edges, lut=lut, lo=lo, scale=scale, n_cells=n_cells, padded=padded, max_run=max_run,
                  f32=f32)


def _as_float(x: Any) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float64)
    return x


def encode_numpy(x: Any, edges: np.ndarray, mask_token: int, sentinels: Any,
                 out: np.ndarray | None = None) -> np.ndarray:
    """Reference path: ``searchsorted(edges, x, "right")``, mask for NaN / inf / sentinels."""
    x = _as_float(x)
    tokens = np.searchsorted(edges, x, side="right")
    missing = ~np.isfinite(x)
    for s in np.asarray(sentinels, dtype=np.float64).reshape(-1):
        missing |= x == s
    tokens[missing] = mask_token
    if out is None:
        return tokens.astype(np.uint16)
    out[...] = tokens
    return out


def sentinel_flags(edges: np.ndarray, sentinels: Any) -> np.ndarray:
    """uint8 ``(len(edges) + 1,)``: 1 at the token of each sentinel, so the kernel compares a
    value with the sentinels only when its token is one of theirs."""
    flags = np.zeros(len(edges) + 1, dtype=np.uint8)
    sent = np.asarray(sentinels, dtype=np.float64).reshape(-1)
    sent = sent[~np.isnan(sent)]
    flags[np.searchsorted(edges, sent, side="right")] = 1
    return flags


def _check_flags(edges: np.ndarray, sentinels: Any) -> np.ndarray:
    """uint8 ``(len(edges) + 2,)``: :func:`sentinel_flags` plus the tokens of NaN and -inf
    (0), of +inf (``len(edges)``) and one slot past (+inf with no edge): the kernel tests a
    value for "missing" only when its token is flagged."""
    flags = np.zeros(len(edges) + 2, dtype=np.uint8)
    flags[: len(edges) + 1] = sentinel_flags(edges, sentinels)
    flags[0] = flags[len(edges)] = flags[len(edges) + 1] = 1
    return flags


if numba is not None:

    @njit(cache=True, nogil=True, inline="always")
    def _cell(v, lo, scale, flast):  # pragma: no cover
        """The cell of ``v`` (0 for NaN): ``_cell_numpy``'s function, without a branch, as an
        unsigned index (no negative-index wraparound in the table lookup)."""
        w = (v - lo) * scale
        w = w if w > 0.0 else 0.0
        w = w if w < flast else flast
        return np.uint64(np.int64(w))

    @njit(cache=True, nogil=True, inline="always")
    def _is_missing(v, null, sentinels):  # pragma: no cover
        """Whether a value of a flagged token is missing: null in the bitmap, NaN, +-inf or
        a sentinel."""
        bad = null or not (abs(v) < np.inf)
        for s in range(sentinels.shape[0]):
            bad |= v == sentinels[s]
        return bad

    @njit(cache=True, nogil=True)
    def _encode_kernel(x, valid, voff, edges, padded, lut, lo, scale, n_cells, single, flags, sentinels,
                       mask_token, out):  # pragma: no cover
        """``out[i]`` = token of ``x[i]`` (any int / float dtype, compared as float64); a value
        whose bit ``voff + i`` of the Arrow validity bitmap ``valid`` is 0 (when ``valid`` is
        not empty), NaN, +-inf or a sentinel gets ``mask_token``; returns how many did.
        ``single``: no cell holds more than one edge (see :class:`Lookup`); ``flags``: see
        :func:`_check_flags` (the tokens NaN, +-inf and the sentinels land on: only a value
        with such a token is tested, so the usual value takes no branch it mispredicts)."""
        n = x.shape[0]
        has_valid = valid.shape[0] > 0
        flast = np.float64(n_cells - 1)
        missing = 0
        if single and not has_valid:  # the usual case: one step from the table, no bitmap
            for i in range(n):
                v = np.float64(x[i])
                a = np.uint64(lut[_cell(v, lo, scale, flast)])
                a += np.uint64(padded[a] <= v)
                t = a
                if flags[a] and _is_missing(v, False, sentinels):
                    t = np.uint64(mask_token)
                    missing += 1
                out[i] = t
            return missing
        for i in range(n):
            v = np.float64(x[i])
            null = False
            if has_valid:
                j = i + voff
                null = ((valid[j >> 3] >> (j & 7)) & 1) == 0
            c = _cell(v, lo, scale, flast)
            a = np.uint64(lut[c])
            if single:  # branch-free: one step from the table
                a += np.uint64(padded[a] <= v)
            else:
                b = np.uint64(lut[c + np.uint64(1)])
                while a < b:  # first edge > v in [a, b)
                    m = (a + b) >> np.uint64(1)
                    if edges[m] <= v:
                        a = m + np.uint64(1)
                    else:
                        b = m
            t = a
            if (null or flags[a]) and _is_missing(v, null, sentinels):
                t = np.uint64(mask_token)
                missing += 1
            out[i] = t
        return missing


def _run_kernel(x: np.ndarray, valid: np.ndarray, voff: int, lk: Lookup, sentinels: np.ndarray,
                flags: np.ndarray, mask_token: np.uint16, out: np.ndarray) -> int:
    if lk.f32 is not None:  # float32 tables built: the AVX2 kernel, where it applies to x and out
        missing = simd.encode_f32(x, valid, voff, lk.f32, sentinels, mask_token, out)
        if missing is not None:
            return missing
    padded = lk.padded if lk.padded is not None else np.concatenate([lk.edges, [np.inf]])
    return int(_encode_kernel(x, valid, voff, lk.edges, padded, lk.lut, lk.lo, lk.scale, lk.n_cells,
                              0 <= lk.max_run <= 1, flags, sentinels, mask_token, out))


_CHUNK = 1 << 18  # rows of one column a task encodes (one task a column of a default record batch)
_NO_BITMAP = np.empty(0, dtype=np.uint8)
_pool: ThreadPoolExecutor | None = None


def num_threads() -> int:
    """Worker threads of the numba path (``ASTROMODAL_THREADS``, default: all cores)."""
    raw = os.environ.get("ASTROMODAL_THREADS", "")
    return max(1, int(raw)) if raw.strip() else max(1, os.cpu_count() or 1)


def _executor() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=num_threads(), thread_name_prefix="quantile-encode")
    return _pool


def resolve_backend(backend: str) -> str:
    """``auto`` -> ``numba`` when importable (and not disabled), else ``numpy``."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        return "numba" if HAVE_NUMBA else "numpy"
    if backend == "numba" and numba is None:
        raise ImportError("backend='numba' needs numba: pip install 'astromodal-core[fast]'")
    return backend


def _check(x: Any) -> np.ndarray:
    x = _as_float(x)
    if x.ndim != 1:
        raise ValueError(f"expected a 1-D array of values, got shape {x.shape}")
    return x


def submit_many(jobs: Sequence[tuple[Any, ...]], mask_token: int, sentinels: Any, *,
                backend: str = "auto") -> list[Future[None]]:
    """Start :func:`encode_many`'s work and return its futures (none on the numpy path or with
    one thread: the work is then done), so a caller can read the next batch while it runs."""
    default = np.ascontiguousarray(sentinels, dtype=np.float64).reshape(-1)
    checked = []
    for job in jobs:
        x, lk, out = job[:3]
        sent = np.ascontiguousarray(job[3], dtype=np.float64).reshape(-1) if len(job) > 3 else default
        checked.append((_check(x), lk, out, sent, _check_flags(lk.edges, sent)))
    if resolve_backend(backend) == "numpy":
        for x, lk, out, sent, _ in checked:
            encode_numpy(x, lk.edges, mask_token, sent, out=out)
        return []
    token = np.uint16(mask_token)
    pieces = [
        (x[i : i + _CHUNK], lk, out[i : i + _CHUNK], sent, flags)
        for x, lk, out, sent, flags in checked
        for i in range(0, len(x), _CHUNK)
    ]

    def run(piece: tuple[np.ndarray, Lookup, np.ndarray, np.ndarray, np.ndarray]) -> None:
        x, lk, out, sent, flags = piece
        _run_kernel(x, _NO_BITMAP, 0, lk, sent, flags, token, out)

    if len(pieces) < 2 or num_threads() == 1:
        for piece in pieces:
            run(piece)
        return []
    return [_executor().submit(run, piece) for piece in pieces]


def encode_many(jobs: Sequence[tuple[Any, ...]], mask_token: int, sentinels: Any, *,
                backend: str = "auto") -> None:
    """Encode several ``(values, lookup, out[, sentinels])`` jobs; ``out`` are uint16 (maybe
    strided) views, and a job's own ``sentinels`` replace the shared ones."""
    for future in submit_many(jobs, mask_token, sentinels, backend=backend):
        future.result()


def encode_values(x: Any, lookup: Lookup, mask_token: int, sentinels: Any, *,
                  backend: str = "auto", out: np.ndarray | None = None) -> np.ndarray:
    """Tokens (uint16) of a 1-D array of values; ``out`` may be a strided uint16 view."""
    x = _check(x)
    if out is None:
        out = np.empty(x.shape[0], dtype=np.uint16)
    encode_many([(x, lookup, out)], mask_token, sentinels, backend=backend)
    return out


# ------------------------------------------------------------------------------ Arrow columns
_ZERO_COPY = {pa.float32(): np.float32, pa.float64(): np.float64, pa.int8(): np.int8, pa.int16(): np.int16,
              pa.int32(): np.int32, pa.int64(): np.int64, pa.uint8(): np.uint8, pa.uint16(): np.uint16,
              pa.uint32(): np.uint32, pa.uint64(): np.uint64}


def zero_copy_type(t: pa.DataType) -> bool:
    """True for the Arrow types the kernel reads in place (ints, float32, float64)."""
    return t in _ZERO_COPY


def arrow_values(array: Any) -> tuple[np.ndarray, np.ndarray, int] | None:
    """``(values, validity, bit_offset)`` of an Arrow int / float32 / float64 array without
    copying: ``values`` views its value buffer (``len(array)`` items; slots under nulls hold
    arbitrary values), ``validity`` its validity bitmap as uint8 (empty when there is no null)
    whose bit ``bit_offset + i`` is row ``i``. None for any other type or layout (a chunked
    array of several chunks, float16, decimals...): convert those first."""
    if isinstance(array, pa.ChunkedArray):
        if array.num_chunks != 1:
            return None
        array = array.chunk(0)
    if not isinstance(array, pa.Array) or array.type not in _ZERO_COPY:
        return None
    dtype = np.dtype(_ZERO_COPY[array.type])
    n = len(array)
    validity, data = array.buffers()[:2]
    if n == 0 or data is None:
        return np.empty(0, dtype=dtype), _NO_BITMAP, 0
    values = np.frombuffer(data, dtype=dtype, count=n, offset=array.offset * dtype.itemsize)
    if array.null_count == 0 or validity is None:
        return values, _NO_BITMAP, 0
    return values, np.frombuffer(validity, dtype=np.uint8), int(array.offset)


def _arrow_to_numpy(array: Any) -> np.ndarray:
    """Any numeric Arrow array as numpy; nulls become NaN (the numpy path's missing value)."""
    return np.asarray(array.to_numpy(zero_copy_only=False))


class PendingTokens:
    """Tokens being written into ``out`` ``(n, k)`` by worker threads (see
    :meth:`QuantileBins.start_encode`); :meth:`result` waits and returns the number of mask
    tokens written in each column."""

    def __init__(self, out: np.ndarray, futures: list[Future[None]], counts: np.ndarray) -> None:
        self.out = out
        self.futures = futures
        self._counts = counts  # (tasks, k): mask tokens each task wrote per column

    def result(self) -> np.ndarray:
        """Wait for the work; int64 ``(k,)`` mask tokens written per column."""
        for future in self.futures:
            future.result()
        return self._counts.sum(axis=0, dtype=np.int64)

    def cancel(self) -> None:
        """Cancel the tasks not started yet (``out`` is then incomplete)."""
        for future in self.futures:
            future.cancel()


# ------------------------------------------------------------------------------ the building block
def _numeric(values: Any, what: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.dtype == np.bool_:
        return arr.astype(np.float64)
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise DataError(f"{what}: values have dtype {arr.dtype}, expected numbers")
    return arr


class QuantileBins:
    """Per-column quantile bins: the quantile codec building block (see the module docstring).

    ``n_bins`` bins per column (2..65535; tokens are uint16, ``mask_token = n_bins``,
    ``vocab_size = n_bins + 1``); ``columns`` names the columns (their order is the column
    order of ``(n, k)`` arrays); ``sentinels`` are values meaning "missing", one list for every
    column or ``{column: [...]}``; ``backend`` is ``auto``, ``numba`` or ``numpy``.
    """

    def __init__(self, n_bins: int, columns: Sequence[str] = ("value",), *,
                 sentinels: Sequence[float] | Mapping[str, Sequence[float]] = (),
                 backend: str = "auto") -> None:
        if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or not 2 <= n_bins <= MAX_BINS:
            raise ValueError(f"n_bins must be an integer in [2, {MAX_BINS}] (uint16 tokens + mask), got {n_bins!r}")
        if isinstance(columns, str):
            columns = [columns]
        cols = tuple(columns)
        if not cols or not all(isinstance(c, str) and c for c in cols):
            raise ValueError(f"columns must be a non-empty list of names, got {list(cols)!r}")
        if len(set(cols)) != len(cols):
            raise ValueError(f"columns lists a name twice: {list(cols)}")
        if isinstance(sentinels, Mapping):
            unknown = [c for c in sentinels if c not in cols]
            if unknown:
                raise ValueError(f"sentinels names {unknown}, which are not columns {list(cols)}")
            per = {c: tuple(float(s) for s in sentinels.get(c, ())) for c in cols}
        else:
            shared = tuple(float(s) for s in sentinels)
            per = dict.fromkeys(cols, shared)
        resolve_backend(backend)
        self.n_bins = int(n_bins)
        self.columns = cols
        self.sentinels = per
        self.backend = backend
        self.tables: tuple[BinTable, ...] | None = None
        self._lookups: tuple[Lookup, ...] = ()
        self._flags: tuple[np.ndarray, ...] = ()
        self._sentinel_arrays = tuple(np.asarray(per[c], dtype=np.float64) for c in cols)

    # -- properties ------------------------------------------------------------------------
    @property
    def mask_token(self) -> int:
        """The token of a missing value: ``n_bins``."""
        return self.n_bins

    @property
    def vocab_size(self) -> int:
        """``n_bins + 1``."""
        return self.n_bins + 1

    @property
    def is_fitted(self) -> bool:
        """True once fitted or loaded."""
        return self.tables is not None

    def check_fitted(self) -> None:
        """Raise :class:`NotFittedError` unless fitted."""
        if self.tables is None:
            raise NotFittedError("QuantileBins is not fitted: call fit(...) or from_state(...) first")

    @property
    def effective_bins(self) -> dict[str, int]:
        """Bins each column really uses (fewer than ``n_bins`` when its sample has ties)."""
        self.check_fitted()
        assert self.tables is not None
        return {c: t.effective_bins for c, t in zip(self.columns, self.tables)}

    def index(self, column: str | int | None = None) -> int:
        """The position of a column (a name or an index; ``None`` for the only column)."""
        if column is None:
            if len(self.columns) != 1:
                raise ValueError(f"name the column: these bins have {len(self.columns)} ({list(self.columns)})")
            return 0
        if isinstance(column, (int, np.integer)) and not isinstance(column, bool):
            if not 0 <= column < len(self.columns):
                raise IndexError(f"column index {column} out of range for {len(self.columns)} columns")
            return int(column)
        if column not in self.columns:
            raise KeyError(f"no column {column!r}; columns are {list(self.columns)}")
        return self.columns.index(column)

    def table(self, column: str | int | None = None) -> BinTable:
        """The fitted bins of one column."""
        self.check_fitted()
        assert self.tables is not None
        return self.tables[self.index(column)]

    def sentinels_of(self, column: str | int | None = None) -> tuple[float, ...]:
        """The values that mean "missing" in a column (besides NaN and +-inf)."""
        return self.sentinels[self.columns[self.index(column)]]

    def missing(self, values: Any, column: str | int | None = None) -> np.ndarray:
        """True where a value of ``column`` is NaN, +-inf or one of its sentinels."""
        return missing_mask(values, self.sentinels_of(column))

    # -- fitting ---------------------------------------------------------------------------
    def fit(self, samples: Any) -> QuantileBins:
        """Fit every column's bins on a sample of its values; return self.

        ``samples``: ``{column: 1-D values}``, a sequence of 1-D arrays in column order, an
        ``(n, k)`` array, or (one column) a 1-D array. Missing values are left out; a column
        with no value left is a :class:`DataError` naming it.
        """
        per = self._per_column(samples)
        tables = []
        for c, values in zip(self.columns, per):
            v = np.asarray(_numeric(values, f"column {c!r}"), dtype=np.float64).reshape(-1)
            v = v[~missing_mask(v, self.sentinels[c])]
            if not len(v):
                raise DataError(f"column {c!r}: no finite, non-sentinel value to fit bins on")
            tables.append(fit_bins(v, self.n_bins))
        return self.set_tables(tables)

    def _per_column(self, samples: Any) -> list[Any]:
        k = len(self.columns)
        if isinstance(samples, Mapping):
            absent = [c for c in self.columns if c not in samples]
            if absent:
                raise DataError(f"no sample for column {absent[0]!r}; got {sorted(samples)}")
            return [samples[c] for c in self.columns]
        if isinstance(samples, np.ndarray) or not isinstance(samples, (list, tuple)):
            arr = np.asarray(samples)
            if arr.ndim == 1 and k == 1:
                return [arr]
            if arr.ndim == 2 and arr.shape[1] == k:
                return [arr[:, j] for j in range(k)]
            raise DataError(f"samples of shape {arr.shape} do not match {k} column(s) {list(self.columns)}")
        if len(samples) != k:
            raise DataError(f"{len(samples)} samples for {k} column(s) {list(self.columns)}")
        return list(samples)

    def set_tables(self, tables: Sequence[BinTable]) -> QuantileBins:
        """Install fitted tables, one per column in order; return self."""
        tables = tuple(tables)
        if len(tables) != len(self.columns):
            raise ValueError(f"{len(tables)} bin tables for {len(self.columns)} columns")
        for c, t in zip(self.columns, tables):
            if t.effective_bins > self.n_bins:
                raise ValueError(f"column {c!r}: {t.effective_bins} bins exceed n_bins={self.n_bins}")
        self.tables = tables
        self._lookups = tuple(build_lookup(t.edges) for t in tables)
        self._flags = tuple(_check_flags(t.edges, s) for t, s in zip(tables, self._sentinel_arrays))
        return self

    # -- encoding --------------------------------------------------------------------------
    def encode(self, values: Any, column: str | int | None = None, *,
               out: np.ndarray | None = None) -> np.ndarray:
        """uint16 tokens of ``values``: ``(n,)`` values of one column (``column``, or the only
        one), or ``(n, k)`` values of every column in order; missing values -> ``mask_token``.
        ``out`` may be a (strided) uint16 array of the same shape."""
        self.check_fitted()
        arr = np.asarray(values)
        if column is None and arr.ndim == 2:
            if arr.shape[1] != len(self.columns):
                raise DataError(f"values have shape {arr.shape}, expected (n, {len(self.columns)}) "
                                f"for columns {list(self.columns)}")
            return self.encode_columns([arr[:, j] for j in range(arr.shape[1])], out=out)
        j = self.index(column)
        arr = np.atleast_1d(_numeric(arr, f"column {self.columns[j]!r}"))
        if arr.ndim != 1:
            raise DataError(f"column {self.columns[j]!r}: expected a 1-D array of values, got shape {arr.shape}")
        if out is None:
            out = np.empty(arr.shape[0], dtype=np.uint16)
        encode_many([(arr, self._lookups[j], out, self._sentinel_arrays[j])], self.n_bins, (),
                    backend=self.backend)
        return out

    def start_encode(self, values: Sequence[Any], out: np.ndarray, *,
                     missing: np.ndarray | None = None) -> PendingTokens:
        """Start encoding one array of values per column into ``out`` ``(n, k)`` uint16 (any
        strides) and return at once; :meth:`PendingTokens.result` waits.

        ``values`` are 1-D numpy arrays or Arrow arrays. On the numba path an Arrow int,
        float32 or float64 array is read in place: the kernel reads its value buffer and takes
        its validity bitmap as the missing mask (a null is the mask token, as NaN is), and
        writes the tokens straight into ``out``; other types are converted first. Tokens are
        the same on every path. ``missing``, a bool array shaped like ``out``, receives
        ``out == mask_token``, each piece written by the task that wrote its tokens."""
        self.check_fitted()
        k = len(self.columns)
        if len(values) != k:
            raise DataError(f"{len(values)} value arrays for {k} columns {list(self.columns)}")
        n = out.shape[0]
        if missing is not None and (missing.shape != out.shape or missing.dtype != np.bool_):
            raise ValueError(f"missing must be a bool array of shape {out.shape}, got {missing.dtype} {missing.shape}")
        numba_path = resolve_backend(self.backend) == "numba"
        columns = []
        for c, v in zip(self.columns, values):
            valid, voff = _NO_BITMAP, 0
            if isinstance(v, (pa.Array, pa.ChunkedArray)):
                if not (pa.types.is_integer(v.type) or pa.types.is_floating(v.type) or pa.types.is_decimal(v.type)):
                    raise DataError(f"column {c!r}: values have type {v.type}, expected numbers")
                view = arrow_values(v) if numba_path else None
                if view is None:
                    x = _as_float(_arrow_to_numpy(v))
                else:
                    x, valid, voff = view
            else:
                x = _numeric(v, f"column {c!r}")
                if not numba_path or x.dtype == np.float16 or x.dtype.kind not in "fiu":
                    x = _as_float(x)
            if x.ndim != 1 or len(x) != n:
                raise DataError(f"column {c!r} has shape {x.shape}, expected ({n},)")
            columns.append((x, valid, voff))
        if not numba_path:
            counts = np.zeros(k, dtype=np.int64)
            for j, (x, _, _) in enumerate(columns):
                encode_numpy(x, self._lookups[j].edges, self.n_bins, self._sentinel_arrays[j], out=out[:, j])
                counts[j] = np.count_nonzero(out[:, j] == self.n_bins)
            if missing is not None:
                np.equal(out, self.n_bins, out=missing)
            return PendingTokens(out, [], counts[None, :])
        token = np.uint16(self.n_bins)
        # a task is one column's rows [start, start + _CHUNK): its cell table stays in cache
        pieces = [(j, start) for j in range(k) for start in range(0, n, _CHUNK)]
        counts = np.zeros((len(pieces), k), dtype=np.int64)

        def run(p: int) -> None:
            j, start = pieces[p]
            x, valid, voff = columns[j]
            stop = start + _CHUNK
            counts[p, j] = _run_kernel(x[start:stop], valid, voff + start, self._lookups[j],
                                       self._sentinel_arrays[j], self._flags[j], token, out[start:stop, j])
            if missing is not None:  # while the piece's tokens are in this core's cache
                np.equal(out[start:stop, j], token, out=missing[start:stop, j])

        futures: list[Future[None]] = []
        if len(pieces) < 2 or num_threads() == 1:
            for p in range(len(pieces)):
                run(p)
        else:
            pool = _executor()
            futures = [pool.submit(run, p) for p in range(len(pieces))]
        return PendingTokens(out, futures, counts)

    def submit_columns(self, values: Sequence[Any], out: np.ndarray) -> list[Future[None]]:
        """Start encoding one 1-D array per column into ``out`` ``(n, k)`` uint16 and return
        the futures to wait on (empty when the work is already done); see :meth:`start_encode`."""
        return self.start_encode(values, out).futures

    def encode_columns(self, values: Sequence[Any], *, out: np.ndarray | None = None) -> np.ndarray:
        """``(n, k)`` uint16 tokens of one 1-D array per column (numpy arrays of any numeric
        dtype, or Arrow arrays: see :meth:`start_encode`); a new array is stored column by
        column (each column contiguous, as the kernels write it)."""
        n = len(values[0]) if len(values) else 0
        if out is None:
            out = np.empty((len(self.columns), n), dtype=np.uint16).T
        self.start_encode(values, out).result()
        return out

    def encode_ragged(self, flat: Any, indptr: Any, column: str | int | None = None
                      ) -> tuple[np.ndarray, np.ndarray]:
        """``(tokens, indptr)`` of ragged rows (row ``i`` is ``flat[indptr[i]:indptr[i+1]]``),
        every value through the one table of ``column``; ``indptr`` comes back as int64."""
        ptr = np.asarray(indptr)
        if ptr.ndim != 1 or not len(ptr) or not np.issubdtype(ptr.dtype, np.integer):
            raise DataError(f"indptr must be a non-empty 1-D integer array, got shape {ptr.shape} {ptr.dtype}")
        flat = np.asarray(flat)
        if flat.ndim != 1:
            raise DataError(f"flat values must be 1-D, got shape {flat.shape}")
        ptr = ptr.astype(np.int64)
        if ptr[0] < 0 or np.any(np.diff(ptr) < 0) or ptr[-1] > len(flat):
            raise DataError(f"indptr must be non-decreasing within [0, {len(flat)}], got {ptr[0]}..{ptr[-1]}")
        return self.encode(flat, column), ptr

    # -- decoding --------------------------------------------------------------------------
    def _lookup_ids(self, tokens: Any, column: str | int | None, field: str) -> np.ndarray:
        self.check_fitted()
        assert self.tables is not None
        t = np.asarray(tokens)
        if column is None and t.ndim == 2 and len(self.columns) > 1:
            if t.shape[1] != len(self.columns):
                raise DataError(f"tokens have shape {t.shape}, expected (n, {len(self.columns)})")
            return np.stack([self._lookup_ids(t[:, j], j, field) for j in range(t.shape[1])], axis=1)
        j = self.index(column)
        if not np.issubdtype(t.dtype, np.integer):
            raise DataError(f"column {self.columns[j]!r}: tokens have dtype {t.dtype}, expected integers")
        t = t.astype(np.int64)
        table = self.tables[j]
        masked = t == self.mask_token
        bad = (~masked) & ((t < 0) | (t >= table.effective_bins))
        if bad.any():
            i = int(np.flatnonzero(bad.ravel())[0])
            raise DataError(
                f"column {self.columns[j]!r}: token {int(t.ravel()[i])} at position {i} is not a bin "
                f"(it has {table.effective_bins} bins, mask token {self.mask_token})"
            )
        src = getattr(table, field)
        return np.where(masked, np.nan, src[np.where(masked, 0, t)])

    def decode(self, tokens: Any, column: str | int | None = None) -> np.ndarray:
        """float64 values of tokens (same shape): each bin's median training value, NaN at the
        mask token; ``(n, k)`` tokens decode column by column. An id that is no bin of the
        column is a :class:`DataError` naming it."""
        return self._lookup_ids(tokens, column, "centers")

    def widths(self, tokens: Any, column: str | int | None = None) -> np.ndarray:
        """The width of each token's bin (an uncertainty of :meth:`decode`), NaN at the mask."""
        return self._lookup_ids(tokens, column, "widths")

    def token_values(self, column: str | int | None = None) -> np.ndarray:
        """float64 ``(vocab_size,)``: the value of every token id of ``column`` (the value
        protocol of ordinal keys); NaN at the mask token and at ids the fit did not use."""
        table = self.table(column)
        out = np.full(self.vocab_size, np.nan)
        out[: table.effective_bins] = table.centers
        return out

    # -- saving ----------------------------------------------------------------------------
    def arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
        """The fitted arrays: ``{prefix}c000_edges``, ``..._centers``, ``_widths``, ``_counts``
        for the first column, ``c001_...`` for the next."""
        self.check_fitted()
        assert self.tables is not None
        out: dict[str, np.ndarray] = {}
        for j, t in enumerate(self.tables):
            out.update(t.arrays(f"{prefix}c{j:03d}_"))
        return out

    def config(self) -> dict[str, Any]:
        """The JSON-able settings and sample sizes (with :meth:`arrays`, the whole state)."""
        self.check_fitted()
        assert self.tables is not None
        return {
            "n_bins": self.n_bins,
            "columns": list(self.columns),
            "sentinels": {c: list(self.sentinels[c]) for c in self.columns},
            "n_samples": [t.n_samples for t in self.tables],
        }

    def state(self, prefix: str = "") -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """``(config, arrays)`` to save, e.g. from a :class:`~astromodal_core.Tokenizer`'s
        ``_state``; :meth:`from_state` reads them back."""
        return self.config(), self.arrays(prefix)

    @classmethod
    def from_state(cls, config: Mapping[str, Any], arrays: Mapping[str, Any], *, prefix: str = "",
                   backend: str = "auto") -> QuantileBins:
        """Fitted bins from :meth:`state`; a damaged state is a :class:`CodecFormatError`."""
        try:
            bins = cls(config["n_bins"], config["columns"], sentinels=config["sentinels"], backend=backend)
        except (KeyError, TypeError, ValueError) as exc:
            raise CodecFormatError(f"quantile bins: bad config ({type(exc).__name__}: {exc})") from exc
        return bins.load_tables(arrays, config.get("n_samples"), prefix=prefix)

    def load_tables(self, arrays: Mapping[str, Any], n_samples: Sequence[int] | None, *,
                    prefix: str = "") -> QuantileBins:
        """Install the tables saved by :meth:`arrays` (``n_samples``: one count per column),
        validated: an absent, wrongly shaped or non-numeric array, NaN or decreasing edges,
        or more bins than ``n_bins`` are a :class:`CodecFormatError` naming the column."""
        if not isinstance(n_samples, (list, tuple)) or len(n_samples) != len(self.columns):
            raise CodecFormatError(
                f"quantile bins: n_samples must list one count per column ({len(self.columns)}), got {n_samples!r}"
            )
        tables = []
        for j, c in enumerate(self.columns):
            t = BinTable.from_arrays(arrays, f"{prefix}c{j:03d}_", n_samples[j], where=f"column {c!r}")
            if t.effective_bins > self.n_bins:
                raise CodecFormatError(f"column {c!r}: {t.effective_bins} bins exceed n_bins={self.n_bins}")
            tables.append(t)
        return self.set_tables(tables)

    def __repr__(self) -> str:
        state = "fitted" if self.is_fitted else "not fitted"
        return f"QuantileBins(n_bins={self.n_bins}, columns={list(self.columns)}, {state})"
