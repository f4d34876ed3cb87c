"""Make the token-identity fixture of ``test_token_identity.py`` (run once; never regenerate
it to make a test pass).

Writes beside this script: ``edge.parquet`` (synthetic DESI-like arms and ZTF light curves with
the edge cases: masked and NaN pixels, ivar 0, mask bits, empty and short rows, list<double>
and bool mask columns), fitted tokenizers ``tok_<name>.npz`` (+ codebook companions) and
``expected.npz``: ``<name>__<output>`` what ``encode()`` returned, and ``expected.json``: each
tokenizer's fingerprint (training again from the same files must give it) and the commit.

    .venv/bin/python plugins/spectra/tests/data/token_identity/make_fixture.py
"""

from __future__ import annotations

import json
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).parent
DATA = HERE.parent

#: name -> (training / encoded file, SpectrumTokenizer settings)
CASES: dict[str, tuple[str, dict]] = {
    "desi": ("desi_real.parquet",
             {"codebook_size": 256, "norm_bins": 256, "groups": ["desi_b", "desi_r", "desi_z"]}),
    "desi_ls": ("desi_real.parquet",
                {"codebook_size": 64, "norm_bins": 128,
                 "groups": [{"name": f"desi_{a}", "kind": "flux_ivar", "encoding": "level_shape"}
                            for a in "brz"]}),
    "desi_p4": ("desi_real.parquet",
                {"codebook_size": 128, "norm_bins": 64,
                 "groups": [{"name": "desi_b", "kind": "flux_ivar", "patch_size": 4}]}),
    "xp": ("gaia_xp_real.parquet",
           {"codebook_size": 512, "norm_bins": 64, "groups": ["gaiaxp_bp", "gaiaxp_rp"]}),
    "edge": ("token_identity/edge.parquet",
             {"codebook_size": 64, "norm_bins": 32, "max_rows_per_file": 5,
              "max_points_per_row": 40, "batch_size": 3,
              "groups": ["desi_b",
                         {"name": "desi_r", "kind": "flux_ivar", "patch_size": 3},
                         "ztf_g",
                         {"name": "ztf_r", "kind": "ztf_mag_err", "patch_size": 2,
                          "layout": "padded", "time_encoding": "delta"}]}),
}


def edge_file(path: Path) -> Path:
    """Synthetic rows with every masking case of the flux_ivar and ZTF readers."""
    rng = np.random.default_rng(15)
    n = 9
    cols: dict[str, pa.Array] = {"id": pa.array(np.arange(500, 500 + n) * 7, pa.int64())}
    for arm, npix, ftype in (("b", 300, pa.float32()), ("r", 200, pa.float64())):
        x = np.linspace(0, 1, npix)
        fl, iv, mk = [], [], []
        for i in range(n):
            m = npix - (0 if i % 3 else 17 * i)  # some rows are shorter
            if i == 4:  # no spectrum
                fl.append([]), iv.append([]), mk.append([])
                continue
            amp = 10 ** rng.uniform(-1, 2) * (-1 if i == 6 else 1)
            sig = abs(amp) * rng.uniform(0.02, 0.3) * (1 + x[:m])
            f = amp * (1 + 0.4 * np.sin(9 * x[:m] + i)) + rng.normal(0, 1, m) * sig
            ivar = 1.0 / sig**2
            mask = np.zeros(m, bool)
            mask[: 3 + i] = True
            f[10 + i] = np.nan
            ivar[20 + 2 * i: 25 + 2 * i] = 0.0
            if i == 7:  # every pixel masked
                ivar[:] = 0.0
            if i == 8:  # a row whose flux is 0 everywhere valid: scale from sigma
                f[:] = 0.0
            fl.append(f), iv.append(ivar), mk.append(mask)
        cols[f"desi_flux_{arm}"] = pa.array(fl, pa.list_(ftype))
        cols[f"desi_ivar_{arm}"] = pa.array(iv, pa.list_(ftype))
        cols[f"desi_mask_{arm}"] = pa.array(
            [list(mm) for mm in mk], pa.list_(pa.bool_() if arm == "r" else pa.int32()))
    for band in ("g", "r"):
        t, m, e = [], [], []
        for i in range(n):
            k = 0 if i == 2 else int(rng.integers(1, 30))
            tt = np.sort(58000 + rng.uniform(0, 300, k))
            mag = rng.uniform(15, 20) + 0.3 * np.sin(tt / 7.0)
            err = rng.uniform(0.01, 0.1, k)
            if k > 3:
                mag[1] = np.nan
                mag[2] = 99.0  # a sentinel
                err[3] = 0.0
            t.append(tt), m.append(mag), e.append(err)
        cols[f"ztf_hmjd_{band}"] = pa.array(t, pa.list_(pa.float64()))
        cols[f"ztf_mag_{band}"] = pa.array(m, pa.list_(pa.float32()))
        cols[f"ztf_magerr_{band}"] = pa.array(e, pa.list_(pa.float32()))
    pq.write_table(pa.table(cols), path, row_group_size=4)
    return path


def main() -> None:
    from astromodal_spectra import SpectrumTokenizer

    edge_file(HERE / "edge.parquet")
    expected: dict[str, np.ndarray] = {}
    meta = {"commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                     text=True, cwd=HERE).stdout.strip(), "fingerprints": {}}
    for name, (src, settings) in CASES.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # fewer distinct vectors than codes
            tok = SpectrumTokenizer(progress=False, **settings).train([DATA / src])
        tok.save(HERE / f"tok_{name}.npz")
        meta["fingerprints"][name] = tok.fingerprint
        for key, value in tok.encode(DATA / src).items():
            if isinstance(value, np.ndarray):
                expected[f"{name}__{key}"] = value
    np.savez_compressed(HERE / "expected.npz", **expected)
    (HERE / "expected.json").write_text(json.dumps(meta, indent=1) + "\n")


if __name__ == "__main__":
    main()
