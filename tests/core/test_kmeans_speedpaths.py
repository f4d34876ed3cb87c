"""The fast assignment paths of astromodal_core.kmeans agree with a float64 brute force."""

from __future__ import annotations

import numpy as np
import pytest

from astromodal_core import kmeans as K


def _paths(d: int) -> dict:
    paths = {"auto": lambda x, c: K.assign(x, c),
             "numpy": lambda x, c: K.assign(x, c, backend="numpy"),
             "blas_numpy": lambda x, c: K._assign_blas(x, c, use_numba=False)}
    if K.HAVE_NUMBA:
        paths["blas_numba"] = lambda x, c: K._assign_blas(x, c, use_numba=True)
        if d <= K.GRID_MAX_D:
            paths["grid"] = K._assign_grid
    if d <= K.KDTREE_MAX_D:
        pytest.importorskip("scipy")
        paths["kdtree"] = K._assign_kdtree
    return paths


def _reference(x: np.ndarray, c: np.ndarray) -> np.ndarray:
    return ((x.astype(np.float64)[:, None, :] - c.astype(np.float64)[None]) ** 2).sum(-1)


@pytest.mark.parametrize("d", [2, 3, 8, 32])
def test_fast_paths_match_float64_brute_force(d: int) -> None:
    rng = np.random.default_rng(d)
    x = (rng.normal(size=(6000, d)) * rng.uniform(0.1, 3, d) + 1.5).astype(np.float32)
    c = x[rng.choice(len(x), 301, replace=False)] + rng.normal(0, 1e-3, (301, d)).astype(np.float32)
    x[:50] = c[:50]  # points sitting exactly on centroids
    dist = _reference(x, c)
    ref = dist.argmin(axis=1)
    best = dist[np.arange(len(x)), ref]
    for name, fn in _paths(d).items():
        lab = fn(x, c)
        assert lab.dtype == np.int64 and lab.shape == (len(x),), name
        bad = lab != ref
        # a label may differ only where the two distances tie to float64 rounding
        got = dist[np.arange(len(x)), lab]
        assert np.all(got[bad] <= best[bad] * (1 + 1e-12)), (name, int(bad.sum()))
        assert bad.mean() < 1e-3, name


@pytest.mark.parametrize("d", [2, 3, 8, 32])
def test_exact_ties_go_to_the_lowest_index(d: int) -> None:
    rng = np.random.default_rng(10 + d)
    c = rng.integers(-3, 4, size=(64, d)).astype(np.float32)
    c = np.concatenate([c, c[::-1]])  # duplicated centroids: exact ties everywhere
    x = rng.integers(-4, 5, size=(5000, d)).astype(np.float32)  # many equidistant points
    ref = _reference(x, c).argmin(axis=1)  # integer arithmetic: exact; argmin = lowest index
    for name, fn in _paths(d).items():
        np.testing.assert_array_equal(fn(x, c), ref, err_msg=name)


def test_large_codebook_small_batch_and_single_centroid() -> None:
    rng = np.random.default_rng(0)
    c = rng.normal(size=(2048, 2)).astype(np.float32)
    x = rng.normal(size=(7, 2)).astype(np.float32)
    np.testing.assert_array_equal(K.assign(x, c), _reference(x, c).argmin(axis=1))
    np.testing.assert_array_equal(K.assign(x, c[:1]), np.zeros(7, dtype=np.int64))
    np.testing.assert_array_equal(K.assign(x, c[:1], backend="numpy"), np.zeros(7, dtype=np.int64))


@pytest.mark.skipif(not K.HAVE_NUMBA, reason="numba not installed")
def test_kmeans_pp_same_with_and_without_numba() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3000, 3))
    u = rng.random(127)
    np.testing.assert_array_equal(K._kmeans_pp_numba(x, 5, u), K._kmeans_pp_numpy(x, 5, u))
    labels = rng.integers(0, 50, 3000)
    sums = np.stack([np.bincount(labels, weights=x[:, j], minlength=50) for j in range(3)], 1)
    np.testing.assert_array_equal(K._centroid_sums_numba(x, labels, 50), sums)


def test_fit_is_deterministic_and_backend_independent() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(20000, 2)).astype(np.float32)
    a = K.fit_kmeans(x, 64, seed=4, n_iter=5)
    b = K.fit_kmeans(x, 64, seed=4, n_iter=5, backend="numpy")
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, K.fit_kmeans(x, 64, seed=5, n_iter=5))
