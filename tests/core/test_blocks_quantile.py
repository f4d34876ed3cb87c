"""The quantile building block: edges, exact tokens, missing values, ragged rows, numba vs numpy,
saving and the validation of loaded state."""

from __future__ import annotations

import numpy as np
import pytest

from astromodal_core import CodecFormatError, DataError, NotFittedError
from astromodal_core.blocks import BinTable, QuantileBins, fit_bins, quantile_edges
from astromodal_core.blocks import quantile as q

SENT = np.array([99.0, -99.0])
needs_numba = pytest.mark.skipif(q.numba is None, reason="numba not installed")
BACKENDS = ["numpy", pytest.param("numba", marks=needs_numba)]


# ------------------------------------------------------------------------------ edges and tables
def test_equal_count_edges_are_midpoints_of_order_statistics():
    np.testing.assert_array_equal(quantile_edges(np.arange(8, dtype=float), 4), [1.5, 3.5, 5.5])


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
    bins = fit_bins(np.arange(1.0, 13.0), 3)  # 12 values, 3 bins of 4
    np.testing.assert_array_equal(bins.edges, [4.5, 8.5])
    np.testing.assert_array_equal(bins.centers, [2.5, 6.5, 10.5])
    np.testing.assert_array_equal(bins.widths, [3.5, 4.0, 3.5])
    np.testing.assert_array_equal(bins.counts, [4, 4, 4])


def test_single_value_sample_and_heavy_tails():
    bins = fit_bins(np.array([5.0]), 8)
    assert bins.effective_bins == 1 and list(bins.centers) == [5.0]
    pm = np.random.default_rng(2).standard_t(1.2, 200_000) * 5
    bins = fit_bins(pm, 1024)
    assert bins.effective_bins == 1024
    counts = np.bincount(np.searchsorted(bins.edges, pm, side="right"), minlength=1024)
    assert counts.min() >= 0.9 * len(pm) / 1024 and counts.max() <= 1.1 * len(pm) / 1024


# ------------------------------------------------------------------------------ the block
@pytest.fixture
def two() -> QuantileBins:
    """Columns a (1..8, sentinel 99) and b (0..7), 4 bins each: edges 2.5/4.5/6.5, 1.5/3.5/5.5."""
    return QuantileBins(4, ["a", "b"], sentinels={"a": [99.0]}).fit(
        {"a": np.arange(1.0, 9.0), "b": np.arange(8.0)})


@pytest.mark.parametrize("backend", BACKENDS)
def test_exact_tokens_of_scalar_and_multi_column_values(two, backend):
    two.backend = backend
    np.testing.assert_array_equal(two.table("a").edges, [2.5, 4.5, 6.5])
    np.testing.assert_array_equal(two.table("b").edges, [1.5, 3.5, 5.5])
    x = np.array([[1.0, 0.0], [2.5, 1.5], [6.49, 7.0], [1e9, -1e9], [99.0, 99.0]])
    tokens = two.encode(x)
    assert tokens.dtype == np.uint16 and tokens.shape == (5, 2)
    # 99 is a sentinel of a only: a's mask token, b's last bin
    np.testing.assert_array_equal(tokens, [[0, 0], [1, 1], [2, 3], [3, 0], [4, 3]])
    np.testing.assert_array_equal(two.encode(x[:, 1], "b"), tokens[:, 1])
    np.testing.assert_array_equal(two.encode(x[:, 0].astype(np.float32), 0), tokens[:, 0])
    ints = np.array([0, 2, 7, -5, 99], dtype=np.int64)  # any numeric dtype, here b's bins 0, 1, 3, 0, 3
    np.testing.assert_array_equal(two.encode_columns([x[:, 0], ints]), tokens)
    assert (two.mask_token, two.vocab_size, two.effective_bins) == (4, 5, {"a": 4, "b": 4})


@pytest.mark.parametrize("backend", BACKENDS)
def test_nan_inf_and_declared_sentinels_are_the_mask_token(backend):
    bins = QuantileBins(8, sentinels=[99.0, -99.0], backend=backend).fit(np.linspace(0, 10, 100))
    x = np.array([np.nan, np.inf, -np.inf, 99.0, -99.0, 5.0, 98.9])
    np.testing.assert_array_equal(bins.encode(x) == 8, [True] * 5 + [False, False])
    np.testing.assert_array_equal(bins.missing(x), [True] * 5 + [False, False])
    assert bins.encode(np.array([5.0]))[0] == np.searchsorted(bins.table().edges, 5.0, side="right")


