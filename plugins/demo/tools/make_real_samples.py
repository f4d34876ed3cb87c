"""Convert the shared real survey samples into the small files the demo mixes in.

Run from the repository root: ``.venv/bin/python plugins/demo/tools/make_real_samples.py
[SHARED_DATA_DIR]`` (default ``../shared/data``). Writes, under
``plugins/demo/src/astromodal_demo/data/``: ``real_desi.npz`` (two DESI coadds: target id,
redrock redshift, b/r/z flux, ivar, mask) and ``real_gaia_xp.parquet`` (three Gaia DR3 XP
sources, one without BP). See PROVENANCE.md there.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

OUT = Path(__file__).resolve().parents[1] / "src" / "astromodal_demo" / "data"
SHARED = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[4] / "shared" / "data"
COADDS = [("coadd-4-80613-thru20210324.fits", "redrock-4-80613-thru20210324.fits"),
          ("coadd-special-dark-27247.fits", "redrock-special-dark-27247.fits")]


def desi() -> None:
    from astropy.io import fits

    arrays: dict[str, list] = {"targetid": [], "z": []}
    for coadd, redrock in COADDS:
        with fits.open(SHARED / "desi" / coadd) as h, fits.open(SHARED / "desi" / redrock) as r:
            arrays["targetid"].append(int(h["FIBERMAP"].data["TARGETID"][0]))
            arrays["z"].append(float(r["REDSHIFTS"].data["Z"][0]))
            for arm in "brz":
                for what in ("wavelength", "flux", "ivar", "mask"):
                    data = h[f"{arm.upper()}_{what.upper()}"].data
                    arrays.setdefault(f"{what}_{arm}", []).append(
                        np.asarray(data if what == "wavelength" else data[0]))
    out = {k: np.asarray(v) for k, v in arrays.items()}
    for arm in "brz":
        out[f"wavelength_{arm}"] = out[f"wavelength_{arm}"][0]
        out[f"flux_{arm}"] = out[f"flux_{arm}"].astype(np.float32)
        out[f"ivar_{arm}"] = out[f"ivar_{arm}"].astype(np.float32)
        out[f"mask_{arm}"] = out[f"mask_{arm}"].astype(np.int32)
    np.savez_compressed(OUT / "real_desi.npz", **out)


def _parse(cell: object) -> list[float] | None:
    if not isinstance(cell, str) or not cell.strip("() "):
        return None
    return [float(x) for x in cell.strip("()").split(",")]


def gaia_xp() -> None:
    import pandas as pd

    df = pd.read_csv(SHARED / "gaia_xp" / "XP_CONTINUOUS_RAW_with_missing_BP.csv")
    arrays = {"source_id": pa.array(df["source_id"].astype("int64"), type=pa.int64())}
    for band in ("bp", "rp"):
        for c in ("coefficients", "coefficient_errors"):
            arrays[f"{band}_{c}"] = pa.array([_parse(x) for x in df[f"{band}_{c}"]],
                                             type=pa.list_(pa.float64()))
        for c, t in (("standard_deviation", pa.float64()), ("n_relevant_bases", pa.int64()),
                     ("basis_function_id", pa.int64())):
            arrays[f"{band}_{c}"] = pa.array([None if pd.isna(x) else x for x in df[f"{band}_{c}"]], type=t)
    pq.write_table(pa.table(arrays), OUT / "real_gaia_xp.parquet")


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    desi()
    gaia_xp()
    shutil.copy(SHARED / "desi" / "LICENSE_fastspecfit.rst", OUT / "LICENSE_fastspecfit.rst")
    shutil.copy(SHARED / "gaia_xp" / "LICENSE_GaiaXPy.txt", OUT / "LICENSE_GaiaXPy.txt")
    print("wrote", sorted(p.name for p in OUT.iterdir()))
