"""The zero-copy Arrow encode path of the core quantile block (what ScalarTokenizer.encode runs).

Arrow int / float32 / float64 arrays are read in place (value buffer + validity bitmap, any
offset), tokens are written straight into the output and equal the numpy reference path;
the branch-free and the searching kernel give ``searchsorted(edges, x, "right")`` exactly.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from astromodal_core import DataError
from astromodal_core.blocks import quantile as q
from astromodal_core.blocks.quantile import (
    HAVE_NUMBA,
    Lookup,
    QuantileBins,
    arrow_values,
    build_lookup,
)

needs_numba = pytest.mark.skipif(not HAVE_NUMBA, reason="numba not installed")

INT_TYPES = [pa.int8(), pa.int16(), pa.int32(), pa.int64(), pa.uint8(), pa.uint16(), pa.uint32(), pa.uint64()]
FLOAT_TYPES = [pa.float32(), pa.float64()]


def _array(t: pa.DataType, n: int, rng: np.random.Generator, null_frac: float = 0.1) -> pa.Array:
    if pa.types.is_integer(t):
        info = np.iinfo(t.to_pandas_dtype())
        values = rng.integers(max(info.min, -100), min(info.max, 100), n).astype(t.to_pandas_dtype())
    else:
        values = rng.normal(0, 30, n).astype(t.to_pandas_dtype())
        values[::37] = np.nan
        values[5::41] = np.inf
    return pa.array(values, type=t, mask=rng.random(n) < null_frac)


@pytest.mark.parametrize("t", INT_TYPES + FLOAT_TYPES, ids=str)
def test_arrow_values_is_a_view_with_the_validity_bitmap(t: pa.DataType) -> None:
    rng = np.random.default_rng(0)
    arr = _array(t, 1000, rng).slice(13, 900)  # starts mid-byte of the bitmap
    values, valid, offset = arrow_values(arr)
    assert values.dtype == np.dtype(t.to_pandas_dtype()) and len(values) == 900
    assert np.shares_memory(values, np.frombuffer(arr.buffers()[1], dtype=np.uint8))
    bits = np.unpackbits(valid, bitorder="little")[offset : offset + 900].astype(bool)
    np.testing.assert_array_equal(bits, arr.is_valid().to_numpy(zero_copy_only=False))
    ok = bits
    np.testing.assert_array_equal(values[ok], arr.to_numpy(zero_copy_only=False)[ok])


def test_arrow_values_without_nulls_and_other_layouts() -> None:
    values, valid, offset = arrow_values(pa.array(np.arange(5.0)))
    assert len(valid) == 0 and offset == 0
    np.testing.assert_array_equal(values, np.arange(5.0))
    assert arrow_values(pa.chunked_array([pa.array([1.0, 2.0])]))[0].tolist() == [1.0, 2.0]
    assert arrow_values(pa.chunked_array([pa.array([1.0]), pa.array([2.0])])) is None
    assert arrow_values(pa.array(np.arange(3, dtype=np.float16))) is None
    assert arrow_values(pa.array([1, 2], type=pa.decimal128(5, 1))) is None
    assert len(arrow_values(pa.array([], type=pa.float32()))[0]) == 0


@pytest.mark.parametrize("backend", ["auto", "numpy"])
def test_arrow_columns_give_the_numpy_reference_tokens(backend: str) -> None:
    rng = np.random.default_rng(1)
    types = INT_TYPES + FLOAT_TYPES + [pa.float16(), pa.decimal128(9, 3)]
    names = [str(t) for t in types]
    n = q._CHUNK + 4_465  # more than one kernel piece
    train = {c: rng.normal(0, 30, 5000) for c in names}
    bins = QuantileBins(64, names, sentinels={"float": [7.0], "int32": [0.0]}, backend=backend).fit(train)
    arrays = []
    for t in types:
        if pa.types.is_decimal(t):
            a = pa.array(rng.normal(0, 30, n + 3).round(3)).cast(t)
        elif pa.types.is_float16(t):
            a = pa.array(rng.normal(0, 30, n + 3).astype(np.float16))
        else:
            a = _array(t, n + 3, rng)
        arrays.append(a.slice(3))
    arrays[names.index("float")] = pa.concat_arrays([pa.array(np.array([7.0, np.nextafter(np.float32(7), np.float32(8))], np.float32)),
                                                     arrays[names.index("float")].slice(2)])
    out = np.full((n, len(types)), 9999, dtype=np.uint16)
    counts = bins.start_encode(arrays, out).result()
    reference = QuantileBins(64, names, sentinels=bins.sentinels, backend="numpy").set_tables(bins.tables)
    as_numpy = [np.asarray(a.to_numpy(zero_copy_only=False), dtype=np.float64) for a in arrays]
    expected = reference.encode_columns(as_numpy)
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(counts, (expected == 64).sum(axis=0))
    for j, a in enumerate(arrays):  # nulls are the mask token
        assert np.all(out[a.is_null().to_numpy(zero_copy_only=False), j] == 64)
    j = names.index("float")
    assert out[0, j] == 64 and out[1, j] != 64  # the sentinel, and one ulp above it


def test_non_numeric_arrow_column_is_named() -> None:
    bins = QuantileBins(4, ["a", "b"]).fit({"a": np.arange(10.0), "b": np.arange(10.0)})
    with pytest.raises(DataError, match=r"column 'b': values have type string, expected numbers"):
        bins.encode_columns([pa.array([1.0]), pa.array(["x"])])


@needs_numba
@pytest.mark.parametrize("kind", ["spread", "clustered", "default_fields"])
def test_kernel_paths_equal_searchsorted(kind: str) -> None:
    rng = np.random.default_rng(2)
    if kind == "clustered":  # many edges within one cell: the searching path
        edges = np.unique(np.concatenate([rng.normal(0, 1e-9, 300), rng.normal(0, 10, 300)]))
    else:
        edges = q.fit_bins(rng.normal(0, 10, 100_000), 1024).edges  # quantile edges: regular gaps
    lk = build_lookup(edges)
    if kind == "default_fields":  # a Lookup made without padded / max_run: searches
        lk = Lookup(edges=lk.edges, lut=lk.lut, lo=lk.lo, scale=lk.scale, n_cells=lk.n_cells)
    else:
        assert (lk.max_run <= 1) == (kind == "spread")
        assert lk.lut.dtype == np.uint16
    x = np.concatenate([rng.normal(0, 12, 50_000), edges, np.nextafter(edges, np.inf), np.nextafter(edges, -np.inf),
                        [np.nan, np.inf, -np.inf, 1e308, -1e308, 0.0, -0.0, 5.0]])
    out = np.empty(len(x), dtype=np.uint16)
    sent = np.array([5.0])
    missing = q._run_kernel(x, q._NO_BITMAP, 0, lk, sent, q._check_flags(edges, sent), np.uint16(2000), out)
    bad = ~np.isfinite(x) | (x == 5.0)
    np.testing.assert_array_equal(out[~bad], np.searchsorted(edges, x[~bad], side="right"))
    assert np.all(out[bad] == 2000) and missing == bad.sum()
