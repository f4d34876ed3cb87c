"""Deterministic k-means: k-means++ initialisation and Lloyd iterations with exact assignment.

Assignment is an exact nearest-centroid search: every path returns the index of the centroid
with the smallest squared distance ``sum_j (x_j - c_j)**2`` computed in float64 (features summed
in order) from the float32 inputs, ties going to the lowest centroid index. So the labels do
not depend on the path taken, on numba or on faiss being installed.

Paths (``backend="auto"`` picks the fastest available):

* ``grid`` (numba, d <= ``GRID_MAX_D``): the points' bounding box is cut into a grid whose
  per-axis edges are quantiles of the centroids; for every occupied cell the candidate
  centroids are those whose distance to the cell box is at most the smallest farthest-corner
  distance of any centroid, so the nearest centroid of any point of the cell is a candidate.
  Each point then scans only its cell's few candidates.
* ``blas`` (higher d): float32 ``||c||^2 - 2 x.c`` by BLAS in row blocks sized for the cache,
  argmin by a numba kernel (numpy without numba). Rows whose best and second-best scores lie
  within the float32 rounding bound are re-ranked among the close candidates in float64.
* ``kdtree`` (no numba, d <= 6, scipy installed): ``scipy.spatial.cKDTree`` with two
  neighbours; near ties are re-ranked exactly.
* ``faiss``: optional ``IndexFlatL2`` search; may differ from the others on float32 ties.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np

GRID_MAX_D = 3  # grid search up to this dimension, blocked BLAS above it
KDTREE_MAX_D = 6  # cKDTree (no-numba fallback) up to this dimension
_U32 = 2.0**-24  # unit roundoff of float32
_BLOCK_BYTES = 1 << 21  # score block (rows x k float32) of the BLAS path
_GRID_CELLS_PER_CENTROID = 1
_GRID_COARSE = 12  # coarse cells per axis for the candidate lists

try:  # numba is a dependency of the plugin, but the code also runs (slower) without it
    import numba

    from .jit import njit

    HAVE_NUMBA = True
except ImportError:  # pragma: no cover - exercised when numba is absent
    HAVE_NUMBA = False


# ----------------------------------------------------------------------------- numba kernels
if HAVE_NUMBA:

    @njit(cache=True, inline="always")
    def _d2(x, i, c, j):  # the reference arithmetic: float64, features summed in order
        acc = 0.0
        for t in range(x.shape[1]):
            diff = np.float64(x[i, t]) - np.float64(c[j, t])
            acc += diff * diff
        return acc

    @njit(cache=True)
    def _col_min_max(x):
        n, d = x.shape
        parts = max(1, min(64, n // 4096))
        lo = np.full((parts, d), np.inf)
        hi = np.full((parts, d), -np.inf)
        for p in range(parts):
            for i in range(p * n // parts, (p + 1) * n // parts):
                for j in range(d):
                    v = np.float64(x[i, j])
                    if v < lo[p, j]:
                        lo[p, j] = v
                    if v > hi[p, j]:
                        hi[p, j] = v
        out_lo = np.empty(d)
        out_hi = np.empty(d)
        for j in range(d):
            out_lo[j] = lo[:, j].min()
            out_hi[j] = hi[:, j].max()
        return out_lo, out_hi

    @njit(cache=True)
    def _box_bounds(cell, edges, g, blo, bhi):
        d = edges.shape[0]
        rest = np.int64(cell)
        for j in range(d - 1, -1, -1):
            t = rest % g
            rest //= g
            blo[j] = edges[j, t]
            bhi[j] = edges[j, t + 1]

    @njit(cache=True, inline="always")
    def _box_min(c, m, blo, bhi):  # squared distance from centroid m to the box
        mn = 0.0
        for j in range(c.shape[1]):
            v = np.float64(c[m, j])
            e = max(blo[j] - v, v - bhi[j], 0.0)
            mn += e * e
        return mn

    @njit(cache=True, inline="always")
    def _box_max(c, m, blo, bhi):  # squared distance from centroid m to the farthest corner
        mx = 0.0
        for j in range(c.shape[1]):
            v = np.float64(c[m, j])
            f = max(abs(blo[j] - v), abs(v - bhi[j]))
            mx += f * f
        return mx

    @njit(cache=True)
    def _parent_cell(cell, g, f, gp, d):
        rest = np.int64(cell)
        par = 0
        mult = 1
        for _ in range(d):
            par += ((rest % g) // f) * mult
            rest //= g
            mult *= gp
        return par

    @njit(cache=True)
    def _grid_candidates(edges, g, m, c, f, gp, poff, pcand):
        """Candidate lists of the m = g**d cells, each drawn from its parent cell's list
        (parent grid of gp cells per axis, f fine cells per parent cell). One thread: the
        per-cell work is small, and two threads measured twice as slow."""
        d = c.shape[1]
        thr = np.empty(m)
        counts = np.zeros(m + 1, dtype=np.int64)
        for q in numba.prange(m):
            blo = np.empty(d)
            bhi = np.empty(d)
            _box_bounds(q, edges, g, blo, bhi)
            par = _parent_cell(q, g, f, gp, d)
            best = np.inf
            for p in range(poff[par], poff[par + 1]):
                best = min(best, _box_max(c, pcand[p], blo, bhi))
            t = best * (1.0 + 1e-9) + 1e-300  # slack for rounding of the bounds
            thr[q] = t
            cnt = 0
            for p in range(poff[par], poff[par + 1]):
                if _box_min(c, pcand[p], blo, bhi) <= t:
                    cnt += 1
            counts[q + 1] = cnt
        offsets = np.cumsum(counts)
        cand = np.empty(offsets[-1], dtype=np.int32)
        cmin = np.empty(offsets[-1])
        for q in numba.prange(m):
            blo = np.empty(d)
            bhi = np.empty(d)
            _box_bounds(q, edges, g, blo, bhi)
            par = _parent_cell(q, g, f, gp, d)
            p0 = offsets[q]
            p = p0
            for r in range(poff[par], poff[par + 1]):
                j = pcand[r]
                mn = _box_min(c, j, blo, bhi)
                if mn <= thr[q]:
                    cand[p] = j
                    cmin[p] = mn
                    p += 1
            order = np.argsort(cmin[p0:p], kind="mergesort")  # nearest boxes first
            cand[p0:p] = cand[p0:p][order]
            cmin[p0:p] = cmin[p0:p][order]
        return offsets, cand, cmin

    @njit(parallel=True, cache=True)
    def _grid_assign(x, c, edges, g, table, scale, offsets, cand, cmin):
        n, d = x.shape
        nb = table.shape[1]
        out = np.empty(n, dtype=np.int64)
        for i in numba.prange(n):
            q = 0
            for t in range(d):
                v = np.float64(x[i, t])
                b = min(max(int((v - edges[t, 0]) * scale[t]), 0), nb - 1)
                a = table[t, b]  # a guess of the cell index along t, then made exact:
                while a < g - 1 and edges[t, a + 1] <= v:
                    a += 1
                while a > 0 and edges[t, a] > v:
                    a -= 1
                q = q * g + a
            best = -1
            bd = np.inf
            for p in range(offsets[q], offsets[q + 1]):
                if cmin[p] > bd * (1.0 + 1e-9) + 1e-300:
                    break  # lower bound of the remaining candidates exceeds the best
                j = cand[p]
                dd = _d2(x, i, c, j)
                if dd < bd or (dd == bd and j < best) or best < 0:
                    bd = dd
                    best = j
            out[i] = best
        return out

    @njit(nogil=True, cache=True)
    def _rerank_rows(s, thr, xb, c, rows, lab):
        for i in rows:
            best = -1
            bd = np.inf
            for j in range(s.shape[1]):
                if s[i, j] <= thr[i]:
                    dd = _d2(xb, i, c, j)
                    if dd < bd or best < 0:
                        bd = dd
                        best = j
            lab[i] = max(best, 0)

    @njit(cache=True)
    def _kmeans_pp_numba(x, first, u):
        n = x.shape[0]
        k = len(u) + 1
        idx = np.full(k, -1, dtype=np.int64)
        idx[0] = first
        d2 = np.empty(n)
        cs = np.empty(n)  # running sum, as np.cumsum computes it
        acc = 0.0
        for i in range(n):
            d2[i] = _d2(x, i, x, first)
            acc += d2[i]
            cs[i] = acc
        for s in range(1, k):
            total = cs[n - 1]
            if not total > 0:
                return idx
            j = min(np.searchsorted(cs, u[s - 1] * total, side="right"), n - 1)
            idx[s] = j
            acc = 0.0
            for i in range(n):
                dd = _d2(x, i, x, j)
                if dd < d2[i]:
                    d2[i] = dd
                acc += d2[i]
                cs[i] = acc
        return idx

    @njit(cache=True)
    def _centroid_sums_numba(x, labels, k):
        sums = np.zeros((k, x.shape[1]))
        for i in range(x.shape[0]):
            lab = labels[i]
            for j in range(x.shape[1]):
                sums[lab, j] += x[i, j]
        return sums


# ----------------------------------------------------------------------------- numpy helpers
def _sq_dist_rows(x: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Reference squared distances (float64, features summed in order), row-wise broadcast."""
    x = np.asarray(x)
    c = np.asarray(c)
    acc = np.zeros(np.broadcast_shapes(x.shape[:-1], c.shape[:-1]))
    for t in range(x.shape[-1]):
        diff = x[..., t].astype(np.float64) - c[..., t].astype(np.float64)
        acc += diff * diff
    return acc


