"""Gaia XP: gaiaxpy's design matrices (basis functions sampled on the default grid)."""

from __future__ import annotations

import functools

import numpy as np

from .groups import XP_N_SAMPLES

#: gaiaxpy.convert's default sampling: 600 pseudo-wavelengths from 0 to 60.
PSEUDO_WAVELENGTH = np.linspace(0.0, 60.0, XP_N_SAMPLES)


@functools.lru_cache(maxsize=2)
def design_matrix(band: str) -> np.ndarray:
    """(55, 600) matrix D with ``flux = coefficients @ D``, as gaiaxpy.convert samples (offline)."""
    import warnings

    with warnings.catch_warnings():  # gaiaxpy warns about pandas options on import
        warnings.simplefilter("ignore")
        from gaiaxpy.config.paths import hermite_bases_file
        from gaiaxpy.converter.converter import get_design_matrices, parse_config

    mats = get_design_matrices(PSEUDO_WAVELENGTH, parse_config(hermite_bases_file))
    return np.asarray(mats[band.lower()].get_design_matrix(), dtype=np.float64)


def coefficients_from_flux(flux: np.ndarray, design: np.ndarray) -> np.ndarray:
    """Least-squares coefficients of sampled fluxes (n, 600) on the basis ``design``."""
    return np.linalg.lstsq(design.T, np.asarray(flux, dtype=np.float64).T, rcond=None)[0].T
