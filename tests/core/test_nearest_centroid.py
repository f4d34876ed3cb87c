"""NearestCentroid (the grid search kept between an encoder's batches) and BottomK's order."""

from __future__ import annotations

import numpy as np
import pytest

from astromodal_core import kmeans as K
from astromodal_core.blocks import KMeansCodebook
from astromodal_core.sampling import BottomK


def _brute(x: np.ndarray, c: np.ndarray) -> np.ndarray:
    d = ((x.astype(np.float64)[:, None, :] - c.astype(np.float64)[None]) ** 2).sum(-1)
    return d.argmin(axis=1)  # ties to the lowest index, as every exact path


@pytest.mark.skipif(not K.HAVE_NUMBA, reason="the grid path needs numba")
def test_grid_is_kept_while_batches_fit_and_grown_once_when_not() -> None:
    rng = np.random.default_rng(3)
    c = rng.normal(size=(256, 2)).astype(np.float32)
    c[7] = c[3]  # two equal centroids: the lower index wins
    search = K.NearestCentroid(c)
    first = rng.normal(size=(20_000, 2)).astype(np.float32)
    np.testing.assert_array_equal(search(first), _brute(first, c))
    grid = search.grid
    assert grid is not None and np.all(grid.lo < first.min(0)) and np.all(grid.hi > first.max(0))
    inside = (rng.uniform(-1, 1, size=(3000, 2)) * 0.5).astype(np.float32)
    inside[:5] = c[3]
    lab = search(inside)
    assert search.grid is grid and lab[:5].tolist() == [3] * 5
    np.testing.assert_array_equal(lab, _brute(inside, c))
    outlier = np.concatenate([inside, [[40.0, -3.0]]]).astype(np.float32)  # outside the box
    np.testing.assert_array_equal(search(outlier), _brute(outlier, c))
    assert search.grid is not grid and search.grid.hi[0] > 40.0
    assert search.grid.lo[0] <= grid.lo[0] and search.grid.hi[1] >= grid.hi[1]


def test_codebook_reuses_its_search_until_the_centroids_change() -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(size=(30_000, 2)).astype(np.float32)
    book = KMeansCodebook(64, seed=0, n_iter=3).fit(x[:5000])
    np.testing.assert_array_equal(book.encode(x), _brute(x, book.centroids))
    search = book._search
    np.testing.assert_array_equal(book.encode(x[:100]), _brute(x[:100], book.centroids))
    assert book._search is search
    book.set_centroids(book.centroids[::-1].copy())
    np.testing.assert_array_equal(book.encode(x), _brute(x, book.centroids))
    assert book._search is not search


def test_bottomk_order_is_key_then_value() -> None:
    rng = np.random.default_rng(5)
    keys = rng.integers(0, 2**63, 5000).astype(np.uint64)
    values = rng.normal(size=(5000, 2)).astype(np.float32)
    res = BottomK(10)
    np.testing.assert_array_equal(res._order(keys, values), np.argsort(keys))
    keys[10:20] = keys[0]  # ties: broken by the values, first column first
    values[10:20, 0] = 0.5
    order = res._order(keys, values)
    np.testing.assert_array_equal(order, np.lexsort((values[:, 1], values[:, 0], keys)))
