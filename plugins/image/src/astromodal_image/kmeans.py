"""A deterministic numpy k-means (k-means++ seeding, chunked Lloyd iterations).

Results depend only on the data and the seed, never on faiss or thread counts.
"""

from __future__ import annotations

import numpy as np

_CHUNK = 65_536


def nearest(x: np.ndarray, centers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of, and squared distance to, the nearest center of each row of ``x``."""
    x = np.asarray(x, dtype=np.float64)
    c = np.asarray(centers, dtype=np.float64)
    c2 = (c * c).sum(1)
    idx = np.empty(len(x), dtype=np.int64)
    dist = np.empty(len(x), dtype=np.float64)
    for s in range(0, len(x), _CHUNK):
        xs = x[s : s + _CHUNK]
        d = c2[None, :] - 2.0 * xs @ c.T
        i = d.argmin(1)
        idx[s : s + _CHUNK] = i
        dist[s : s + _CHUNK] = np.maximum(d[np.arange(len(xs)), i] + (xs * xs).sum(1), 0.0)
    return idx, dist


def _plus_plus(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    n = len(x)
    centers = np.empty((k, x.shape[1]), dtype=np.float64)
    centers[0] = x[rng.integers(n)]
    d = ((x - centers[0]) ** 2).sum(1)
    for j in range(1, k):
        total = d.sum()
        i = int(rng.integers(n)) if total <= 0 else int(np.searchsorted(np.cumsum(d), rng.random() * total))
        centers[j] = x[min(i, n - 1)]
        d = np.minimum(d, ((x - centers[j]) ** 2).sum(1))
    return centers


def kmeans(
    x: np.ndarray, k: int, *, n_iter: int = 25, seed: int = 0, tol: float = 1e-6
) -> np.ndarray:
    """``k`` float32 centers of the rows of ``x`` (n >= k), k-means++ seeded with ``seed``."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or len(x) < k:
        raise ValueError(f"k-means needs at least k={k} vectors, got {len(x)}")
    rng = np.random.default_rng(seed)
    centers = _plus_plus(x, k, rng)
    prev = np.inf
    for _ in range(n_iter):
        idx, dist = nearest(x, centers)
        counts = np.bincount(idx, minlength=k)
        sums = np.stack([np.bincount(idx, weights=x[:, j], minlength=k) for j in range(x.shape[1])], 1)
        filled = counts > 0
        centers[filled] = sums[filled] / counts[filled, None]
        if (~filled).any():  # re-seed empty clusters on the worst-fitted points, deterministically
            worst = np.argsort(-dist, kind="stable")[: int((~filled).sum())]
            centers[~filled] = x[worst]
        inertia = float(dist.sum())
        if prev - inertia <= tol * max(prev, 1e-12):
            break
        prev = inertia
    return centers.astype(np.float32)
