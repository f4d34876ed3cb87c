"""The AVX2 float32 kernel: its tables, exact tokens against the numpy reference on every
path (contiguous and strided output, tails, nulls, sentinels), and when it stands aside."""

from __future__ import annotations

import numpy as np
import pytest

from astromodal_core.blocks import fit_bins, simd
from astromodal_core.blocks import quantile as q

needs_simd = pytest.mark.skipif(not simd.AVAILABLE, reason="no AVX2 (or numba) on this machine")


def test_tables_hold_the_edges_rounded_up_to_float32_one_per_cell():
    rng = np.random.default_rng(0)
    edges = fit_bins(rng.normal(20, 1.5, 50_000), 1024).edges
    cells = simd.float32_cells(edges)
    assert cells is not None and cells.base.dtype == np.int32 and cells.edge.dtype == np.float32
    assert len(cells.base) == len(cells.edge) == cells.n_cells
    counts = np.diff(np.append(cells.base, len(edges)))
    assert counts.min() >= 0 and counts.max() <= 1  # no cell holds two edges
    rounded = cells.edge[counts == 1].astype(np.float64)
    assert np.all(rounded >= edges) and np.all(np.nextafter(cells.edge[counts == 1], np.float32(-np.inf)) < edges)


@pytest.mark.parametrize("edges", [
    [1.0 + 1e-12, 1.0 + 2e-12, 2.0],  # the first two round up to one float32
    [1.0, 2.0, 1e300],                 # beyond float32
    [5.0],                             # one edge: the scalar kernel's case
])
def test_no_tables_where_float32_cannot_hold_the_edges(edges):
    assert simd.float32_cells(np.array(edges)) is None


def test_more_than_two_sentinels_leave_the_work_to_the_scalar_kernel():
    cells = simd.float32_cells(np.array([1.0, 2.0, 3.0]))
    out = np.zeros(4, dtype=np.uint16)
    assert simd.encode_f32(np.ones(4, np.float32), q._NO_BITMAP, 0, cells, np.array([7.0, 8.0, 9.0]), 9, out) is None
    assert not out.any()


def test_the_environment_switch_turns_it_off(monkeypatch):
    monkeypatch.setenv("ASTROMODAL_NO_SIMD", "1")
    assert simd._available() is False


@needs_simd
@pytest.mark.parametrize("seed", range(10))
def test_tokens_equal_the_numpy_reference(seed):
    rng = np.random.default_rng(seed)
    scale = 10.0 ** rng.uniform(-5, 5)
    data = rng.normal(0, scale, 20_000)
    if seed % 2:  # float32 data: edges between neighbouring float32 values
        data = data.astype(np.float32).astype(np.float64)
    edges = fit_bins(data, int(rng.choice([16, 256, 1024]))).edges
    cells = simd.float32_cells(edges)
    assert cells is not None
    sentinels = np.array([7.0, 0.1][: seed % 3])  # 0.1: no float32 equals it
    e32 = edges.astype(np.float32)
    x = np.concatenate([
        rng.choice(data, 3001), e32, np.nextafter(e32, np.float32(np.inf)), np.nextafter(e32, np.float32(-np.inf)),
        rng.normal(0, 3 * scale, 1000), sentinels, [np.nan, np.inf, -np.inf, 3.0e38, -3.0e38, 0.0, -0.0, 1e-45],
    ]).astype(np.float32)[: 5000 + seed]  # every tail length
    expected = q.encode_numpy(x, edges, 2000, sentinels)
    dense = np.zeros(len(x), dtype=np.uint16)
    strided = np.zeros((len(x), 3), dtype=np.uint16)
    assert simd.encode_f32(x, q._NO_BITMAP, 0, cells, sentinels, 2000, dense) == np.count_nonzero(expected == 2000)
    simd.encode_f32(x, q._NO_BITMAP, 0, cells, sentinels, 2000, strided[:, 1])
    np.testing.assert_array_equal(dense, expected)
    np.testing.assert_array_equal(strided[:, 1], expected)
    assert not strided[:, 0].any() and not strided[:, 2].any()
    nulls = rng.random(len(x) + 5) < 0.1  # an Arrow bitmap read from bit 5
    valid = np.packbits(~nulls, bitorder="little")
    missing = simd.encode_f32(x, valid, 5, cells, sentinels, 2000, dense)
    expected[nulls[5:]] = 2000
    np.testing.assert_array_equal(dense, expected)
    assert missing == np.count_nonzero(expected == 2000)


@needs_simd
def test_quantile_bins_take_it_for_float32_values_with_the_same_tokens():
    rng = np.random.default_rng(3)
    bins = q.QuantileBins(1024, ["a", "b"], sentinels=[99.0, -99.0]).fit(rng.normal(20, 2, (20_000, 2)))
    assert all(lk.f32 is not None for lk in bins._lookups)
    x = np.asfortranarray(rng.normal(20, 2, (70_001, 2)).astype(np.float32))  # contiguous columns: simd applies
    x[::13, 0] = np.nan
    x[::17, 1] = 99.0
    reference = q.QuantileBins(1024, ["a", "b"], sentinels=[99.0, -99.0], backend="numpy").set_tables(bins.tables)
    tokens = bins.encode(x)
    assert tokens.flags.f_contiguous  # each column contiguous, as the kernels write it
    np.testing.assert_array_equal(tokens, reference.encode(x))
    np.testing.assert_array_equal(bins.encode(np.ascontiguousarray(x)), tokens)  # strided columns: scalar kernel


def test_it_stands_aside_for_outputs_it_cannot_write():
    cells = simd.float32_cells(np.array([1.0, 2.0, 3.0]))
    x = np.arange(16, dtype=np.float32)
    for out in (np.zeros(16, dtype=np.uint8), np.zeros(16, dtype=np.int64), np.zeros(15, dtype=np.uint16)):
        assert simd.encode_f32(x, q._NO_BITMAP, 0, cells, np.empty(0), 9, out) is None
        assert not out.any()


def test_subnormal_edges_get_no_float32_tables():
    assert simd.float32_cells(np.array([-1.5, -0.5, 1e-40, 0.5, 1.5])) is None  # 1e-40 -> a subnormal float32


def test_it_is_off_when_numba_does_not_compile(monkeypatch):
    import numba

    monkeypatch.setattr(numba.config, "DISABLE_JIT", True)
    assert simd._available() is False
