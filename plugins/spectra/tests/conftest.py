"""Fixtures of the spectra plugin's tests; helpers live in spectra_testdata.py."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from spectra_testdata import SMALL_ARMS, make_datacube  # noqa: E402


@pytest.fixture
def small_cube(tmp_path: Path) -> Path:
    """Short spectra (fast): desi b/r of 120/100 pixels, ZTF g/r, Gaia XP; 8 rows."""
    return make_datacube(tmp_path / "small.parquet", n=8, arms=SMALL_ARMS)


@pytest.fixture(scope="session")
def xp_design() -> dict[str, np.ndarray]:
    from astromodal_spectra.xp import design_matrix

    return {b: design_matrix(b) for b in ("BP", "RP")}
