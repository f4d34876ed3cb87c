"""Quantile edges, bin medians and widths on known inputs."""

from __future__ import annotations

import numpy as np
from astromodal_splus.binning import fit_bins, quantile_edges


def test_equal_count_edges_are_midpoints_of_order_statistics():
    s = np.arange(8, dtype=float)
    np.testing.assert_array_equal(quantile_edges(s, 4), [1.5, 3.5, 5.5])


def test_few_distinct_values_get_one_bin_each():
    s = np.sort(np.array([1.0, 1, 1, 2, 2, 3, 3, 3, 3]))
    np.testing.assert_array_equal(quantile_edges(s, 16), [1.5, 2.5])
    bins = fit_bins(s, 16)
    assert bins.effective_bins == 3
    np.testing.assert_array_equal(bins.centers, [1, 2, 3])
    np.testing.assert_array_equal(bins.counts, [3, 2, 4])


def test_a_tie_takes_one_bin_and_the_rest_share_the_others():
    rng = np.random.default_rng(1)
    x = np.concatenate([np.zeros(5000), rng.normal(size=5000)])
    bins = fit_bins(x, 64)
    assert np.all(np.diff(bins.edges) > 0)
    assert bins.effective_bins == 64  # the tie does not collapse 32 quantiles into one bin
    tokens = np.searchsorted(bins.edges, x, side="right")
    zero_bin = tokens[0]
    assert np.all(tokens[:5000] == zero_bin) and bins.counts[zero_bin] == 5000
    assert bins.centers[zero_bin] == 0.0
    others = np.delete(bins.counts, zero_bin)
    assert others.min() >= 20 and others.max() <= 2 * 5000 / 63  # edges around the tie cut one bin
    assert abs(np.median(others) - 5000 / 62) < 2
    assert len(np.unique(tokens)) == bins.effective_bins and np.all(bins.counts > 0)


def test_many_ties_never_leave_empty_bins():
    rng = np.random.default_rng(3)
    for x in (np.round(rng.normal(size=20_000), 1), np.round(rng.normal(size=20_000), 2),
              np.concatenate([np.zeros(3000), np.ones(3000), rng.normal(size=4000)])):
        bins = fit_bins(x, 64)
        assert np.all(np.diff(bins.edges) > 0) and np.all(bins.counts > 0)
        assert bins.effective_bins >= 60
        tokens = np.searchsorted(bins.edges, x, side="right")
        np.testing.assert_array_equal(np.bincount(tokens, minlength=bins.effective_bins), bins.counts)


def test_centers_are_bin_medians_and_widths_span_the_bin():
    x = np.arange(1.0, 13.0)  # 12 values, 3 bins of 4
    bins = fit_bins(x, 3)
    np.testing.assert_array_equal(bins.edges, [4.5, 8.5])
    np.testing.assert_array_equal(bins.centers, [2.5, 6.5, 10.5])
    np.testing.assert_array_equal(bins.widths, [3.5, 4.0, 3.5])
    np.testing.assert_array_equal(bins.counts, [4, 4, 4])


def test_single_value_sample():
    bins = fit_bins(np.array([5.0]), 8)
    assert bins.effective_bins == 1
    np.testing.assert_array_equal(bins.centers, [5.0])


def test_heavy_tails_keep_all_bins():
    rng = np.random.default_rng(2)
    pm = rng.standard_t(1.2, 200_000) * 5
    bins = fit_bins(pm, 1024)
    assert bins.effective_bins == 1024
    counts = np.bincount(np.searchsorted(bins.edges, pm, side="right"), minlength=1024)
    assert counts.min() >= 0.9 * len(pm) / 1024 and counts.max() <= 1.1 * len(pm) / 1024
