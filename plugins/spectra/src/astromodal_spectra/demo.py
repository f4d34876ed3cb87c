"""Demo datacube columns of this plugin: DESI b/r/z spectra, ZTF g/r/i light curves, Gaia XP.

- DESI: the real DESI coadd wavelength grids (3600-5800, 5760-7620, 7520-9824 A, 0.8 A
  pixels); flux is the sky's SED at the object's redshift plus Gaussian noise from an ivar
  model (sky background with night-sky emission lines in the red arms, throughput falling at
  the arm edges, source shot noise, an exposure-time factor per object); a few cosmic-ray
  pixels have ``ivar = 0`` and mask bit 1. Objects without a spectrum hold empty lists.
- ZTF: nightly cadence within yearly observing seasons (g and r for 5.5 years, i for the first
  three), per-epoch limiting magnitudes, only detections kept; periodic stars follow a
  RR-Lyrae-like Fourier waveform, quasars a damped random walk shared across bands.
- Gaia XP: stars brighter than G = 17.65 get BP/RP coefficients from a least-squares fit of
  their SED by the XP basis (GaiaXPy's calibration of unit coefficient vectors, built
  offline on first use), with noise from a brightness-dependent error model.
"""

from __future__ import annotations

import contextlib
import functools
import io
from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa
from astromodal_demo.sky import (
    QSO,
    STAR,
    DemoColumns,
    Sky,
    list_column,
    photometry,
    spectroscopic_sample,
    tophat,
)

#: DESI arm -> (first wavelength, last wavelength, pixels); step 0.8 A (the coadd grids)
DESI_ARMS: dict[str, tuple[float, float, int]] = {
    "b": (3600.0, 5800.0, 2751),
    "r": (5760.0, 7620.0, 2326),
    "z": (7520.0, 9824.0, 2881),
}
#: ZTF band -> (central wavelength A, width A, median 5-sigma depth, nightly probability)
ZTF_BANDS: dict[str, tuple[float, float, float, float]] = {
    "g": (4800.0, 1300.0, 20.8, 0.08),
    "r": (6400.0, 1500.0, 20.6, 0.10),
    "i": (7900.0, 1500.0, 20.2, 0.03),
}
ZTF_START, ZTF_YEARS, ZTF_SEASON = 58194.0, 5.5, 240.0
XP_LIMIT_G = 17.65
XP_N_COEFF = 55


def desi_wavelength(arm: str) -> np.ndarray:
    """The DESI coadd wavelength grid of one arm (A)."""
    lo, hi, n = DESI_ARMS[arm]
    return np.linspace(lo, hi, n)


@functools.lru_cache(maxsize=1)
def _sky_lines() -> tuple[np.ndarray, np.ndarray]:
    """A fixed forest of night-sky emission lines (OH-like, denser and stronger to the red)."""
    rng = np.random.default_rng(5577)
    centers = np.concatenate([[5578.5, 5890.0, 6300.3, 6363.8],
                              rng.uniform(6800, 9824, 160)])
    strength = np.concatenate([[30.0, 15.0, 12.0, 5.0], rng.lognormal(np.log(6), 0.8, 160)])
    return centers, strength


def desi_noise_sigma(wave: np.ndarray) -> np.ndarray:
    """Per-pixel background noise (1e-17 erg/s/cm^2/A) for a unit exposure."""
    centers, strength = _sky_lines()
    sky = 1.0 + np.sum(strength[:, None] * np.exp(-0.5 * ((wave[None, :] - centers[:, None]) / 1.2) ** 2), axis=0)
    lo, hi = wave.min(), wave.max()
    edge = 1.0 + 2.0 * np.exp(-(wave - lo) / 60.0) + 2.0 * np.exp(-(hi - wave) / 60.0)
    blue = 1.0 + 1.5 * np.clip((4000.0 - wave) / 400.0, 0.0, None)
    return 0.35 * np.sqrt(sky) * edge * blue


def desi_columns(sky: Sky, has: np.ndarray) -> dict[str, Any]:
    """``desi_flux_<arm>``, ``desi_ivar_<arm>``, ``desi_mask_<arm>`` (empty lists without data)."""
    rng = sky.rng("desi-spectra")
    idx = np.flatnonzero(has)
    exposure = rng.lognormal(0.0, 0.3, len(idx))
    out: dict[str, Any] = {}
    for arm in DESI_ARMS:
        wave = desi_wavelength(arm)
        base = desi_noise_sigma(wave)
        flux_rows: list[np.ndarray] = [np.empty(0)] * len(sky)
        ivar_rows: list[np.ndarray] = [np.empty(0)] * len(sky)
        mask_rows: list[np.ndarray] = [np.empty(0)] * len(sky)
        for s in range(0, len(idx), 128):
            part = idx[s : s + 128]
            model = sky.sed(wave, part)
            var = base[None, :] ** 2 / exposure[s : s + 128, None] + np.clip(model, 0, None) / 40.0
            flux = model + rng.normal(size=model.shape) * np.sqrt(var)
            ivar = 1.0 / var
            mask = np.zeros(model.shape, dtype=np.int32)
            hits = rng.uniform(size=model.shape) < 5e-4  # cosmic rays
            mask[hits] = 1
            ivar[hits] = 0.0
            flux[hits] += rng.uniform(5, 50, hits.sum())
            for j, i in enumerate(part):
                flux_rows[i], ivar_rows[i], mask_rows[i] = flux[j], ivar[j], mask[j]
        out[f"desi_flux_{arm}"] = list_column(flux_rows, pa.float32())
        out[f"desi_ivar_{arm}"] = list_column(ivar_rows, pa.float32())
        out[f"desi_mask_{arm}"] = list_column(mask_rows, pa.int32())
    return out


