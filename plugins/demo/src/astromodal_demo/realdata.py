"""The real survey samples shipped in ``data/`` and how they are mixed into the demo sky."""

from __future__ import annotations

from importlib import resources
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .sky import (
    GALAXY,
    REFERENCE_WINDOW,
    STAR,
    Sky,
    ab_magnitude,
    spectroscopic_sample,
)

ARMS = ("b", "r", "z")


def _data(name: str) -> Any:
    return resources.files("astromodal_demo") / "data" / name


def real_desi() -> dict[str, np.ndarray]:
    """The two real DESI coadds: ``targetid``, ``z``, ``{wavelength,flux,ivar,mask}_<arm>``."""
    with resources.as_file(_data("real_desi.npz")) as path, np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def real_gaia_xp() -> pa.Table:
    """The three real Gaia DR3 XP sources (one without BP)."""
    with resources.as_file(_data("real_gaia_xp.parquet")) as path:
        return pq.read_table(path)


def reference_magnitude(wave: np.ndarray, flux: np.ndarray, ivar: np.ndarray) -> float:
    """AB magnitude of a real spectrum through the sky's reference top-hat window."""
    ok = ivar > 0
    w, f = wave[ok], flux[ok]
    resp = ((w >= REFERENCE_WINDOW[0]) & (w <= REFERENCE_WINDOW[1])).astype(float)
    return float(ab_magnitude(w, f, w, resp))


def pin_real_objects(sky: Sky) -> tuple[Sky, dict[str, list[tuple[int, int]]]]:
    """Give two spectroscopic galaxies the real DESI redshifts and brightness, and three stars
    the brightness of the real Gaia XP sources (the first of each class in the list, so they
    land in the first datacube file).

    Returns the new sky and ``{"desi": [(row, sample)], "gaia_xp": [(row, sample)]}``: which
    rows take which real sample once the columns exist (:func:`apply_real_samples`).
    """
    desi = real_desi()
    has_spec = spectroscopic_sample(sky)
    galaxies = np.flatnonzero((sky.kind == GALAXY) & has_spec)
    pins: dict[str, list[tuple[int, int]]] = {"desi": [], "gaia_xp": []}
    for s, row in enumerate(galaxies[: len(desi["z"])]):
        mag = reference_magnitude(desi["wavelength_r"], desi["flux_r"][s], desi["ivar_r"][s])
        sky = sky.replace(int(row), redshift=float(desi["z"][s]), mag_ref=mag)
        pins["desi"].append((int(row), s))
    # the real XP sources are bright stars: the first stars of the list, made bright (G ~ 15)
    stars = np.flatnonzero(sky.kind == STAR)
    for s, row in enumerate(stars[: real_gaia_xp().num_rows]):
        sky = sky.replace(int(row), mag_ref=15.0 + 0.5 * s)
        pins["gaia_xp"].append((int(row), s))
    return sky, pins


def _replace(col: pa.Array, rows: dict[int, Any]) -> pa.Array:
    """``col`` with the values at ``rows`` replaced (values of the column's type or None)."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    pieces, start = [], 0
    for r in sorted(rows):
        pieces.append(col.slice(start, r - start))
        pieces.append(pa.array([rows[r]], type=col.type))
        start = r + 1
    pieces.append(col.slice(start))
    return pa.concat_arrays(pieces)


def apply_real_samples(columns: dict[str, Any], pins: dict[str, list[tuple[int, int]]],
                       ids: np.ndarray) -> list[str]:
    """Overwrite the pinned rows with the real samples, where those columns exist.

    Returns ``real_source`` labels per row (``""`` for synthetic rows).
    """
    labels = [""] * len(ids)
    desi = real_desi()
    if "desi_flux_b" in columns:
        for row, s in pins["desi"]:
            labels[row] = f"desi:{int(desi['targetid'][s])}"
        for arm in ARMS:
            for what, t in (("flux", np.float32), ("ivar", np.float32), ("mask", np.int32)):
                name = f"desi_{what}_{arm}"
                if name in columns:
                    columns[name] = _replace(
                        _as_arrow(columns[name]),
                        {row: desi[f"{what}_{arm}"][s].astype(t) for row, s in pins["desi"]})
        if "z" in columns:
            z = np.array(columns["z"], dtype=np.float64, copy=True)
            for row, s in pins["desi"]:
                z[row] = float(desi["z"][s])
            columns["z"] = z
    if "bp_coefficients" in columns:
        xp = real_gaia_xp()
        for row, s in pins["gaia_xp"]:
            labels[row] = f"gaia_xp:{int(xp['source_id'][s].as_py())}"
        for name in xp.column_names:
            if name == "source_id" or name not in columns:
                continue
            col = _as_arrow(columns[name])
            real = xp.column(name).cast(col.type)
            columns[name] = _replace(col, {row: real[s].as_py() for row, s in pins["gaia_xp"]})
    return labels


def _as_arrow(values: Any) -> pa.Array:
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        return values
    return pa.array(values)
