"""The core's tokenizer conformance checks, one test id per check, on a tiny architecture."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

import numpy as np
from astromodal_image import cutout_table, write_cutouts
from astromodal_image.synthetic import synthetic_cutouts
from astromodal_image.tokenizer import ImageTokenizer

from astromodal_core.testing import parametrize_with_checks

_DIR = Path(tempfile.mkdtemp(prefix="astromodal_image_checks_"))
atexit.register(shutil.rmtree, _DIR, True)
BANDS = ["G", "R"]


def _cube(name: str, n: int, seed: int, *, first_missing: bool = False) -> Path:
    flux = synthetic_cutouts(n, len(BANDS), 16, seed=seed)
    if first_missing:
        flux[0] = np.nan
    path = _DIR / name
    write_cutouts(path, cutout_table(np.arange(n) + 100 * seed, flux, BANDS))
    return path


TRAIN = [_cube("a.parquet", 40, 1), _cube("b.parquet", 30, 2)]
TEST = _cube("test.parquet", 12, 3)
MISSING = _cube("missing.parquet", 6, 4, first_missing=True)


def make() -> ImageTokenizer:
    return ImageTokenizer(cutout_size=16, bands=BANDS, channels=(8,), codebook_size=8, epochs=1,
                          batch_size=16, max_cutouts=64, min_epoch_steps=8)


@parametrize_with_checks(make, TRAIN, TEST, missing_file=MISSING)
def test_contract(check):
    check()
