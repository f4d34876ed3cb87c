"""The k-means codebook building block: fit, encode, decode, state, validation."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from astromodal_core import CodecFormatError, DataError, NotFittedError
from astromodal_core.blocks import KMeansCodebook, check_codebook
from astromodal_core.kmeans import assign, fit_kmeans
from astromodal_core.sampling import BottomK, hash_keys


def _blobs(n: int = 4000, d: int = 3, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = np.arange(8)[:, None] * np.ones(d)
    return (centres[rng.integers(0, 8, n)] + rng.normal(0, 0.05, (n, d))).astype(np.float32)


def test_fit_is_the_core_kmeans_and_encode_is_the_nearest_code() -> None:
    x = _blobs()
    book = KMeansCodebook(8, seed=3, n_iter=10).fit(x)
    np.testing.assert_array_equal(book.centroids, fit_kmeans(x, 8, seed=3, n_iter=10))
    assert (book.n_codes, book.dim, book.vocab_size, book.mask_token) == (8, 3, 9, 8)
    np.testing.assert_allclose(np.sort(book.centroids[:, 0]), np.arange(8), atol=0.02)
    ids = book.encode(x)
    assert ids.dtype == np.uint16 and ids.shape == (len(x),)
    np.testing.assert_array_equal(ids, assign(x, book.centroids))
    # a different seed gives a different (but equally good) codebook order
    assert not np.array_equal(KMeansCodebook(8, seed=4, n_iter=10).fit(x).centroids, book.centroids)


def test_max_samples_draws_a_seeded_subset_and_reservoirs_are_accepted() -> None:
    x = _blobs(5000)
    a = KMeansCodebook(8, seed=1, max_samples=500).fit(x)
    rng = np.random.default_rng(1)
    sub = x[np.sort(rng.choice(len(x), 500, replace=False))]
    np.testing.assert_array_equal(a.centroids, fit_kmeans(sub, 8, seed=1))
    res = BottomK(600, width=3, dtype=np.float32)
    res.add(hash_keys(np.arange(len(x)), 0), x)
    b = KMeansCodebook(8, seed=1).fit(res)
    np.testing.assert_array_equal(b.centroids, fit_kmeans(res.sample(), 8, seed=1))


def test_leading_dimensions_valid_mask_and_decode() -> None:
    x = _blobs(600).reshape(10, 60, 3)  # (rows, cells, d)
    book = KMeansCodebook(8).fit(x.reshape(-1, 3))
    valid = np.ones((10, 60), bool)
    valid[2] = False
    valid[5, 7] = False
    x[2] = np.nan  # rows without data may hold anything
    ids = book.encode(x, valid)
    assert ids.shape == (10, 60) and np.all(ids[2] == 8) and ids[5, 7] == 8
    np.testing.assert_array_equal(ids[valid], assign(x[valid], book.centroids))
    back = book.decode(ids)
    assert back.shape == (10, 60, 3) and back.dtype == np.float32
    np.testing.assert_array_equal(back[valid], book.centroids[ids[valid]])
    assert np.isnan(back[2]).all() and np.isnan(back[5, 7]).all()
    fill = np.array([0.0, -20.0, 0.0], np.float32)
    np.testing.assert_array_equal(book.decode(np.array([8, 0]), fill=fill)[0], fill)
    with pytest.raises(DataError, match="features hold NaN or infinite values; pass valid="):
        book.encode(x)
    with pytest.raises(DataError, match=r"valid has shape \(10,\), expected \(10, 60\)"):
        book.encode(x, valid[:, 0])
    with pytest.raises(DataError, match=r"features have shape \(4, 2\), expected \(\.\.\., 3\)"):
        book.encode(np.zeros((4, 2)))
    with pytest.raises(DataError, match=r"ids outside \[0, 8\] \(min 0, max 9\)"):
        book.decode(np.array([0, 9]))


def test_few_distinct_vectors_give_fewer_codes_and_a_fixed_vocabulary() -> None:
    x = np.repeat(np.arange(5, dtype=np.float32)[:, None], 4, axis=0).repeat(2, axis=1)
    with pytest.warns(RuntimeWarning, match="k-means 'tiny': only 5 distinct training vectors for a codebook of 64"):
        book = KMeansCodebook(64, name="tiny").fit(x)
    assert book.n_codes == 5 and book.vocab_size == 65 and book.mask_token == 64
    np.testing.assert_array_equal(book.encode(x), np.repeat(np.arange(5), 4))
    assert np.isnan(book.decode(np.array([5, 63, 64]))).all()  # ids with no code


def test_token_dtype_follows_the_vocabulary() -> None:
    assert KMeansCodebook(65535).dtype == np.uint16  # vocab 65536 (mask 65535) fits
    assert KMeansCodebook(65536).dtype == np.uint32
    x = np.arange(12, dtype=np.float32).reshape(6, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        big = KMeansCodebook(70000).fit(x)
    ids = big.encode(x, np.array([True] * 5 + [False]))
    assert ids.dtype == np.uint32 and ids.tolist() == [0, 1, 2, 3, 4, 70000]


def test_state_round_trip_through_json_and_arrays() -> None:
    book = KMeansCodebook(8, seed=2, n_iter=5, max_samples=1000, name="g").fit(_blobs())
    config, arrays = book.state("g/")
    assert list(arrays) == ["g/codebook"]
    again = KMeansCodebook.from_state(json.loads(json.dumps(config)), arrays, prefix="g/", dim=3)
    np.testing.assert_array_equal(again.centroids, book.centroids)
    assert again.config() == book.config()
    x = _blobs(100, seed=5)
    np.testing.assert_array_equal(again.encode(x), book.encode(x))


@pytest.mark.parametrize(
    ("codebook", "match"),
    [
        (np.zeros((4, 3, 1), np.float32), r"^g: codebook has shape \(4, 3, 1\), expected \(k, d\) with k, d >= 1$"),
        (np.zeros((0, 3), np.float32), r"^g: codebook has shape \(0, 3\)"),
        (np.zeros((9, 3), np.float32), r"^g: codebook has 9 codes, more than its size 8$"),
        (np.zeros((4, 2), np.float32), r"^g: codebook has shape \(4, 2\), expected \(k, 3\)$"),
        (np.array([[0.0, np.nan, 1.0]], np.float32), r"^g: codebook holds NaN or infinite values$"),
        (np.array([[0.0, np.inf, 1.0]]), r"^g: codebook holds NaN or infinite values$"),
        (np.array([["a", "b", "c"]]), r"^g: codebook has dtype <U1, expected floats$"),
    ],
)
def test_loading_validates_the_codebook(codebook: np.ndarray, match: str) -> None:
    config = KMeansCodebook(8).config()
    with pytest.raises(CodecFormatError, match=match):
        KMeansCodebook.from_state(config, {"codebook": codebook}, dim=3, where="g")
    with pytest.raises(CodecFormatError, match=match):
        check_codebook(codebook, size=8, dim=3, where="g")


def test_bad_configs_and_missing_arrays_are_codec_format_errors() -> None:
    good = np.zeros((2, 3), np.float32)
    with pytest.raises(CodecFormatError, match=r"^g: no array 'x/codebook'$"):
        KMeansCodebook.from_state(KMeansCodebook(8).config(), {"codebook": good}, prefix="x/", where="g")
    with pytest.raises(CodecFormatError, match=r"^g: bad codebook config \(KeyError: 'size'\)$"):
        KMeansCodebook.from_state({}, {"codebook": good}, where="g")
    with pytest.raises(CodecFormatError, match=r"^g: bad codebook config \(ValueError: size must be in"):
        KMeansCodebook.from_state({"size": 0}, {"codebook": good}, where="g")
    with pytest.raises(CodecFormatError, match=r"^codebook: config is a list, not a mapping$"):
        KMeansCodebook.from_state([], {"codebook": good})


def test_constructor_fit_and_unfitted_errors() -> None:
    with pytest.raises(ValueError, match=r"size must be in \[1, 4294967294\], got 0"):
        KMeansCodebook(0)
    with pytest.raises(ValueError, match="size must be an integer, got 2.5"):
        KMeansCodebook(2.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="backend must be one of"):
        KMeansCodebook(4, backend="gpu")
    book = KMeansCodebook(4, name="g")
    assert not book.is_fitted and "not fitted" in repr(book)
    for call in (lambda: book.encode(np.zeros((2, 2))), lambda: book.decode(np.zeros(2, int)),
                 lambda: book.arrays()):
        with pytest.raises(NotFittedError, match="KMeansCodebook 'g' is not fitted"):
            call()
    with pytest.raises(DataError, match=r"k-means 'g': no training vectors"):
        book.fit(np.zeros((0, 2)))
    with pytest.raises(DataError, match=r"k-means 'g': features must be \(n, d\), got shape \(5,\)"):
        book.fit(np.zeros(5))
    with pytest.raises(DataError, match="k-means 'g': training vectors hold NaN or infinite values"):
        book.fit(np.array([[0.0, np.nan], [1.0, 1.0]]))
