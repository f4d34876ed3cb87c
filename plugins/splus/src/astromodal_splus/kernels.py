"""Value -> token lookup: a numba kernel (lookup table, GIL-free, on a thread pool) and a
pure-numpy fallback.

Both give ``np.searchsorted(edges, x, side="right")`` for every finite value that is not a
sentinel, and ``mask_token`` for NaN, +-inf and sentinels. The numba kernel maps each value to
one of ``M`` equal-width cells between the first and last edge; a table gives, per cell, the
range of edges that can lie in it, and a binary search over that (usually tiny) range finishes.
The cell function is monotone, so the result is exact whatever the distribution.
"""

from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import attrs
import numpy as np

try:  # optional dependency: astromodal-splus[fast]
    import numba

    from astromodal_core.jit import njit

    HAVE_NUMBA = os.environ.get("ASTROMODAL_SPLUS_NO_NUMBA", "") == ""
except ImportError:  # pragma: no cover - exercised when numba is absent
    numba = None
    HAVE_NUMBA = False

BACKENDS = ("auto", "numba", "numpy")
_CELLS_PER_EDGE = 32
_MAX_CELLS = 1 << 16


@attrs.frozen(eq=False)
class Lookup:
    """Edges plus the cell table the numba kernel uses."""

    edges: np.ndarray
    lut: np.ndarray
    lo: float
    scale: float
    n_cells: int


def _cell_numpy(x: np.ndarray, lo: float, scale: float, n_cells: int) -> np.ndarray:
    v = (np.asarray(x, dtype=np.float64) - lo) * scale
    c = np.zeros(v.shape, dtype=np.int64)
    inside = v >= 0
    c[inside] = np.minimum(v[inside], n_cells - 1).astype(np.int64)
    return c


def build_lookup(edges: np.ndarray) -> Lookup:
    """The cell table of a set of increasing edges."""
    edges = np.ascontiguousarray(edges, dtype=np.float64)
    n = len(edges)
    if n < 2 or edges[-1] <= edges[0]:
        lut = np.array([0, n], dtype=np.int32)
        return Lookup(edges=edges, lut=lut, lo=float(edges[0]) if n else 0.0, scale=0.0, n_cells=1)
    n_cells = int(min(_MAX_CELLS, _CELLS_PER_EDGE * (n + 1)))
    lo = float(edges[0])
    scale = float(n_cells / (edges[-1] - edges[0]))
    if not np.isfinite(scale):
        scale = 0.0
    cells = _cell_numpy(edges, lo, scale, n_cells)
    lut = np.searchsorted(cells, np.arange(n_cells + 1), side="left").astype(np.int32)
    lut[-1] = n
    return Lookup(edges=edges, lut=lut, lo=lo, scale=scale, n_cells=n_cells)


def _as_float(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float64)
    return x


def encode_numpy(
    x: np.ndarray, edges: np.ndarray, mask_token: int, sentinels: np.ndarray, out: np.ndarray | None = None
) -> np.ndarray:
    """Reference path: ``searchsorted(edges, x, "right")``, mask for NaN / inf / sentinels."""
    x = _as_float(x)
    tokens = np.searchsorted(edges, x, side="right")
    missing = ~np.isfinite(x)
    for s in np.asarray(sentinels, dtype=np.float64):
        missing |= x == s
    tokens[missing] = mask_token
    if out is None:
        return tokens.astype(np.uint16)
    out[...] = tokens
    return out


if numba is not None:

    @njit(cache=True, nogil=True)
    def _encode_kernel(x, edges, lut, lo, scale, n_cells, sentinels, mask_token, out):  # pragma: no cover
        n = x.shape[0]
        n_sent = sentinels.shape[0]
        last = n_cells - 1
        for i in range(n):
            v = np.float64(x[i])
            bad = not np.isfinite(v)
            for j in range(n_sent):
                bad |= v == sentinels[j]
            w = (v - lo) * scale
            c = int(min(w, last)) if w >= 0 else 0
            a = lut[c]
            b = lut[c + 1]
            while a < b:  # first edge > v in [a, b)
                m = (a + b) >> 1
                if edges[m] <= v:
                    a = m + 1
                else:
                    b = m
            out[i] = mask_token if bad else a


