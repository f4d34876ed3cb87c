"""Convert the shared real survey samples into the small files the demo mixes in.

Run from the repository root: ``.venv/bin/python plugins/demo/tools/make_real_samples.py
[SHARED_DATA_DIR]`` (default ``../shared/data``). Writes, under
``plugins/demo/src/astromodal_demo/data/``: ``real_desi.npz`` (two DESI coadds: target id,
redrock redshift, b/r/z flux, ivar, mask) and ``real_gaia_xp.parquet`` (three Gaia DR3 XP
sources, one without BP). See PROVENANCE.md there. The FITS and CSV readers are those of the
spectra plugin's test-data converter (``plugins/spectra/tests/data/make_test_data.py``).
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pyarrow.parquet as pq

OUT = Path(__file__).resolve().parents[1] / "src" / "astromodal_demo" / "data"
SHARED = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[4] / "shared" / "data"
REDROCK = ("redrock-4-80613-thru20210324.fits", "redrock-special-dark-27247.fits")


def _converters() -> ModuleType:
    """The spectra plugin's test-data converter, whose FITS and CSV readers this tool shares."""
    path = Path(__file__).resolve().parents[2] / "spectra" / "tests" / "data" / "make_test_data.py"
    spec = importlib.util.spec_from_file_location("astromodal_spectra_test_data", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def desi(conv: ModuleType) -> None:
    from astropy.io import fits

    spectra = [conv.read_coadd(SHARED / "desi" / name) for name in conv.COADDS]
    out: dict[str, np.ndarray] = {"targetid": np.asarray([s["targetid"] for s in spectra])}
    zs = []
    for name in REDROCK:
        with fits.open(SHARED / "desi" / name) as r:
            zs.append(float(r["REDSHIFTS"].data["Z"][0]))
    out["z"] = np.asarray(zs)
    for arm in conv.ARMS:
        out[f"wavelength_{arm}"] = np.asarray(spectra[0][f"wavelength_{arm}"]).astype(np.float64)
        for what, dtype in (("flux", np.float32), ("ivar", np.float32), ("mask", np.int32)):
            out[f"{what}_{arm}"] = np.asarray([s[f"{what}_{arm}"] for s in spectra]).astype(dtype)
    np.savez_compressed(OUT / "real_desi.npz", **out)


def gaia_xp(conv: ModuleType) -> None:
    table = conv.xp_table(SHARED / "gaia_xp" / "XP_CONTINUOUS_RAW_with_missing_BP.csv",
                          id_col="source_id", correlations=False)
    pq.write_table(table, OUT / "real_gaia_xp.parquet")


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    conv = _converters()
    desi(conv)
    gaia_xp(conv)
    shutil.copy(SHARED / "desi" / "LICENSE_fastspecfit.rst", OUT / "LICENSE_fastspecfit.rst")
    shutil.copy(SHARED / "gaia_xp" / "LICENSE_GaiaXPy.txt", OUT / "LICENSE_GaiaXPy.txt")
    print("wrote", sorted(p.name for p in OUT.iterdir()))
