"""The image codebook is fitted by the core's k-means codebook block: deterministic, exact on clusters."""

from __future__ import annotations

import numpy as np
import pytest
from astromodal_image.tokenizer import ImageTokenizer

from astromodal_core import DataError
from astromodal_core.blocks import KMeansCodebook
from astromodal_core.kmeans import assign


def _latents(seed: int = 0) -> np.ndarray:
    """(n, D=2, 2, 2) latent grids around four separated centres; row 0 is an empty (NaN) row."""
    rng = np.random.default_rng(seed)
    truth = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])
    cells = np.concatenate([t + rng.normal(scale=0.1, size=(40, 2)) for t in truth])
    cells = cells[rng.permutation(len(cells))].astype(np.float32)
    z = cells.reshape(-1, 2, 2, 2).transpose(0, 3, 1, 2).copy()  # (40, D, H', W')
    z[0] = np.nan
    return z


def test_codebook_is_the_core_codebook_of_the_finite_latents(tiny):
    z = _latents()
    tok = ImageTokenizer(**tiny(cutout_size=8, channels=(8, 8), codebook_size=4, kmeans_iter=7, rng_seed=3))
    tok._fit_codebook_from_latents(z, "latents")
    vecs = z.transpose(0, 2, 3, 1).reshape(-1, 2)
    vecs = vecs[np.isfinite(vecs).all(1)]
    assert len(vecs) == 156  # the empty row's 4 NaN cells are left out
    want = KMeansCodebook(4, seed=3, n_iter=7, max_samples=200_000).fit(vecs).centroids
    np.testing.assert_array_equal(tok.codebook, want)
    assert tok.codebook.dtype == np.float32 and tok.codebook.flags.c_contiguous
    order = np.lexsort((np.round(tok.codebook[:, 1]), np.round(tok.codebook[:, 0])))
    np.testing.assert_allclose(tok.codebook[order], [[0, 0], [0, 10], [10, 0], [10, 10]], atol=0.05)
    labels = assign(vecs, tok.codebook)
    assert np.bincount(labels, minlength=4).min() >= 36  # every cluster found (4 cells were NaN)
    assert ((vecs - tok.codebook[labels]) ** 2).sum(1).max() < 0.2
    again = ImageTokenizer(**tiny(cutout_size=8, channels=(8, 8), codebook_size=4, kmeans_iter=7, rng_seed=3))
    again._fit_codebook_from_latents(z.copy(), "latents")
    np.testing.assert_array_equal(again.codebook, tok.codebook)  # deterministic for a seed


def test_subsample_is_deterministic_and_too_few_vectors_is_a_data_error(tiny):
    z = _latents(1)
    kw = tiny(cutout_size=8, channels=(8, 8), codebook_size=4, max_codebook_vectors=50)
    a, b = ImageTokenizer(**kw), ImageTokenizer(**kw)
    a._fit_codebook_from_latents(z, "x")
    b._fit_codebook_from_latents(z, "x")
    np.testing.assert_array_equal(a.codebook, b.codebook)
    big = ImageTokenizer(**tiny(cutout_size=8, channels=(8, 8), codebook_size=200))
    with pytest.raises(DataError, match=r"^cells: 156 latent vectors for a codebook of 200; add cutouts"):
        big._fit_codebook_from_latents(z, "cells")
    same = np.zeros((10, 2, 2, 2), np.float32)
    same[5:] = 1.0  # two distinct vectors only
    with pytest.raises(DataError, match=r"^flat: only 2 distinct latent vectors for a codebook of 4"):
        ImageTokenizer(**kw)._fit_codebook_from_latents(same, "flat")


def test_codebook_sees_the_eight_flips_of_every_cutout_when_augmenting(trained, train_cube):
    import torch
    from astromodal_image.network import dihedral

    x, valid = trained._preprocess_cpu(train_cube[1][:6])
    with torch.inference_mode():
        lat = trained._codebook_latents(x, valid, torch.device("cpu"))
        want = [trained._ensure_model().encoder(dihedral(x, k).contiguous()).numpy() for k in range(8)]
    assert trained.augment and lat.shape == (48, 2, 8, 8)
    np.testing.assert_allclose(lat, np.concatenate(want), rtol=1e-5, atol=1e-6)
    trained.augment = False
    try:
        with torch.inference_mode():
            np.testing.assert_allclose(trained._codebook_latents(x, valid, torch.device("cpu")), want[0],
                                       rtol=1e-5, atol=1e-6)
    finally:
        trained.augment = True