def ztf_times(rng: np.random.Generator, probability: float, years: float) -> np.ndarray:
    """Observation epochs (MJD): nights inside yearly seasons, a random time in each night."""
    nights = np.arange(int(years * 365.25))
    in_season = (nights % 365.25) < ZTF_SEASON
    chosen = nights[in_season & (rng.uniform(size=len(nights)) < probability)]
    return ZTF_START + chosen + rng.uniform(0.15, 0.45, len(chosen))


def _periodic(t: np.ndarray, period: float, phase: float, amplitude: float) -> np.ndarray:
    ph = 2 * np.pi * ((t / period + phase) % 1.0)
    wave = np.sin(ph) + 0.45 * np.sin(2 * ph + 0.6) + 0.25 * np.sin(3 * ph + 1.1)
    return -0.5 * amplitude * wave / 1.3


def _drw(t: np.ndarray, tau: float, sigma: float, rng: np.random.Generator) -> np.ndarray:
    x = np.empty(len(t))
    if not len(t):
        return x
    x[0] = rng.normal() * sigma
    decay = np.exp(-np.diff(t) / tau)
    kicks = rng.normal(size=len(t) - 1) * sigma * np.sqrt(1 - decay**2)
    for k in range(1, len(t)):
        x[k] = x[k - 1] * decay[k - 1] + kicks[k - 1]
    return x


def ztf_columns(sky: Sky) -> dict[str, Any]:
    """``ztf_mag_<band>``, ``ztf_magerr_<band>``, ``ztf_hmjd_<band>`` (detections only)."""
    rng = sky.rng("ztf-light-curves")
    curves = {b: tophat(c, w) for b, (c, w, _, _) in ZTF_BANDS.items()}
    true = photometry(sky, curves)
    bands = list(ZTF_BANDS)
    rows: dict[str, list[np.ndarray]] = {f"ztf_{w}_{b}": [] for b in bands for w in ("mag", "magerr", "hmjd")}
    covered = true["r"] < ZTF_BANDS["r"][2] + 0.3
    band_amp = {"g": 1.2, "r": 1.0, "i": 0.85}
    for i in range(len(sky)):
        if not covered[i]:
            for k in rows:
                rows[k].append(np.empty(0))
            continue
        times = {b: ztf_times(rng, ZTF_BANDS[b][3], 3.0 if b == "i" else ZTF_YEARS) for b in bands}
        var: dict[str, np.ndarray] = {b: np.zeros(len(times[b])) for b in bands}
        if sky.kind[i] == STAR and np.isfinite(sky.period[i]):
            for b in bands:
                var[b] = _periodic(times[b], sky.period[i], sky.phase[i], sky.amplitude[i] * band_amp[b])
        elif sky.kind[i] == QSO:
            allt = np.concatenate([times[b] for b in bands])
            order = np.argsort(allt)
            walk = np.empty(len(allt))
            walk[order] = _drw(allt[order], sky.drw_tau[i], sky.drw_sigma[i], rng)
            start = 0
            for b in bands:
                var[b] = walk[start : start + len(times[b])] * band_amp[b]
                start += len(times[b])
        for b in bands:
            depth = ZTF_BANDS[b][2] + rng.normal(0, 0.35, len(times[b]))
            m = true[b][i] + var[b]
            err = np.hypot(0.015, 0.2 * 10.0 ** (0.4 * (m - depth)))
            obs = m + rng.normal(size=len(m)) * err
            keep = obs < depth
            rows[f"ztf_mag_{b}"].append(obs[keep])
            rows[f"ztf_magerr_{b}"].append(err[keep])
            rows[f"ztf_hmjd_{b}"].append(times[b][keep])
    return {k: list_column(v, pa.float64()) for k, v in rows.items()}


