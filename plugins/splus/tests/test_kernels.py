"""The numba kernel and the numpy fallback give the same tokens as np.searchsorted."""

from __future__ import annotations

import numpy as np
import pytest
from astromodal_splus import kernels
from astromodal_splus.binning import fit_bins
from astromodal_splus.kernels import build_lookup, encode_numpy, encode_values

SENT = np.array([99.0, -99.0])
needs_numba = pytest.mark.skipif(kernels.numba is None, reason="numba not installed")


def _probe(edges: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.concatenate([
        rng.standard_cauchy(20_000) * 3,
        edges, np.nextafter(edges, -np.inf), np.nextafter(edges, np.inf),
        [np.nan, np.inf, -np.inf, 99.0, -99.0, 1e300, -1e300, 0.0, -0.0],
    ])


@pytest.mark.parametrize("backend", ["numpy", pytest.param("numba", marks=needs_numba)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_tokens_equal_searchsorted_right(backend, dtype):
    rng = np.random.default_rng(0)
    train = np.concatenate([rng.standard_t(1.5, 50_000), rng.integers(0, 4, 5_000)])
    edges = fit_bins(train, 1024).edges
    with np.errstate(over="ignore"):
        x = _probe(edges, rng).astype(dtype)
    tokens = encode_values(x, build_lookup(edges), 1024, SENT, backend=backend)
    assert tokens.dtype == np.uint16
    finite = np.isfinite(x) & (x != 99) & (x != -99)
    np.testing.assert_array_equal(tokens[finite], np.searchsorted(edges, x[finite], side="right"))
    assert np.all(tokens[~finite] == 1024)


@needs_numba
@pytest.mark.parametrize("n_edges", [0, 1, 2, 7, 300])
def test_numba_identical_to_numpy_fallback(n_edges):
    rng = np.random.default_rng(n_edges)
    edges = np.unique(rng.normal(size=n_edges)) if n_edges else np.empty(0)
    x = _probe(edges, rng)
    lk = build_lookup(edges)
    a = encode_values(x, lk, 64000, SENT, backend="numba")
    b = encode_values(x, lk, 64000, SENT, backend="numpy")
    np.testing.assert_array_equal(a, b)


@needs_numba
def test_numba_writes_into_strided_output_and_accepts_ints():
    edges = np.array([1.5, 2.5, 10.0])
    out = np.zeros((5, 3), dtype=np.uint16)
    encode_values(np.array([0, 2, 3, 99, 11]), build_lookup(edges), 7, SENT, backend="numba", out=out[:, 1])
    np.testing.assert_array_equal(out[:, 1], [0, 1, 2, 7, 3])
    np.testing.assert_array_equal(out[:, 0], 0)


def test_numpy_exact_tokens_on_known_values():
    edges = np.array([14.0, 18.0, 20.0])
    x = np.array([13.9, 14.0, 17.99, 18.0, 25.0, np.nan, -99.0])
    np.testing.assert_array_equal(encode_numpy(x, edges, 4, SENT), [0, 1, 1, 2, 3, 4, 4])


def test_unknown_backend_is_refused():
    with pytest.raises(ValueError, match="backend"):
        encode_values(np.zeros(3), build_lookup(np.array([1.0])), 2, SENT, backend="cuda")


@needs_numba
def test_chunked_threaded_path_identical_to_searchsorted(monkeypatch):
    rng = np.random.default_rng(5)
    edges = fit_bins(rng.normal(size=50_000), 1024).edges
    lk = build_lookup(edges)
    cols = [rng.normal(size=200_003).astype(np.float32) for _ in range(3)]
    cols[1][::7] = np.nan
    out = np.empty((200_003, 3), dtype=np.uint16)
    kernels.encode_many([(c, lk, out[:, j]) for j, c in enumerate(cols)], 1024, SENT)
    for j, c in enumerate(cols):
        np.testing.assert_array_equal(out[:, j], encode_numpy(c, edges, 1024, SENT))
    monkeypatch.setenv("ASTROMODAL_SPLUS_THREADS", "1")
    assert kernels.num_threads() == 1
    single = np.empty_like(out)
    kernels.encode_many([(c, lk, single[:, j]) for j, c in enumerate(cols)], 1024, SENT)
    np.testing.assert_array_equal(single, out)


def test_auto_falls_back_to_numpy_without_numba(monkeypatch):
    monkeypatch.setattr(kernels, "HAVE_NUMBA", False)
    assert kernels.resolve_backend("auto") == "numpy"
    edges = np.array([0.0, 1.0])
    np.testing.assert_array_equal(
        encode_values(np.array([-1.0, 0.5, 2.0, np.nan]), build_lookup(edges), 2, SENT), [0, 1, 2, 2]
    )
    monkeypatch.setattr(kernels, "numba", None)
    with pytest.raises(ImportError, match=r"astromodal-splus\[fast\]"):
        kernels.resolve_backend("numba")
