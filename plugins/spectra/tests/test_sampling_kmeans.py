"""Bounded, order-independent sampling and deterministic k-means (with and without numba)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from astromodal_spectra import SpectrumTokenizer
from spectra_testdata import SMALL_ARMS, make_datacube

from astromodal_core.kmeans import HAVE_NUMBA, assign, fit_kmeans

GROUPS = ["desi_b", {"name": "ztf_g", "kind": "ztf_mag_err", "patch_size": 2}]


def _tok(**kw) -> SpectrumTokenizer:
    return SpectrumTokenizer(codebook_size=16, norm_bins=16, progress=False, groups=GROUPS, **kw)


@pytest.fixture
def two_files(tmp_path: Path) -> list[Path]:
    return [make_datacube(tmp_path / f"f{i}.parquet", n=7, seed=i, xp=False, arms={"b": 60},
                          id0=1000 * (i + 1))
            for i in range(2)]


def test_train_is_order_independent_and_mergeable(two_files: list[Path]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        a = _tok(max_features_per_group=200).train(two_files)
        b = _tok(max_features_per_group=200).train(two_files[::-1])
        t = _tok(max_features_per_group=200)
        c = t.fit_from_samples([t.sample_file(f) for f in reversed(two_files)])
        d = _tok(max_features_per_group=200, rng_seed=1).train(two_files)
    assert a.fingerprint == b.fingerprint == c.fingerprint
    assert a.fingerprint != d.fingerprint
    r1, r2 = a.encode(two_files[0]), b.encode(two_files[0])
    np.testing.assert_array_equal(r1["tokens_desi_b"], r2["tokens_desi_b"])


def test_reservoirs_are_bounded(two_files: list[Path]) -> None:
    tok = _tok(max_features_per_group=50, max_rows_per_file=2, max_points_per_row=10)
    sample = tok.sample_file(two_files[0])
    desi, ztf = sample["desi_b"], sample["ztf_g"]
    assert len(desi.vectors) == 2 * 10  # 2 rows x 10 points, under the 50 cap
    assert len(ztf.vectors) <= 2 * 5  # patches of 2: 10 points = 5 patches per row
    assert desi.vectors.sample().shape[1] == 2 and ztf.vectors.sample().shape[1] == 6
    big = _tok(max_features_per_group=50).sample_file(two_files[0])["desi_b"]
    assert len(big.vectors) == 50 and big.vectors.seen > 50


def test_kmeans_backends_agree_and_fit_is_deterministic() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5000, 4)).astype(np.float32)
    c = x[:300]
    ref = assign(x, c, backend="numpy")
    brute = np.argmin(((x[:, None, :] - c[None]) ** 2).sum(-1), axis=1)
    assert (ref == brute).mean() > 0.999
    if HAVE_NUMBA:
        assert (assign(x, c, backend="numba") == ref).mean() > 0.999
    blobs = np.concatenate([rng.normal(m, 0.1, (200, 2)) for m in range(8)]).astype(np.float32)
    c1 = fit_kmeans(blobs, 8, seed=3, backend="numpy")
    c2 = fit_kmeans(blobs, 8, seed=3, backend="auto")
    np.testing.assert_allclose(np.sort(c1[:, 0]), np.arange(8), atol=0.05)
    np.testing.assert_array_equal(c1, c2)
    with pytest.raises(ValueError, match="unknown backend"):
        assign(x, c, backend="gpu")


def test_small_data_gives_fewer_centroids_with_a_warning() -> None:
    x = np.repeat(np.arange(10, dtype=np.float32)[:, None], 3, axis=0).repeat(2, axis=1)
    with pytest.warns(RuntimeWarning, match="only 10 distinct training vectors for a codebook of 2048"):
        c = fit_kmeans(x, 2048, name="g")
    assert c.shape == (10, 2)
    np.testing.assert_array_equal(assign(x, c), np.repeat(np.arange(10), 3))


def test_large_codebook_on_small_cube(tmp_path: Path) -> None:
    path = make_datacube(tmp_path / "c.parquet", n=5, arms=SMALL_ARMS, xp=False, ztf=False)
    with pytest.warns(RuntimeWarning, match="distinct training vectors"):
        tok = SpectrumTokenizer(codebook_size=2048, progress=False).train([path])
    assert tok.n_centroids["desi_b"] < 2048
    res = tok.encode(path)
    assert res["tokens_desi_b"].max() == 2048  # mask token for masked edges / missing row
    assert res["tokens_desi_b"][0, 5:].max() < tok.n_centroids["desi_b"]
