"""Deterministic k-means: k-means++ initialisation and Lloyd iterations with chunked assignment.

Assignment is exact nearest-centroid search. With numba installed it runs a parallel kernel
(``||c||^2 - 2 x.c`` per centroid, no distance matrix in memory); otherwise numpy/BLAS in
chunks. Both give the same nearest centroid (up to float32 ties).
"""

from __future__ import annotations

import warnings

import numpy as np

_CHUNK = 4096

try:  # optional accelerator; results do not depend on it
    import numba

    @numba.njit(parallel=True, fastmath=True, cache=True)
    def _assign_numba(x: np.ndarray, ct: np.ndarray, half_norms: np.ndarray) -> np.ndarray:
        n, d = x.shape
        k = ct.shape[1]
        out = np.empty(n, dtype=np.int64)
        block = 256
        for b in numba.prange((n + block - 1) // block):
            buf = np.empty(k, dtype=np.float32)
            for i in range(b * block, min(n, (b + 1) * block)):
                for c in range(k):
                    buf[c] = half_norms[c]
                for j in range(d):
                    xij = x[i, j]
                    for c in range(k):
                        buf[c] -= xij * ct[j, c]
                bv = np.float32(np.inf)
                for c in range(k):
                    bv = min(bv, buf[c])
                best = 0
                for c in range(k):
                    if buf[c] == bv:
                        best = c
                        break
                out[i] = best
        return out

    HAVE_NUMBA = True
except ImportError:  # pragma: no cover - exercised when numba is absent
    HAVE_NUMBA = False


def assign(x: np.ndarray, centroids: np.ndarray, *, backend: str = "auto") -> np.ndarray:
    """Index of the nearest centroid (squared L2) for every row of ``x``, as int64."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    c = np.ascontiguousarray(centroids, dtype=np.float32)
    if x.ndim != 2 or c.ndim != 2 or x.shape[1] != c.shape[1]:
        raise ValueError(f"shapes {x.shape} and {c.shape} do not match")
    if len(x) == 0:
        return np.zeros(0, dtype=np.int64)
    half = 0.5 * np.einsum("ij,ij->i", c, c)
    if backend == "auto":
        backend = "numba" if HAVE_NUMBA else "numpy"
    if backend == "numba":
        if not HAVE_NUMBA:
            raise ValueError("backend 'numba' requested but numba is not installed")
        return _assign_numba(x, np.ascontiguousarray(c.T), half.astype(np.float32))
    if backend == "faiss":  # optional; may differ from the others on exact float32 ties
        import faiss

        index = faiss.IndexFlatL2(c.shape[1])
        index.add(c)
        return index.search(x, 1)[1][:, 0].astype(np.int64)
    if backend != "numpy":
        raise ValueError(f"unknown backend {backend!r}; use 'auto', 'numba', 'numpy' or 'faiss'")
    out = np.empty(len(x), dtype=np.int64)
    ct = np.ascontiguousarray(c.T)
    step = max(256, _CHUNK * 256 // max(len(c), 1))
    for s in range(0, len(x), step):
        d = x[s : s + step] @ ct
        np.subtract(half, d, out=d)
        out[s : s + step] = d.argmin(axis=1)
    return out


def _sq_dist_to(x: np.ndarray, c: np.ndarray) -> np.ndarray:
    diff = x - c
    return np.einsum("ij,ij->i", diff, diff)


def kmeans_pp(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding on ``x`` (already subsampled): ``k`` distinct rows of ``x``."""
    n = len(x)
    centers = np.empty((k, x.shape[1]), dtype=np.float64)
    first = int(rng.integers(n))
    centers[0] = x[first]
    d2 = _sq_dist_to(x, centers[0])
    for i in range(1, k):
        total = d2.sum()
        if total <= 0:
            raise ValueError("fewer distinct points than centroids")
        r = rng.random() * total
        j = int(np.searchsorted(np.cumsum(d2), r, side="right"))
        j = min(j, n - 1)
        centers[i] = x[j]
        np.minimum(d2, _sq_dist_to(x, centers[i]), out=d2)
    return centers


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
        centers = kmeans_pp(sub.astype(np.float64), k, rng)
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
    xd = x.astype(np.float64)
    for _ in range(n_iter):
        labels = assign(x, centers, backend=backend)
        counts = np.bincount(labels, minlength=k).astype(np.float64)
        sums = np.zeros_like(centers)
        for j in range(x.shape[1]):
            sums[:, j] = np.bincount(labels, weights=xd[:, j], minlength=k)
        empty = counts == 0
        new = centers.copy()
        new[~empty] = sums[~empty] / counts[~empty, None]
        if empty.any():  # move empty centroids onto the worst-fitted points
            d = _sq_dist_to(xd, new[labels])
            far = np.argsort(-d, kind="stable")[: int(empty.sum())]
            new[np.flatnonzero(empty)] = xd[far]
        shift = float(np.max(np.abs(new - centers)))
        centers = new
        if shift == 0.0:
            break
    return centers.astype(np.float32)
