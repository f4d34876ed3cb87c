"""Synthetic S-PLUS-like catalogues for tests and benchmarks (no download).

Magnitudes follow number counts rising as 10**(0.3 m) between 13.5 and 21.8 in r (inside the default row filter), with
band colours of a G-type star, errors growing as 10**(0.4 m) (0.003 mag floor), 99 / NaN
for unmeasured values; Gaia astrometry with heavy tails (Student t) for r < 20.5; a
spectroscopic redshift for 30% of the rows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .columns import BANDS

#: mean colour (band - r) per band, roughly a G star
COLOURS: dict[str, float] = dict(
    zip(BANDS, (1.6, 1.3, 1.2, 0.9, 0.8, 0.45, 0.3, 0.0, -0.05, -0.15, -0.25, -0.3))
)


def catalogue(n: int, seed: int = 0, id_start: int = 0, sentinel_frac: float = 0.02) -> dict[str, np.ndarray]:
    """Columns (default S-PLUS / Gaia / redshift names) of ``n`` synthetic objects."""
    rng = np.random.default_rng(seed)
    lo, hi = 10 ** (0.3 * 13.5), 10 ** (0.3 * 21.8)
    r_true = np.log10(lo + rng.random(n) * (hi - lo)) / 0.3
    cols: dict[str, np.ndarray] = {"id": np.arange(id_start, id_start + n, dtype=np.int64)}
    for b in BANDS:
        true = r_true + COLOURS[b] + rng.normal(0, 0.25, n)
        err = 0.003 + 0.02 * 10 ** (0.4 * (true - 20.0))
        mag = true + rng.normal(0, 1, n) * err
        bad = rng.random(n) < sentinel_frac
        mag[bad], err[bad] = 99.0, 99.0
        nan = rng.random(n) < 0.005
        mag[nan], err[nan] = np.nan, np.nan
        cols[f"mag_pstotal_{b}"] = mag.astype(np.float32)
        cols[f"err_mag_pstotal_{b}"] = err.astype(np.float32)
    has_gaia = r_true < 20.5
    plx = 0.4 + rng.standard_t(2, n) * 0.8  # heavy tails, negative parallaxes
    pmra = rng.standard_t(1.5, n) * 6.0  # hundreds of mas/yr in the tails
    pmdec = rng.standard_t(1.5, n) * 5.0 - 3.0
    for name, v in (("parallax", plx), ("pmra", pmra), ("pmdec", pmdec)):
        cols[f"gaia_{name}"] = np.where(has_gaia, v, np.nan)
        cols[f"gaia_{name}_error"] = np.where(has_gaia, 0.05 + 0.1 * rng.random(n), np.nan)
    cols["z"] = np.where(rng.random(n) < 0.3, rng.gamma(2.0, 0.15, n), np.nan)
    return cols


def write_parquet(path: str | Path, cols: dict[str, np.ndarray], row_group_size: int = 65_536) -> Path:
    """Write columns to a parquet file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table(cols), path, row_group_size=row_group_size)
    return Path(path)
