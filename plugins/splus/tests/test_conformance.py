"""ScalarTokenizer keeps the tokenizer contract: the core's named checks, one test id each."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from astromodal_splus import ScalarTokenizer
from astromodal_splus.synthetic import catalogue, write_parquet

from astromodal_core.testing import parametrize_with_checks

COLS = ["mag_pstotal_r", "mag_pstotal_g", "gaia_pmra", "z"]


def _files() -> tuple[list[Path], Path, Path]:
    """Small datacubes, written at collection (the checks are parametrized over them)."""
    data = Path(tempfile.mkdtemp(prefix="splus_conformance"))
    train = [write_parquet(data / f"train_{i}.parquet", catalogue(1500, seed=i, id_start=i * 10**5), 500)
             for i in range(2)]
    test = write_parquet(data / "test.parquet", catalogue(700, seed=9, id_start=10**7), 300)
    cols = catalogue(50, seed=8, id_start=10**8)
    for c in COLS:
        cols[c][0] = np.nan  # the first row has no valid value in any column
    return train, test, write_parquet(data / "missing.parquet", cols)


TRAIN, TEST, MISSING = _files()


def _make() -> ScalarTokenizer:
    return ScalarTokenizer(n_bins=64, scalar_columns=COLS, progress=False)


@parametrize_with_checks(_make, TRAIN, TEST, missing_file=MISSING)
def test_contract(check):
    check()
