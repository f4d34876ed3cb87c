"""Demo datacube columns of this plugin: S-PLUS 12-band photometry, Gaia astrometry, spec-z.

The S-PLUS filter curves are not shipped, so each filter is modelled as a top-hat with
smooth edges at the survey's published central wavelength and width (Mendes de Oliveira et
al. 2019, Table 1). Magnitudes come from the sky's SED through those curves; errors from a
per-band depth (the 5-sigma limiting magnitude) plus a 0.01 mag calibration floor; a source
measured below 3 sigma gets the survey's ``99`` sentinel in both magnitude and error.
Gaia errors follow the DR3 parallax error law (Lindegren et al. 2021); sources fainter than
G = 20.7 and resolved galaxies have no Gaia entry (null).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from astromodal_demo.sky import DemoColumns, Sky, photometry, spectroscopic_sample, tophat

#: band -> (central wavelength A, width A, 5-sigma limiting AB magnitude)
SPLUS_FILTERS: dict[str, tuple[float, float, float]] = {
    "u": (3536.0, 352.0, 21.0),
    "j0378": (3770.0, 151.0, 20.7),
    "j0395": (3940.0, 103.0, 20.5),
    "j0410": (4094.0, 201.0, 20.8),
    "j0430": (4292.0, 201.0, 20.9),
    "g": (4751.0, 1545.0, 21.7),
    "j0515": (5133.0, 207.0, 20.9),
    "r": (6258.0, 1465.0, 21.5),
    "j0660": (6614.0, 147.0, 21.0),
    "i": (7690.0, 1505.0, 21.1),
    "j0861": (8611.0, 410.0, 20.3),
    "z": (8831.0, 1453.0, 20.6),
}
SENTINEL = 99.0
DETECTION_SNR = 3.0
CALIBRATION_FLOOR = 0.01
GAIA_G = (3300.0, 10500.0)  # a broad top-hat standing in for the Gaia G passband
GAIA_LIMIT = 20.7


def filter_curves() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The modelled S-PLUS responses ``{band: (wave, response)}``."""
    return {b: tophat(c, w) for b, (c, w, _) in SPLUS_FILTERS.items()}


def observe_magnitudes(
    true_mag: np.ndarray, depth: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Noisy magnitudes and errors for a band of 5-sigma depth ``depth``; 99 below 3 sigma."""
    flux = 10.0 ** (-0.4 * (true_mag - 25.0))
    sky_sigma = 10.0 ** (-0.4 * (depth - 25.0)) / 5.0
    sigma = np.sqrt(sky_sigma**2 + flux * sky_sigma / 25.0)  # background + source shot noise
    measured = flux + rng.normal(size=flux.shape) * sigma
    detected = measured > DETECTION_SNR * sigma
    safe = np.where(detected, measured, 1.0)
    mag = np.where(detected, 25.0 - 2.5 * np.log10(safe), SENTINEL)
    err = np.where(detected, np.hypot(1.0857 * sigma / safe, CALIBRATION_FLOOR), SENTINEL)
    return mag, err


def gaia_parallax_error(g_mag: np.ndarray) -> np.ndarray:
    """Gaia DR3 parallax uncertainty (mas) as a function of G."""
    z = 10.0 ** (0.4 * (np.maximum(g_mag, 13.0) - 15.0))
    return np.sqrt(40.0 + 800.0 * z + 30.0 * z**2) * 1e-3


def make_columns(sky: Sky, options: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """``mag_pstotal_<band>``, ``err_mag_pstotal_<band>``, ``gaia_*`` (+ ``_error``) and ``z``."""
    rng = sky.rng("splus-photometry")
    curves = filter_curves()
    curves["gaia_g"] = tophat((GAIA_G[0] + GAIA_G[1]) / 2, GAIA_G[1] - GAIA_G[0])
    true = photometry(sky, curves)
    out: dict[str, np.ndarray] = {}
    for band, (_, _, depth) in SPLUS_FILTERS.items():
        mag, err = observe_magnitudes(true[band], depth, rng)
        out[f"mag_pstotal_{band}"] = mag.astype(np.float32)
        out[f"err_mag_pstotal_{band}"] = err.astype(np.float32)

    grng = sky.rng("gaia-astrometry")
    g = true["gaia_g"]
    in_gaia = (g < GAIA_LIMIT) & sky.is_point_source
    sig = gaia_parallax_error(g)
    for name, truth, scale in (("parallax", sky.parallax, 1.0), ("pmra", sky.pmra, 1.1),
                               ("pmdec", sky.pmdec, 1.1)):
        err = sig * scale
        value = truth + grng.normal(size=len(sky)) * err
        out[f"gaia_{name}"] = np.where(in_gaia, value, np.nan)
        out[f"gaia_{name}_error"] = np.where(in_gaia, err, np.nan)

    # catalogue spectroscopic redshift (the objects the spectroscopic survey observed)
    has_z = spectroscopic_sample(sky)
    zrng = sky.rng("spectroscopic-redshift")
    z = sky.redshift + zrng.normal(size=len(sky)) * 3e-5 * (1 + sky.redshift)
    out["z"] = np.where(has_z, z, np.nan)
    return out


DEMO_COLUMNS = DemoColumns(
    "splus", make_columns,
    "S-PLUS 12-band magnitudes/errors (99 = not detected), Gaia parallax/pm, spectroscopic z",
)
