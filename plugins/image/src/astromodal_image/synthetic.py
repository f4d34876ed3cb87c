"""Synthetic multi-band cutouts (a galaxy on a noisy sky) for tests and benchmarks."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def sky_sigma(n_bands: int) -> np.ndarray:
    """The per-band sky noise used by :func:`synthetic_cutouts` (float32, rising with band index)."""
    return (0.5 + 0.1 * np.arange(n_bands)).astype(np.float32)


def synthetic_cutouts(
    n: int, n_bands: int, size: int, *, seed: int = 0, noise: bool = True
) -> np.ndarray:
    """float32 (n, n_bands, size, size): an elliptical exponential galaxy with a power-law
    colour per row, centred within 2 pixels, on a sky of level 0.1 and noise :func:`sky_sigma`."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) - (size - 1) / 2
    cx, cy = rng.uniform(-2, 2, (2, n, 1, 1)).astype(np.float32)
    r_e = rng.uniform(1.0, size / 6, (n, 1, 1)).astype(np.float32)
    q = rng.uniform(0.4, 1.0, (n, 1, 1)).astype(np.float32)
    th = rng.uniform(0, np.pi, (n, 1, 1)).astype(np.float32)
    dx, dy = xx[None] - cx, yy[None] - cy
    u = dx * np.cos(th) + dy * np.sin(th)
    v = (-dx * np.sin(th) + dy * np.cos(th)) / q
    profile = np.exp(-np.sqrt(u * u + v * v) / r_e)  # (n, H, W)
    amp = 10.0 ** rng.uniform(0.3, 2.0, n).astype(np.float32)
    slope = rng.uniform(-1.5, 1.5, n).astype(np.float32)
    lam = np.linspace(-1, 1, n_bands, dtype=np.float32)
    sed = amp[:, None] * np.exp(slope[:, None] * lam[None, :])  # (n, bands)
    flux = sed[:, :, None, None] * profile[:, None] + np.float32(0.1)
    if noise:
        flux = flux + rng.standard_normal(flux.shape, dtype=np.float32) * sky_sigma(n_bands)[None, :, None, None]
    return flux.astype(np.float32)


def bands_subset(bands: Sequence[str], n: int) -> list[str]:
    """The first ``n`` of ``bands`` (small test configurations)."""
    return list(bands)[:n]