def test_fit_leaves_missing_values_out_and_names_an_empty_column():
    with_junk = QuantileBins(4, sentinels=[-1.0]).fit(np.r_[np.arange(8.0), np.nan, np.inf, -1.0, -1.0])
    clean = QuantileBins(4).fit(np.arange(8.0))
    np.testing.assert_array_equal(with_junk.table().edges, clean.table().edges)
    assert with_junk.table().n_samples == 8
    with pytest.raises(DataError, match="column 'b': no finite, non-sentinel value"):
        QuantileBins(4, ["a", "b"]).fit([np.arange(3.0), np.array([np.nan])])
    with pytest.raises(DataError, match="no sample for column 'b'"):
        QuantileBins(4, ["a", "b"]).fit({"a": np.arange(3.0)})
    with pytest.raises(DataError, match=r"samples of shape \(5, 3\) do not match 2 column"):
        QuantileBins(4, ["a", "b"]).fit(np.zeros((5, 3)))


def test_decode_gives_bin_medians_nan_at_the_mask_and_refuses_unknown_ids(two):
    tokens = two.encode(np.array([[1.0, 0.0], [99.0, 7.0]]))
    np.testing.assert_array_equal(two.decode(tokens), [[1.5, 0.5], [np.nan, 6.5]])
    np.testing.assert_array_equal(two.widths(tokens), [[1.5, 1.5], [np.nan, 1.5]])
    np.testing.assert_array_equal(two.decode(np.array([0, 3]), "b"), [0.5, 6.5])
    few = QuantileBins(16).fit(np.repeat([1.0, 2.0, 3.0], 5))  # 3 effective bins
    with pytest.raises(DataError, match=r"column 'value': token 5 at position 1 is not a bin "
                                        r"\(it has 3 bins, mask token 16\)"):
        few.decode(np.array([0, 5]))
    with pytest.raises(DataError, match="expected integers"):
        few.decode(np.array([0.5]))


def test_token_values_cover_the_vocabulary(two):
    np.testing.assert_array_equal(two.token_values("a"), [1.5, 3.5, 5.5, 7.5, np.nan])
    few = QuantileBins(6).fit(np.repeat([0.1, 0.2, 0.5], 20))
    values = few.token_values()
    assert values.dtype == np.float64 and values.shape == (7,)
    np.testing.assert_allclose(values[:3], [0.1, 0.2, 0.5])
    assert np.isnan(values[3:]).all()  # ids the fit did not use, and the mask token


@pytest.mark.parametrize("backend", BACKENDS)
def test_ragged_rows_share_one_table_and_round_trip(backend):
    bins = QuantileBins(4, ["mag"], backend=backend).fit(np.arange(1.0, 9.0))
    flat = np.array([1.0, 3.0, np.nan, 8.0, 4.5, 2.0])
    indptr = np.array([0, 2, 2, 6], dtype=np.int32)  # rows of 2, 0 and 4 epochs
    tokens, ptr = bins.encode_ragged(flat, indptr)
    np.testing.assert_array_equal(tokens, [0, 1, 4, 3, 2, 0])
    assert ptr.dtype == np.int64 and list(ptr) == [0, 2, 2, 6]
    back = bins.decode(tokens)
    np.testing.assert_array_equal(back, [1.5, 3.5, np.nan, 7.5, 5.5, 1.5])
    np.testing.assert_array_equal(bins.encode(back), tokens)  # a bin's median encodes to that bin
    with pytest.raises(DataError, match=r"indptr must be non-decreasing within \[0, 6\]"):
        bins.encode_ragged(flat, np.array([0, 4, 2, 6]))
    with pytest.raises(DataError, match="indptr must be a non-empty 1-D integer array"):
        bins.encode_ragged(flat, np.array([0.0, 6.0]))


