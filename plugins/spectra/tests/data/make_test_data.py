"""Convert the shared real-data samples into the small parquet datacubes the tests read.

Run once from the repository root (needs astropy and pandas):

    .venv/bin/python plugins/spectra/tests/data/make_test_data.py

Inputs: ../shared/data/desi/coadd-*.fits (two DESI coadds, BSD-3-Clause, desihub/fastspecfit)
and ../shared/data/gaia_xp/XP_CONTINUOUS_RAW_with_missing_BP.csv (three Gaia DR3 XP sources,
one without BP; BSD-3-Clause, gaia-dpci/GaiaXPy). See PROVENANCE.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
SHARED = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE.parents[3].parent / "shared" / "data"


ARMS = "brz"
COADDS = ("coadd-4-80613-thru20210324.fits", "coadd-special-dark-27247.fits")


def read_coadd(path: Path) -> dict[str, object]:
    """The first spectrum of a DESI coadd: ``targetid`` and, per arm, ``wavelength_<arm>``,
    ``flux_<arm>``, ``ivar_<arm>`` and ``mask_<arm>`` arrays (also used by the demo's tool)."""
    from astropy.io import fits

    with fits.open(path) as h:
        out: dict[str, object] = {"targetid": int(h["FIBERMAP"].data["TARGETID"][0])}
        for arm in ARMS:
            for what in ("wavelength", "flux", "ivar", "mask"):
                data = h[f"{arm.upper()}_{what.upper()}"].data
                out[f"{what}_{arm}"] = np.asarray(data if what == "wavelength" else data[0])
    return out


def xp_table(csv: Path, id_col: str = "id", correlations: bool = True) -> pa.Table:
    """Gaia XP continuous coefficients from the archive's CSV as a parquet-ready table
    (coefficient lists parsed; a missing band gives nulls)."""
    import pandas as pd

    df = pd.read_csv(csv)
    arrays = {id_col: pa.array(df["source_id"].astype("int64"), type=pa.int64())}
    lists = ("coefficients", "coefficient_errors") + (("coefficient_correlations",) if correlations else ())
    for band in ("bp", "rp"):
        for c in lists:
            arrays[f"{band}_{c}"] = pa.array(
                [_parse(x) for x in df[f"{band}_{c}"]], type=pa.list_(pa.float64())
            )
        for c, t in (("standard_deviation", pa.float64()), ("n_relevant_bases", pa.int64()),
                     ("basis_function_id", pa.int64())):
            vals = [None if pd.isna(x) else x for x in df[f"{band}_{c}"]]
            arrays[f"{band}_{c}"] = pa.array(vals, type=t)
    return pa.table(arrays)


def _parse(cell: object) -> list[float] | None:
    if not isinstance(cell, str) or not cell.strip("() "):
        return None
    return [float(x) for x in cell.strip("()").split(",")]


def desi() -> None:
    spectra = [read_coadd(SHARED / "desi" / name) for name in COADDS]
    arrays = {"id": pa.array([s["targetid"] for s in spectra], type=pa.int64())}
    for arm in ARMS:
        for what in ("flux", "ivar", "mask"):
            t = pa.int32() if what == "mask" else pa.float32()
            arrays[f"desi_{what}_{arm}"] = pa.array(
                [np.asarray(s[f"{what}_{arm}"]).astype(t.to_pandas_dtype()) for s in spectra], type=pa.list_(t)
            )
    pq.write_table(pa.table(arrays), HERE / "desi_real.parquet")


def gaia_xp() -> None:
    pq.write_table(xp_table(SHARED / "gaia_xp" / "XP_CONTINUOUS_RAW_with_missing_BP.csv"), HERE / "gaia_xp_real.parquet")


if __name__ == "__main__":
    desi()
    gaia_xp()
    print("wrote", HERE / "desi_real.parquet", HERE / "gaia_xp_real.parquet")