@functools.lru_cache(maxsize=1)
def xp_design_matrix() -> tuple[np.ndarray, np.ndarray]:
    """``(wave_A, D)``: D (110, 343) maps 55 BP then 55 RP coefficients to calibrated flux
    in W/m^2/nm on GaiaXPy's 336-1020 nm grid (computed offline with ``gaiaxpy.calibrate``)."""
    import pandas as pd

    try:  # the internal entry point takes disable_info (no progress bar)
        from gaiaxpy.calibrator.calibrator import _calibrate as calibrate

        quiet = {"disable_info": True}
    except ImportError:  # pragma: no cover - depends on the GaiaXPy version
        from gaiaxpy import calibrate

        quiet = {}

    n = XP_N_COEFF
    rows = []
    for band in ("bp", "rp"):
        for k in range(n):
            unit = np.zeros(n)
            unit[k] = 1.0
            rows.append({
                "source_id": len(rows) + 1,
                "bp_basis_function_id": 56, "rp_basis_function_id": 57,
                "bp_n_parameters": n, "rp_n_parameters": n,
                "bp_standard_deviation": 1.0, "rp_standard_deviation": 1.0,
                "bp_coefficients": unit if band == "bp" else np.zeros(n),
                "rp_coefficients": unit if band == "rp" else np.zeros(n),
                "bp_coefficient_errors": np.ones(n), "rp_coefficient_errors": np.ones(n),
                "bp_coefficient_correlations": np.zeros(n * (n - 1) // 2),
                "rp_coefficient_correlations": np.zeros(n * (n - 1) // 2),
                "bp_n_relevant_bases": n, "rp_n_relevant_bases": n,
            })
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        out, sampling = calibrate(pd.DataFrame(rows), save_file=False, truncation=False, **quiet)
    return np.asarray(sampling, dtype=np.float64) * 10.0, np.stack(out["flux"].to_numpy())


def xp_coefficients(flam: np.ndarray, wave: np.ndarray, design: np.ndarray) -> np.ndarray:
    """Least-squares XP coefficients (n, 110) of f_lambda (1e-17 units) sampled on ``wave``.

    A ridge penalty growing with the basis order keeps the solution smooth, as real XP
    coefficients are (they decay with order).
    """
    target = flam * 1e-19  # 1e-17 erg/s/cm^2/A -> W/m^2/nm
    scale = np.abs(design).max()
    a = design / scale
    order = np.tile(np.arange(XP_N_COEFF), 2)
    penalty = 1e-4 * (1.0 + order / 10.0) ** 2
    gram = a @ a.T + np.diag(penalty)
    return np.linalg.solve(gram, a @ (target / scale).T).T


def gaia_xp_columns(sky: Sky, g_mag: np.ndarray) -> dict[str, Any]:
    """``{bp,rp}_coefficients`` (+ errors, standard deviation, relevant bases, basis id)."""
    rng = sky.rng("gaia-xp")
    has = (sky.kind == STAR) & (g_mag < XP_LIMIT_G)
    idx = np.flatnonzero(has)
    out: dict[str, Any] = {}
    coeffs = np.zeros((0, 2 * XP_N_COEFF))
    if idx.size:
        wave, design = xp_design_matrix()
        coeffs = xp_coefficients(sky.sed(wave, idx), wave, design)
    n = len(sky)
    for b, band in enumerate(("bp", "rp")):
        c = coeffs[:, b * XP_N_COEFF : (b + 1) * XP_N_COEFF]
        err = (6e-4 * np.abs(c[:, :1]) + 0.5) * (1.0 + np.arange(XP_N_COEFF) / 40.0)
        noisy = c + rng.normal(size=c.shape) * err
        coef_rows: list[np.ndarray | None] = [None] * n
        err_rows: list[np.ndarray | None] = [None] * n
        std = np.full(n, np.nan)
        relevant = np.zeros(n, dtype=np.int64)
        for j, i in enumerate(idx):
            coef_rows[i], err_rows[i] = noisy[j], err[j]
            std[i] = rng.normal(1.05, 0.05)
            relevant[i] = int(np.clip(np.sum(np.abs(noisy[j]) > 2 * err[j]), 5, XP_N_COEFF))
        out[f"{band}_coefficients"] = list_column(coef_rows, pa.float64())
        out[f"{band}_coefficient_errors"] = list_column(err_rows, pa.float64())
        out[f"{band}_standard_deviation"] = pa.array(np.where(has, std, np.nan), from_pandas=True)
        out[f"{band}_n_relevant_bases"] = pa.array(relevant, mask=~has)
        out[f"{band}_basis_function_id"] = pa.array(
            np.full(n, 56 if band == "bp" else 57, dtype=np.int64), mask=~has
        )
    return out


def make_columns(sky: Sky, options: Mapping[str, Any]) -> dict[str, Any]:
    """Every column of this plugin for the sky (``options["gaia_xp"] = False`` skips XP)."""
    out = desi_columns(sky, spectroscopic_sample(sky))
    out.update(ztf_columns(sky))
    if options.get("gaia_xp", True):
        g = photometry(sky, {"G": tophat(6900.0, 7200.0)})["G"]
        out.update(gaia_xp_columns(sky, g))
    return out


DEMO_COLUMNS = DemoColumns(
    "spectra", make_columns,
    "DESI b/r/z spectra (flux, ivar, mask), ZTF g/r/i light curves, Gaia XP BP/RP coefficients",
)