def test_bad_values_and_settings_are_named(two):
    with pytest.raises(DataError, match=r"values have shape \(3, 3\), expected \(n, 2\)"):
        two.encode(np.zeros((3, 3)))
    with pytest.raises(DataError, match="column 'a': values have dtype <U1, expected numbers"):
        two.encode(np.array(["x"]), "a")
    with pytest.raises(ValueError, match="name the column"):
        two.encode(np.zeros(3))
    with pytest.raises(KeyError, match="no column 'c'"):
        two.encode(np.zeros(3), "c")
    with pytest.raises(NotFittedError):
        QuantileBins(4).encode(np.zeros(3))
    for bad in (1, 65536, 2.0, True):
        with pytest.raises(ValueError, match=r"n_bins must be an integer in \[2, 65535\]"):
            QuantileBins(bad)
    with pytest.raises(ValueError, match=r"sentinels names \['c'\], which are not columns"):
        QuantileBins(4, ["a"], sentinels={"c": [1.0]})
    with pytest.raises(ValueError, match="columns lists a name twice"):
        QuantileBins(4, ["a", "a"])
    with pytest.raises(ValueError, match="backend must be one of"):
        QuantileBins(4, backend="cuda")


# ------------------------------------------------------------------------------ numba vs numpy
def _probe(edges: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.concatenate([
        rng.standard_cauchy(20_000) * 3,
        edges, np.nextafter(edges, -np.inf), np.nextafter(edges, np.inf),
        [np.nan, np.inf, -np.inf, 99.0, -99.0, 1e300, -1e300, 0.0, -0.0],
    ])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_tokens_equal_searchsorted_right(backend, dtype):
    rng = np.random.default_rng(0)
    edges = fit_bins(np.concatenate([rng.standard_t(1.5, 50_000), rng.integers(0, 4, 5_000)]), 1024).edges
    with np.errstate(over="ignore"):
        x = _probe(edges, rng).astype(dtype)
    tokens = q.encode_values(x, q.build_lookup(edges), 1024, SENT, backend=backend)
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
    lk = q.build_lookup(edges)
    np.testing.assert_array_equal(q.encode_values(x, lk, 64000, SENT, backend="numba"),
                                  q.encode_values(x, lk, 64000, SENT, backend="numpy"))


@needs_numba
def test_block_backends_agree_on_every_layout():
    rng = np.random.default_rng(4)
    train = rng.normal(size=(5000, 3))
    values = rng.normal(size=(200_003, 3)) * 1.5
    values[::7, 1] = np.nan
    values[::11, 2] = 99.0
    fast = QuantileBins(512, ["x", "y", "z"], sentinels=[99.0], backend="numba").fit(train)
    slow = QuantileBins(512, ["x", "y", "z"], sentinels=[99.0], backend="numpy").set_tables(fast.tables)
    np.testing.assert_array_equal(fast.encode(values), slow.encode(values))
    flat, indptr = values[:, 0], np.array([0, 5, 5, len(values)])
    np.testing.assert_array_equal(fast.encode_ragged(flat, indptr, "x")[0], slow.encode_ragged(flat, indptr, "x")[0])


@needs_numba
def test_numba_writes_into_strided_output_and_accepts_ints():
    out = np.zeros((5, 3), dtype=np.uint16)
    q.encode_values(np.array([0, 2, 3, 99, 11]), q.build_lookup(np.array([1.5, 2.5, 10.0])), 7, SENT,
                    backend="numba", out=out[:, 1])
    np.testing.assert_array_equal(out[:, 1], [0, 1, 2, 7, 3])
    np.testing.assert_array_equal(out[:, 0], 0)


def test_numpy_exact_tokens_on_known_values():
    x = np.array([13.9, 14.0, 17.99, 18.0, 25.0, np.nan, -99.0])
    np.testing.assert_array_equal(q.encode_numpy(x, np.array([14.0, 18.0, 20.0]), 4, SENT), [0, 1, 1, 2, 3, 4, 4])


@needs_numba
def test_chunked_threaded_path_identical_to_searchsorted(monkeypatch):
    rng = np.random.default_rng(5)
    edges = fit_bins(rng.normal(size=50_000), 1024).edges
    lk = q.build_lookup(edges)
    n = 2 * q._CHUNK + 3  # three kernel pieces a column
    cols = [rng.normal(size=n).astype(np.float32) for _ in range(3)]
    cols[1][::7] = np.nan
    out = np.empty((n, 3), dtype=np.uint16)
    q.encode_many([(c, lk, out[:, j]) for j, c in enumerate(cols)], 1024, SENT)
    for j, c in enumerate(cols):
        np.testing.assert_array_equal(out[:, j], q.encode_numpy(c, edges, 1024, SENT))
    monkeypatch.setenv("ASTROMODAL_THREADS", "1")
    assert q.num_threads() == 1
    single = np.empty_like(out)
    q.encode_many([(c, lk, single[:, j]) for j, c in enumerate(cols)], 1024, SENT)
    np.testing.assert_array_equal(single, out)


def test_auto_falls_back_to_numpy_without_numba(monkeypatch):
    monkeypatch.setattr(q, "HAVE_NUMBA", False)
    assert q.resolve_backend("auto") == "numpy"
    np.testing.assert_array_equal(
        q.encode_values(np.array([-1.0, 0.5, 2.0, np.nan]), q.build_lookup(np.array([0.0, 1.0])), 2, SENT),
        [0, 1, 2, 2],
    )
    monkeypatch.setattr(q, "numba", None)
    with pytest.raises(ImportError, match=r"astromodal-core\[fast\]"):
        q.resolve_backend("numba")


# ------------------------------------------------------------------------------ saving and loading
def test_state_round_trip_keeps_tokens(two):
    config, arrays = two.state()
    assert config == {"n_bins": 4, "columns": ["a", "b"], "sentinels": {"a": [99.0], "b": []},
                      "n_samples": [8, 8]}
    assert sorted(arrays) == sorted(f"c00{j}_{n}" for j in (0, 1) for n in ("centers", "counts", "edges", "widths"))
    again = QuantileBins.from_state(config, arrays)
    x = np.array([[1.0, 0.0], [99.0, 7.0], [np.nan, 3.0]])
    np.testing.assert_array_equal(again.encode(x), two.encode(x))
    np.testing.assert_array_equal(again.token_values("b"), two.token_values("b"))
    prefixed = QuantileBins.from_state(config, two.arrays("q_"), prefix="q_")
    np.testing.assert_array_equal(prefixed.encode(x), two.encode(x))


@pytest.mark.parametrize("change, message", [
    ({"c001_edges": np.array([1.5, np.nan, 5.5])},
     r"column 'b' \(array c001_edges\): bin edges hold NaN or infinite values"),
    ({"c000_edges": np.array([6.5, 4.5, 2.5])},
     r"column 'a' \(array c000_edges\): bin edges are not in increasing order"),
    ({"c000_centers": np.zeros(3)},
     r"column 'a': array c000_centers has shape \(3,\), expected \(4,\) for 3 edges"),
    ({"c000_edges": np.zeros((3, 1))}, r"column 'a': array 'c000_edges' has shape \(3, 1\), expected 1-D"),
    ({"c001_widths": np.array(["a", "b", "c", "d"])}, r"column 'b': array 'c001_widths' has dtype <U1"),
    ({"c000_centers": np.array([1.0, np.inf, 2.0, 3.0])}, r"column 'a': array c000_centers holds NaN"),
    ({"c000_counts": np.array([1, -1, 2, 2])}, r"column 'a': array c000_counts holds negative"),
    ({"c000_edges": np.arange(5.0), "c000_centers": np.zeros(6), "c000_widths": np.zeros(6),
      "c000_counts": np.zeros(6)}, r"column 'a': 6 bins exceed n_bins=4"),
])
def test_loaded_state_is_validated(two, change, message):
    config, arrays = two.state()
    with pytest.raises(CodecFormatError, match=message):
        QuantileBins.from_state(config, {**arrays, **change})


def test_loaded_config_is_validated(two):
    config, arrays = two.state()
    del arrays["c001_counts"]
    with pytest.raises(CodecFormatError, match="column 'b': missing array 'c001_counts'"):
        QuantileBins.from_state(config, arrays)
    config, arrays = two.state()
    with pytest.raises(CodecFormatError, match="n_samples must list one count per column"):
        QuantileBins.from_state({**config, "n_samples": [8]}, arrays)
    with pytest.raises(CodecFormatError, match=r"quantile bins: bad config \(ValueError: n_bins"):
        QuantileBins.from_state({**config, "n_bins": 0}, arrays)
    with pytest.raises(CodecFormatError, match=r"quantile bins: bad config \(KeyError"):
        QuantileBins.from_state({"n_bins": 4}, arrays)


def test_equal_edges_are_accepted_as_empty_bins():
    table = BinTable.from_arrays({"edges": np.array([1.0, 1.0, 2.0]), "centers": np.arange(4.0),
                                  "widths": np.ones(4), "counts": np.ones(4)}, "", 4)
    bins = QuantileBins(8).set_tables([table])
    np.testing.assert_array_equal(bins.encode(np.array([0.5, 1.0, 1.5, 2.0])), [0, 2, 2, 3])