_CHUNK = 1 << 16
_pool: ThreadPoolExecutor | None = None


def num_threads() -> int:
    """Worker threads of the numba path (``ASTROMODAL_SPLUS_THREADS``, default: all cores)."""
    raw = os.environ.get("ASTROMODAL_SPLUS_THREADS", "")
    return max(1, int(raw)) if raw.strip() else max(1, os.cpu_count() or 1)


def _executor() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=num_threads(), thread_name_prefix="splus-encode")
    return _pool


def resolve_backend(backend: str) -> str:
    """``auto`` -> ``numba`` when importable (and not disabled), else ``numpy``."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        return "numba" if HAVE_NUMBA else "numpy"
    if backend == "numba" and numba is None:
        raise ImportError("backend='numba' needs numba: pip install 'astromodal-splus[fast]'")
    return backend


def _check(x: Any) -> np.ndarray:
    x = _as_float(x)
    if x.ndim != 1:
        raise ValueError(f"expected a 1-D array of values, got shape {x.shape}")
    return x


def encode_many(
    jobs: list[tuple[Any, ...]],
    mask_token: int,
    sentinels: np.ndarray,
    *,
    backend: str = "auto",
) -> None:
    """Encode several ``(values, lookup, out)`` columns; ``out`` are uint16 (maybe strided) views.

    A job ``(values, lookup, out, job_sentinels)`` uses its own sentinels instead of ``sentinels``.

    The numba path runs a compiled, GIL-free kernel on chunks of every column spread over
    a thread pool (both cores), so one call per record batch keeps all cores busy.
    """
    for future in submit_many(jobs, mask_token, sentinels, backend=backend):
        future.result()


def submit_many(
    jobs: list[tuple[Any, ...]],
    mask_token: int,
    sentinels: np.ndarray,
    *,
    backend: str = "auto",
) -> list[Future[None]]:
    """Start :func:`encode_many`'s work and return its futures (already done on the numpy path
    or with one thread), so a caller can read the next batch while the kernels run."""
    default = np.ascontiguousarray(sentinels, dtype=np.float64)
    checked = []
    for job in jobs:
        x, lk, out = job[:3]
        sent = np.ascontiguousarray(job[3], dtype=np.float64).reshape(-1) if len(job) > 3 else default
        checked.append((_check(x), lk, out, sent))
    if resolve_backend(backend) == "numpy":
        for x, lk, out, sent in checked:
            encode_numpy(x, lk.edges, mask_token, sent, out=out)
        return []
    token = np.uint16(mask_token)
    pieces = [
        (x[i : i + _CHUNK], lk, out[i : i + _CHUNK], sent)
        for x, lk, out, sent in checked
        for i in range(0, len(x), _CHUNK)
    ]

    def run(piece: tuple[np.ndarray, Lookup, np.ndarray, np.ndarray]) -> None:
        x, lk, out, sent = piece
        _encode_kernel(x, lk.edges, lk.lut, lk.lo, lk.scale, lk.n_cells, sent, token, out)

    if len(pieces) < 2 or num_threads() == 1:
        for piece in pieces:
            run(piece)
        return []
    return [_executor().submit(run, piece) for piece in pieces]


def encode_values(
    x: Any,
    lookup: Lookup,
    mask_token: int,
    sentinels: np.ndarray,
    *,
    backend: str = "auto",
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Tokens (uint16) of a 1-D array of values; ``out`` may be a strided uint16 view."""
    x = _check(x)
    if out is None:
        out = np.empty(x.shape[0], dtype=np.uint16)
    encode_many([(x, lookup, out)], mask_token, sentinels, backend=backend)
    return out
