"""SpectrumTokenizer keeps the tokenizer contract: the core's named checks, one test id each."""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from astromodal_spectra import SpectrumTokenizer
from spectra_testdata import SMALL_ARMS, make_datacube

from astromodal_core.testing import parametrize_with_checks


def _files() -> tuple[list[Path], Path, Path]:
    """Small datacubes (DESI b/r, ZTF g/r, Gaia XP), written at collection."""
    data = Path(tempfile.mkdtemp(prefix="spectra_conformance"))
    train = [make_datacube(data / f"train_{i}.parquet", n=6, seed=i, arms=SMALL_ARMS, id0=100 * i)
             for i in range(2)]
    test = make_datacube(data / "test.parquet", n=5, seed=7, arms=SMALL_ARMS, id0=10_000)
    table = pq.read_table(test)
    for name in table.column_names:  # the first row has no value in any list column
        if pa.types.is_list(table.schema.field(name).type):
            col = table.column(name).to_pylist()
            col[0] = None
            table = table.set_column(table.schema.get_field_index(name), name,
                                     pa.array(col, table.schema.field(name).type))
    missing = data / "missing.parquet"
    pq.write_table(table, missing)
    return train, test, missing


TRAIN, TEST, MISSING = _files()


def _make() -> SpectrumTokenizer:
    return SpectrumTokenizer(codebook_size=16, norm_bins=16, progress=False, batch_size=2)


@parametrize_with_checks(_make, TRAIN, TEST, missing_file=MISSING)
def test_contract(check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # few distinct XP vectors
        check()
