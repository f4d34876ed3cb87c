"""Synthetic datacubes (DESI b/r/z, ZTF g/r, Gaia XP) and the real-sample paths, for the tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

DATA = Path(__file__).parent / "data"
ARMS = {"b": 2751, "r": 2326, "z": 2881}


def real_xp() -> pa.Table:
    return pq.read_table(DATA / "gaia_xp_real.parquet")


def make_datacube(path: Path, n: int = 6, seed: int = 0, ztf: bool = True, xp: bool = True, id0: int = 1000,
                  arms: dict[str, int] | None = None) -> Path:
    """Write a datacube with DESI-like spectra, ZTF light curves and Gaia XP columns."""
    rng = np.random.default_rng(seed)
    cols: dict[str, pa.Array] = {"id": pa.array(np.arange(id0, id0 + n), pa.int64())}
    for arm, npix in (arms or ARMS).items():
        x = np.linspace(0, 1, npix)
        fl, iv, mk = [], [], []
        for i in range(n):
            if i == n - 1:  # the last object has no spectrum
                fl.append([]), iv.append([]), mk.append([])
                continue
            amp = 10 ** rng.uniform(-0.5, 1.5)
            cont = amp * (1 + 0.5 * x + 0.3 * np.sin(8 * x + i))
            line = 3 * amp * np.exp(-0.5 * ((x - rng.uniform(0.2, 0.8)) / 0.003) ** 2)
            sig = 0.1 * amp * (1 + x)
            f = cont + line + rng.normal(0, 1, npix) * sig
            ivar = 1.0 / sig**2
            m = np.zeros(npix, np.int32)
            m[:5] = 1  # a masked edge
            fl.append(f.astype(np.float32)), iv.append(ivar.astype(np.float32)), mk.append(m)
        cols[f"desi_flux_{arm}"] = pa.array(fl, pa.list_(pa.float32()))
        cols[f"desi_ivar_{arm}"] = pa.array(iv, pa.list_(pa.float32()))
        cols[f"desi_mask_{arm}"] = pa.array(mk, pa.list_(pa.int32()))
    if ztf:
        for band in ("g", "r"):
            t, m, e = [], [], []
            for i in range(n):
                k = 0 if i == 0 else int(rng.integers(1, 40))
                tt = np.sort(58000 + rng.uniform(0, 1000, k))
                base = rng.uniform(15, 20)
                t.append(tt), m.append(base + 0.3 * np.sin(tt / 7.0)), e.append(rng.uniform(0.01, 0.1, k))
            cols[f"ztf_hmjd_{band}"] = pa.array(t, pa.list_(pa.float64()))
            cols[f"ztf_mag_{band}"] = pa.array(m, pa.list_(pa.float32()))
            cols[f"ztf_magerr_{band}"] = pa.array(e, pa.list_(pa.float32()))
    if xp:
        real = real_xp()
        for band in ("bp", "rp"):
            src = [np.array(c) for c in real.column(f"{band}_coefficients").to_pylist() if c]
            err = [np.array(c) for c in real.column(f"{band}_coefficient_errors").to_pylist() if c]
            co, er, sd, nb, bf = [], [], [], [], []
            for i in range(n):
                if band == "bp" and i == 1:  # no BP for this source
                    co.append(None), er.append(None), sd.append(None), nb.append(None), bf.append(None)
                    continue
                j = i % len(src)
                scale = 10 ** rng.uniform(-1, 1)
                co.append(scale * (src[j] + rng.normal(0, 1, 55) * err[j]))
                er.append(scale * err[j]), sd.append(1.0), nb.append(55), bf.append(56 if band == "bp" else 57)
            cols[f"{band}_coefficients"] = pa.array(co, pa.list_(pa.float64()))
            cols[f"{band}_coefficient_errors"] = pa.array(er, pa.list_(pa.float64()))
            cols[f"{band}_standard_deviation"] = pa.array(sd, pa.float64())
            cols[f"{band}_n_relevant_bases"] = pa.array(nb, pa.int64())
            cols[f"{band}_basis_function_id"] = pa.array(bf, pa.int64())
    pq.write_table(pa.table(cols), path)
    return path


SMALL_ARMS = {"b": 120, "r": 100}
