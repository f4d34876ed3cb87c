"""Fixtures for the source tests: one small catalogue as an astropy Table, parquet, FITS and a
HATS catalogue (written by lsdb from the parquet file), and the ``srctoy`` tokenizer plugin."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

HERE = Path(__file__).resolve().parent
N_ROWS = 3000


def make_table(n: int = N_ROWS, seed: int = 4):
    """An astropy Table: ids, positions in one corner of the sky (a few HEALPix partitions),
    ``mag`` (masked 5%, unit mag), ``flux`` (float32, NaN 3%), ``flag`` (int16, masked 4%)."""
    astropy_table = pytest.importorskip("astropy.table")
    import astropy.units as u

    rng = np.random.default_rng(seed)
    t = astropy_table.Table()
    t["id"] = np.arange(10_000, 10_000 + n, dtype=np.int64)
    t["ra"] = rng.uniform(0.0, 80.0, n)
    t["dec"] = rng.uniform(0.0, 40.0, n)
    t["mag"] = astropy_table.MaskedColumn(rng.normal(19.0, 1.5, n), mask=rng.random(n) < 0.05, unit=u.mag)
    flux = rng.lognormal(0.0, 1.0, n).astype(np.float32)
    flux[rng.random(n) < 0.03] = np.nan
    t["flux"] = flux
    t["flux"].unit = u.Jy
    t["flag"] = astropy_table.MaskedColumn(rng.integers(0, 7, n).astype(np.int16), mask=rng.random(n) < 0.04)
    return t


def table_to_arrow(t) -> pa.Table:
    """The same rows as arrow: masked values as nulls."""
    cols = {}
    for c in t.colnames:
        col = t[c]
        mask = np.ma.getmaskarray(col.data) if hasattr(col, "mask") else None
        cols[c] = pa.array(np.asarray(col.data.data if mask is not None else col), mask=mask)
    return pa.table(cols)


@pytest.fixture(scope="session")
def catalogue(tmp_path_factory):
    """``{"table": Table, "parquet": path, "fits": path}`` of one catalogue."""
    d = tmp_path_factory.mktemp("catalogue")
    t = make_table()
    pq.write_table(table_to_arrow(t), d / "cat.parquet", row_group_size=700)
    t.write(d / "cat.fits")
    return {"table": t, "parquet": d / "cat.parquet", "fits": d / "cat.fits", "dir": d}


@pytest.fixture(scope="session")
def hats_catalogue(catalogue, tmp_path_factory):
    """The catalogue as a HATS catalogue, written by lsdb from the parquet file (a few
    partitions at HEALPix orders 0-2)."""
    lsdb = pytest.importorskip("lsdb")
    frame = pq.read_table(catalogue["parquet"]).to_pandas()
    out = tmp_path_factory.mktemp("hats") / "cat"
    cat = lsdb.from_dataframe(frame, ra_column="ra", dec_column="dec", catalog_name="cat",
                              lowest_order=0, highest_order=2, partition_rows=900, margin_threshold=None)
    cat.write_catalog(out, progress_bar=False)
    return out


@pytest.fixture
def srctoy_plugin():
    """The ``srctoy`` tokenizer registered in-process (local and dask workers see it too)."""
    from astromodal_core import register_plugin, unregister

    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    import source_toys  # type: ignore[import-not-found]

    register_plugin(source_toys, "astromodal-srctoy")
    try:
        yield source_toys
    finally:
        unregister("astromodal-srctoy")
