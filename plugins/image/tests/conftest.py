"""Shared fixtures: small synthetic datacubes and one tokenizer trained once per session."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from astromodal_image import cutout_table, write_cutouts
from astromodal_image.synthetic import synthetic_cutouts
from astromodal_image.tokenizer import ImageTokenizer

torch.set_num_threads(1)  # tiny convolutions: a second thread only waits, more so on a shared machine

BANDS = ["U", "G", "R"]
SIZE = 32


def tiny_kwargs(**over):
    """A small architecture: 32x32x3 cutouts, two stages (8x8 grid), 32 codes, short epochs."""
    kw = dict(cutout_size=SIZE, bands=BANDS, latent_dim=2, codebook_size=32, channels=(8, 16),
              epochs=3, batch_size=16, lr=3e-3, max_cutouts=400, min_epoch_steps=8)
    kw.update(over)
    return kw


def make_cube(path: Path, n: int, *, seed: int, size: int = SIZE, bands=BANDS, start_id: int = 0):
    flux = synthetic_cutouts(n, len(bands), size, seed=seed)
    write_cutouts(path, cutout_table(np.arange(start_id, start_id + n), flux, bands))
    return flux


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("image_data")


@pytest.fixture(scope="session")
def train_cube(data_dir) -> tuple[Path, np.ndarray]:
    path = data_dir / "train.parquet"
    return path, make_cube(path, 320, seed=1)


@pytest.fixture(scope="session")
def test_cube(data_dir) -> tuple[Path, np.ndarray]:
    """Held-out cutouts; row 3 has no data at all, row 5 lacks band G, row 6 has NaN pixels."""
    path = data_dir / "test.parquet"
    flux = synthetic_cutouts(24, len(BANDS), SIZE, seed=99)
    flux[3] = np.nan
    flux[6, 0, :5, :5] = np.nan
    mask = np.ones((24, len(BANDS)), dtype=bool)
    mask[5, 1] = False
    write_cutouts(path, cutout_table(np.arange(1000, 1024), flux, BANDS, band_mask=mask))
    flux[5, 1] = np.nan
    return path, flux


@pytest.fixture(scope="session")
def trained(train_cube) -> ImageTokenizer:
    tok = ImageTokenizer(**tiny_kwargs(min_epoch_steps=40))  # 3 passes an epoch
    return tok.train([train_cube[0]], progress=False)


@pytest.fixture(scope="session")
def tiny():
    """``tiny(**overrides)``: keyword arguments of the small test architecture."""
    return tiny_kwargs


@pytest.fixture(scope="session")
def cube():
    """``cube(path, n, seed=..., size=..., start_id=...)``: write a synthetic datacube."""
    return make_cube
