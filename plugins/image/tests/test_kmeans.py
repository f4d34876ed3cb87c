"""The numpy k-means: deterministic, exact on separated clusters."""

from __future__ import annotations

import numpy as np
import pytest
from astromodal_image.kmeans import kmeans, nearest


def test_recovers_separated_clusters_deterministically():
    rng = np.random.default_rng(0)
    truth = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])
    x = np.concatenate([t + rng.normal(scale=0.1, size=(50, 2)) for t in truth])
    a = kmeans(x, 4, seed=3)
    b = kmeans(x[::-1].copy()[::-1], 4, seed=3)
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.float32
    order = np.lexsort((np.round(a[:, 1]), np.round(a[:, 0])))
    np.testing.assert_allclose(a[order], [[0, 0], [0, 10], [10, 0], [10, 10]], atol=0.05)
    idx, dist = nearest(x, a)
    assert np.array_equal(np.bincount(idx, minlength=4), [50, 50, 50, 50])
    assert dist.max() < 0.2


def test_nearest_exact_and_too_few_points():
    idx, dist = nearest(np.array([[0.0, 0.0], [2.9, 3.1]]), np.array([[3.0, 3.0], [0.0, 1.0]]))
    assert idx.tolist() == [1, 0]
    np.testing.assert_allclose(dist, [1.0, 0.02])
    with pytest.raises(ValueError, match="at least k=5 vectors, got 3"):
        kmeans(np.zeros((3, 2)), 5)