def _rerank(x: np.ndarray, c: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> tuple:
    """Exact winner among candidate pairs ``(rows, cols)``: (unique rows, best col per row)."""
    dist = _sq_dist_rows(x[rows], c[cols])
    order = np.lexsort((cols, dist, rows))  # by row, then distance, then lowest index
    rows, cols = rows[order], cols[order]
    first = np.r_[True, rows[1:] != rows[:-1]]
    return rows[first], cols[first]


def _assign_brute(x: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Exact float64 brute force (reference; used for the rare flagged rows)."""
    out = np.empty(len(x), dtype=np.int64)
    step = max(1, (1 << 22) // max(len(c) * x.shape[1], 1))
    for s in range(0, len(x), step):
        out[s : s + step] = _sq_dist_rows(x[s : s + step, None, :], c[None]).argmin(axis=1)
    return out


def _assign_kdtree(x: np.ndarray, c: np.ndarray) -> np.ndarray:
    from scipy.spatial import cKDTree

    if len(c) == 1:
        return np.zeros(len(x), dtype=np.int64)
    dist, idx = cKDTree(c.astype(np.float64)).query(x, k=2, workers=-1)
    out = idx[:, 0].astype(np.int64)
    near = np.flatnonzero(dist[:, 1] ** 2 <= dist[:, 0] ** 2 * (1.0 + 1e-9) + 1e-300)
    if len(near):  # (near) ties: exact brute force over all centroids for these few rows
        out[near] = _assign_brute(x[near], c)
    return out


class GridSearch:
    """The grid path's search structure for fixed centroids ``c`` and a box ``[lo, hi]``:
    every point inside the box gets its exact nearest centroid from :meth:`assign`. Built once,
    it serves any number of calls (the candidate lists cost about as much as assigning a
    million points)."""

    def __init__(self, c: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> None:
        d = c.shape[1]
        k = len(c)
        self.c = c
        self.lo = np.asarray(lo, dtype=np.float64)
        self.hi = np.asarray(hi, dtype=np.float64)
        self.g = g = _grid_side(k, d)
        edges = np.empty((d, g + 1))
        q = np.arange(1, g) / g
        for j in range(d):
            edges[j, 0], edges[j, g] = self.lo[j], self.hi[j]
            edges[j, 1:g] = np.clip(np.quantile(c[:, j].astype(np.float64), q), self.lo[j], self.hi[j])
        # candidates of the fine cells are drawn from those of coarse cells (a valid candidate of
        # a cell is one of its parent too: the parent's distance bound is looser)
        f = max(1, int(round(g / _GRID_COARSE)))
        gp = -(-g // f)
        coarse = edges[:, np.minimum(np.arange(gp + 1) * f, g)]
        all_c = np.arange(k, dtype=np.int32)
        poff, pcand, _ = _grid_candidates(coarse, gp, gp**d, c, gp, 1, np.array([0, k]), all_c)
        self.offsets, self.cand, self.cmin = _grid_candidates(edges, g, g**d, c, f, gp, poff, pcand)
        nb = 16 * g  # lookup table from uniform bins to cell indices along each axis
        span = np.maximum(self.hi - self.lo, 1e-300)
        self.scale = nb / span
        self.table = np.empty((d, nb), dtype=np.int64)
        for j in range(d):
            left = self.lo[j] + span[j] * np.arange(nb) / nb
            self.table[j] = np.clip(np.searchsorted(edges[j, 1:g], left, side="right"), 0, g - 1)
        self.edges = edges

    def covers(self, lo: np.ndarray, hi: np.ndarray) -> bool:
        """True when the box ``[lo, hi]`` lies inside this grid's box."""
        return bool(np.all(lo >= self.lo) and np.all(hi <= self.hi))

    def assign(self, x: np.ndarray) -> np.ndarray:
        """Nearest centroid of every row of ``x`` (float32, C order, inside the box)."""
        return _grid_assign(x, self.c, self.edges, self.g, self.table, self.scale, self.offsets,
                            self.cand, self.cmin)


def _grid_side(k: int, d: int) -> int:
    """Cells per axis of the grid for ``k`` centroids in ``d`` dimensions."""
    return max(1, int(round((_GRID_CELLS_PER_CENTROID * k) ** (1.0 / d))))


def _grid_cells(k: int, d: int) -> int:
    return _grid_side(k, d) ** d


def _assign_grid(x: np.ndarray, c: np.ndarray, bounds: tuple | None = None) -> np.ndarray:
    if len(x) < 4 * _grid_cells(len(c), x.shape[1]):  # too few points to pay for the cell lists
        return _assign_blas(x, c)
    lo, hi = _col_min_max(x) if bounds is None else bounds
    if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
        return _assign_blas(x, c)
    return GridSearch(c, lo, hi).assign(x)


class NearestCentroid:
    """:func:`assign` against fixed centroids, keeping the grid path's search structure between
    calls (an encoder calls it once per record batch). Labels are those of :func:`assign`.

    The grid covers the union of the boxes of the batches seen so far, widened by
    ``GRID_MARGIN`` of its span on each side; a batch outside it rebuilds it once.
    """

    GRID_MARGIN = 0.05

    def __init__(self, centroids: np.ndarray, *, backend: str = "auto") -> None:
        self.source = centroids  # the array given (callers compare it to spot a change)
        self.centroids = np.ascontiguousarray(centroids, dtype=np.float32)
        self.backend = backend
        self.grid: GridSearch | None = None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        c = self.centroids
        backend = "numba" if self.backend == "auto" and HAVE_NUMBA else self.backend
        if (backend != "numba" or x.ndim != 2 or x.shape[1] != c.shape[1] or x.shape[1] > GRID_MAX_D
                or len(x) == 0):
            return assign(x, c, backend=self.backend)
        if self.grid is None and len(x) < 4 * _grid_cells(len(c), x.shape[1]):
            return _assign_blas(x, c)
        lo, hi = _col_min_max(x)
        if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
            return _assign_blas(x, c)
        if self.grid is None or not self.grid.covers(lo, hi):
            if self.grid is not None:
                lo, hi = np.minimum(lo, self.grid.lo), np.maximum(hi, self.grid.hi)
            pad = self.GRID_MARGIN * (hi - lo)
            self.grid = GridSearch(c, lo - pad, hi + pad)
        return self.grid.assign(x)


def _blas_limit():
    """Single-threaded BLAS while our own threads split the rows (avoids oversubscription)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl absent
        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


def _assign_blas(x: np.ndarray, c: np.ndarray, use_numba: bool | None = None) -> np.ndarray:
    use_numba = HAVE_NUMBA if use_numba is None else use_numba
    n, d = x.shape
    k = len(c)
    c64 = c.astype(np.float64)
    c2 = np.einsum("ij,ij->i", c64, c64)
    # scores |c|^2 - 2 x.c by one product: [x, 1] @ [-2 c, |c|^2].T (-2 c is exact in float32)
    ct = np.ascontiguousarray(np.vstack([-2.0 * c.T, c2.astype(np.float32)[None]]))
    cmax = float(np.sqrt(c2.max()))
    # |score error| <= (d + 3) u (|x| + |c|)^2 in float32; tie window twice that
    tol_scale = 2.0 * (d + 3) * _U32
    rows = max(16, _BLOCK_BYTES // (4 * k))
    out = np.empty(n, dtype=np.int64)

    def work(lo: int, hi: int) -> None:
        m = min(rows, hi - lo)
        buf = np.empty((m, k), dtype=np.float32)
        xa = np.ones((m, d + 1), dtype=np.float32)
        for s in range(lo, hi, rows):
            xb = x[s : min(s + rows, hi)]
            b = len(xb)
            xa[:b, :d] = xb
            sb = np.matmul(xa[:b], ct, out=buf[:b])
            xb64 = xb.astype(np.float64)
            r = np.sqrt(np.einsum("ij,ij->i", xb64, xb64)) + cmax
            ar = np.arange(b)
            lab = sb.argmin(axis=1)
            best = sb[ar, lab]
            thr = (best + tol_scale * r * r).astype(np.float32)
            thr = np.nextafter(thr, np.float32(np.inf))  # round the window up
            sb[ar, lab] = np.inf
            flagged = np.flatnonzero(sb.min(axis=1) <= thr)  # second best within the window
            sb[ar, lab] = best
            if len(flagged) and use_numba:  # near tie in float32: re-rank exactly
                _rerank_rows(sb, thr, xb, c, flagged, lab)
            elif len(flagged):
                rr, cc = np.nonzero(sb[flagged] <= thr[flagged, None])
                rows_u, best_c = _rerank(xb, c, flagged[rr], cc)
                lab[rows_u] = best_c
            out[s : s + b] = lab

    n_threads = max(1, min(os.cpu_count() or 1, n // (4 * rows)))
    with _blas_limit():
        if n_threads == 1:
            work(0, n)
        else:
            bounds = np.linspace(0, n, 4 * n_threads + 1).astype(int)
            with ThreadPoolExecutor(n_threads) as pool:
                list(pool.map(work, bounds[:-1], bounds[1:]))
    return out


def assign(x: np.ndarray, centroids: np.ndarray, *, backend: str = "auto",
           _bounds: tuple | None = None) -> np.ndarray:
    """Index of the nearest centroid (squared L2) for every row of ``x``, as int64.

    ``backend``: ``"auto"`` (numba grid / BLAS paths, or the numpy ones without numba),
    ``"numba"``, ``"numpy"`` (no numba: cKDTree for small d, else BLAS with a numpy argmin),
    or ``"faiss"`` (optional; may differ on exact float32 ties). All but faiss give the same
    labels, ties going to the lowest centroid index.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    c = np.ascontiguousarray(centroids, dtype=np.float32)
    if x.ndim != 2 or c.ndim != 2 or x.shape[1] != c.shape[1]:
        raise ValueError(f"shapes {x.shape} and {c.shape} do not match")
    if backend not in ("auto", "numba", "numpy", "faiss"):
        raise ValueError(f"unknown backend {backend!r}; use 'auto', 'numba', 'numpy' or 'faiss'")
    if len(c) == 0:
        raise ValueError("no centroids")
    if len(x) == 0:
        return np.zeros(0, dtype=np.int64)
    d = x.shape[1]
    if backend == "auto":
        backend = "numba" if HAVE_NUMBA else "numpy"
    if backend == "numba":
        if not HAVE_NUMBA:
            raise ValueError("backend 'numba' requested but numba is not installed")
        if d <= GRID_MAX_D:
            return _assign_grid(x, c, _bounds)
        return _assign_blas(x, c, use_numba=True)
    if backend == "faiss":
        import faiss

        index = faiss.IndexFlatL2(d)
        index.add(c)
        return index.search(x, 1)[1][:, 0].astype(np.int64)
    if d <= KDTREE_MAX_D:
        try:
            return _assign_kdtree(x, c)
        except ImportError:  # pragma: no cover - scipy absent
            pass
    return _assign_blas(x, c, use_numba=False)


# ----------------------------------------------------------------------------- k-means
def _kmeans_pp_numpy(x: np.ndarray, first: int, u: np.ndarray) -> np.ndarray:
    """Same arithmetic as ``_kmeans_pp_numba`` (sequential sums), so the same picks."""
    n = len(x)
    k = len(u) + 1
    idx = np.full(k, -1, dtype=np.int64)
    idx[0] = first
    d2 = _sq_dist_rows(x, x[first])
    for s in range(1, k):
        cs = np.cumsum(d2)
        total = cs[-1]
        if not total > 0:
            return idx
        j = min(int(np.searchsorted(cs, u[s - 1] * total, side="right")), n - 1)
        idx[s] = j
        np.minimum(d2, _sq_dist_rows(x, x[j]), out=d2)
    return idx


def kmeans_pp(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding on ``x`` (already subsampled): ``k`` distinct rows of ``x``."""
    x = np.ascontiguousarray(x, dtype=np.float64)
    first = int(rng.integers(len(x)))
    u = rng.random(k - 1)
    idx = (_kmeans_pp_numba if HAVE_NUMBA else _kmeans_pp_numpy)(x, first, u)
    if idx[-1] < 0:
        raise ValueError("fewer distinct points than centroids")
    return x[idx].copy()


def _centroid_sums(xd: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    if HAVE_NUMBA:  # same sequential accumulation as np.bincount, so identical sums
        return _centroid_sums_numba(xd, labels, k)
    sums = np.zeros((k, xd.shape[1]))
    for j in range(xd.shape[1]):
        sums[:, j] = np.bincount(labels, weights=xd[:, j], minlength=k)
    return sums


def fit_kmeans(
    x: np.ndarray,
    k: int,
    *,
    seed: int = 0,
    n_iter: int = 20,
    init_sample: int = 64,
    max_points_per_centroid: int | None = 256,
    backend: str = "auto",
    name: str = "",
) -> np.ndarray:
    """Fit ``k`` centroids on ``x`` (n, d); return them as float32 (k_eff, d).

    When ``x`` holds fewer than ``k`` distinct rows, every distinct row becomes a centroid
    (``k_eff < k``) and a warning says so. The initialisation runs on at most
    ``init_sample * k`` rows drawn with ``seed``, so a large codebook fits fast; like faiss,
    the Lloyd iterations use at most ``max_points_per_centroid * k`` rows (None: all).
    The result depends only on the data and ``seed`` (not on numba being installed); with
    ``backend="faiss"`` the assignment may differ on float32 ties.
    """
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"k-means {name!r}: no training vectors")
    rng = np.random.default_rng(seed)
    uniq = np.unique(x, axis=0) if len(x) <= 4 * k else None
    if uniq is not None and len(uniq) <= k:
        if len(uniq) < k:
            warnings.warn(
                f"k-means {name!r}: only {len(uniq)} distinct training vectors for a codebook of "
                f"{k}; using {len(uniq)} centroids",
                RuntimeWarning,
                stacklevel=2,
            )
        return uniq.astype(np.float32)
    m = min(len(x), init_sample * k)
    sub = x[np.sort(rng.choice(len(x), size=m, replace=False))] if m < len(x) else x
    try:
        centers = kmeans_pp(sub, k, rng)
    except ValueError:
        uniq = np.unique(x, axis=0)
        warnings.warn(
            f"k-means {name!r}: only {len(uniq)} distinct training vectors for a codebook of "
            f"{k}; using {min(len(uniq), k)} centroids",
            RuntimeWarning,
            stacklevel=2,
        )
        return uniq[:k].astype(np.float32)
    if max_points_per_centroid is not None and len(x) > max_points_per_centroid * k:
        keep = np.sort(rng.choice(len(x), size=max_points_per_centroid * k, replace=False))
        x = x[keep]
    x = np.ascontiguousarray(x)
    xd = x.astype(np.float64)
    bounds = (xd.min(axis=0), xd.max(axis=0))  # of the fixed training rows, for the grid path
    for _ in range(n_iter):
        labels = assign(x, centers, backend=backend, _bounds=bounds)
        counts = np.bincount(labels, minlength=k).astype(np.float64)
        sums = _centroid_sums(xd, labels, k)
        empty = counts == 0
        new = centers.copy()
        new[~empty] = sums[~empty] / counts[~empty, None]
        if empty.any():  # move empty centroids onto the worst-fitted points
            d = _sq_dist_rows(xd, new[labels])
            far = np.argsort(-d, kind="stable")[: int(empty.sum())]
            new[np.flatnonzero(empty)] = xd[far]
        shift = float(np.max(np.abs(new - centers)))
        centers = new
        if shift == 0.0:
            break
    return centers.astype(np.float32)
