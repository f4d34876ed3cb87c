"""Synthetic S-PLUS-like datacubes shared by the tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from astromodal_splus.synthetic import catalogue, write_parquet


@pytest.fixture(scope="session")
def cubes(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Three datacubes of 4000 rows with distinct ids, in row groups of 1000."""
    d = tmp_path_factory.mktemp("cubes")
    return [
        write_parquet(d / f"datacube_{i}.parquet", catalogue(4000, seed=i, id_start=10_000 * i), 1000)
        for i in range(3)
    ]


@pytest.fixture(scope="session")
def fitted(cubes: list[Path]):
    from astromodal_splus import ScalarTokenizer

    return ScalarTokenizer(n_bins=256, progress=False, max_values_per_file_per_col=3000).train(cubes)
