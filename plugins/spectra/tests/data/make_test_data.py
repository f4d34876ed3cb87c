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


def desi() -> None:
    from astropy.io import fits

    cols: dict[str, list] = {"id": []}
    for arm in "brz":
        for what in ("flux", "ivar", "mask"):
            cols[f"desi_{what}_{arm}"] = []
    for name in ("coadd-4-80613-thru20210324.fits", "coadd-special-dark-27247.fits"):
        with fits.open(SHARED / "desi" / name) as h:
            cols["id"].append(int(h["FIBERMAP"].data["TARGETID"][0]))
            for arm in "brz":
                for what in ("flux", "ivar", "mask"):
                    data = np.asarray(h[f"{arm.upper()}_{what.upper()}"].data[0])
                    cols[f"desi_{what}_{arm}"].append(data)
    arrays = {"id": pa.array(cols["id"], type=pa.int64())}
    for k, v in cols.items():
        if k == "id":
            continue
        t = pa.int32() if "_mask_" in k else pa.float32()
        arrays[k] = pa.array([np.asarray(x).astype(t.to_pandas_dtype()) for x in v], type=pa.list_(t))
    pq.write_table(pa.table(arrays), HERE / "desi_real.parquet")


def _parse(cell: object) -> list[float] | None:
    if not isinstance(cell, str) or not cell.strip("() "):
        return None
    return [float(x) for x in cell.strip("()").split(",")]


def gaia_xp() -> None:
    import pandas as pd

    df = pd.read_csv(SHARED / "gaia_xp" / "XP_CONTINUOUS_RAW_with_missing_BP.csv")
    arrays = {"id": pa.array(df["source_id"].astype("int64"), type=pa.int64())}
    for band in ("bp", "rp"):
        for c in ("coefficients", "coefficient_errors", "coefficient_correlations"):
            arrays[f"{band}_{c}"] = pa.array(
                [_parse(x) for x in df[f"{band}_{c}"]], type=pa.list_(pa.float64())
            )
        for c, t in (("standard_deviation", pa.float64()), ("n_relevant_bases", pa.int64()),
                     ("basis_function_id", pa.int64())):
            vals = [None if pd.isna(x) else x for x in df[f"{band}_{c}"]]
            arrays[f"{band}_{c}"] = pa.array(vals, type=t)
    pq.write_table(pa.table(arrays), HERE / "gaia_xp_real.parquet")


if __name__ == "__main__":
    desi()
    gaia_xp()
    print("wrote", HERE / "desi_real.parquet", HERE / "gaia_xp_real.parquet")
