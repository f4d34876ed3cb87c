"""Demo datacube columns of this plugin: 12-band S-PLUS-like cutouts ``splus_cut_<band>``.

Each cutout is ``cutout_size`` x ``cutout_size`` pixels of 0.55 arcsec (the S-PLUS pixel
scale), row-major, on a zeropoint-25 flux scale (a source of AB magnitude m has total flux
``10**(-0.4 (m - 25))``). Stars and quasars are Gaussian PSFs (FWHM 1.2-1.6 arcsec, worse in
the blue); galaxies are Sersic profiles (the sky's half-light radius, index, axis ratio and
angle) convolved with the PSF. The total flux in a cutout equals the object's true
magnitude through the band (the same top-hat filter model as the photometry), so image
fluxes agree with the catalogue magnitudes. Noise: background per pixel set by each band's
5-sigma depth in a 1.5 arcsec radius aperture, plus source shot noise. About 3 % of the
objects (near the survey edge) have no cutouts: empty lists.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa
from astromodal_demo.sky import DemoColumns, Sky, photometry, tophat

PIXEL_SCALE = 0.55
#: image band -> (central wavelength A, width A, 5-sigma depth, PSF FWHM arcsec)
BANDS: dict[str, tuple[float, float, float, float]] = {
    "U": (3536.0, 352.0, 21.0, 1.6),
    "F378": (3770.0, 151.0, 20.7, 1.55),
    "F395": (3940.0, 103.0, 20.5, 1.55),
    "F410": (4094.0, 201.0, 20.8, 1.5),
    "F430": (4292.0, 201.0, 20.9, 1.5),
    "G": (4751.0, 1545.0, 21.7, 1.45),
    "F515": (5133.0, 207.0, 20.9, 1.4),
    "R": (6258.0, 1465.0, 21.5, 1.3),
    "F660": (6614.0, 147.0, 21.0, 1.3),
    "I": (7690.0, 1505.0, 21.1, 1.25),
    "F861": (8611.0, 410.0, 20.3, 1.2),
    "Z": (8831.0, 1453.0, 20.6, 1.2),
}
OVERSAMPLE = 3
APERTURE_RADIUS = 1.5  # arcsec


def sersic_b(n: np.ndarray) -> np.ndarray:
    """The Sersic b_n constant (Ciotti & Bertin 1999 expansion)."""
    return 2.0 * n - 1.0 / 3.0 + 4.0 / (405.0 * n) + 46.0 / (25515.0 * n**2)


def galaxy_profiles(sky: Sky, idx: np.ndarray, size: int, offsets: np.ndarray) -> np.ndarray:
    """Unit-sum Sersic images (len(idx), size, size), integrated over pixels by oversampling."""
    s = OVERSAMPLE
    grid = (np.arange(size * s) + 0.5) / s - size / 2.0  # pixel units, centre at 0
    yy, xx = np.meshgrid(grid, grid, indexing="ij")
    out = np.empty((len(idx), size, size))
    for j, i in enumerate(idx):
        dx, dy = offsets[j]
        theta = np.deg2rad(sky.position_angle[i])
        x, y = xx - dx, yy - dy
        xr = x * np.cos(theta) + y * np.sin(theta)
        yr = -x * np.sin(theta) + y * np.cos(theta)
        r = np.hypot(xr, yr / sky.axis_ratio[i])
        re = sky.half_light[i] / PIXEL_SCALE
        n = sky.sersic_n[i]
        img = np.exp(-sersic_b(n) * ((r / re) ** (1.0 / n) - 1.0))
        img = img.reshape(size, s, size, s).mean(axis=(1, 3))
        out[j] = img / img.sum()
    return out


def psf_kernel(fwhm: float, size: int) -> np.ndarray:
    """A unit-sum centred Gaussian PSF of ``fwhm`` arcsec on a (size, size) pixel grid."""
    sigma = fwhm / 2.3548 / PIXEL_SCALE
    c = np.arange(size) - size // 2
    g = np.exp(-0.5 * (c / sigma) ** 2)
    k = np.outer(g, g)
    return k / k.sum()


def point_sources(offsets: np.ndarray, fwhm: float, size: int) -> np.ndarray:
    """Unit-sum pixel-integrated Gaussian PSFs at sub-pixel ``offsets`` (n, 2) = (dx, dy)."""
    from scipy.special import erf

    sigma = fwhm / 2.3548 / PIXEL_SCALE
    edges = np.arange(size + 1) - size / 2.0

    def axis(d: np.ndarray) -> np.ndarray:
        cdf = 0.5 * (1 + erf((edges[None, :] - d[:, None]) / (np.sqrt(2) * sigma)))
        return np.diff(cdf, axis=1)

    img = axis(offsets[:, 1])[:, :, None] * axis(offsets[:, 0])[:, None, :]
    return img / img.sum(axis=(1, 2), keepdims=True)


def convolve(images: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Linear (zero-padded) FFT convolution of (n, S, S) images with a centred kernel."""
    _, size, _ = images.shape
    pad = 2 * size
    fk = np.fft.rfft2(_pad_kernel(kernel, pad))
    fi = np.fft.rfft2(images, s=(pad, pad))
    out = np.fft.irfft2(fi * fk, s=(pad, pad))[:, :size, :size]
    return out


def _pad_kernel(kernel: np.ndarray, pad: int) -> np.ndarray:
    size = kernel.shape[0]
    big = np.zeros((pad, pad))
    big[:size, :size] = kernel
    return np.roll(big, (-(size // 2), -(size // 2)), axis=(0, 1))


def make_columns(sky: Sky, options: Mapping[str, Any]) -> dict[str, Any]:
    """``splus_cut_<band>`` for the 12 bands (``options["cutout_size"]``, default 32)."""
    size = int(options.get("cutout_size", 32))
    bands = list(options.get("image_bands", BANDS))
    rng = sky.rng("splus-cutouts")
    n = len(sky)
    has = rng.uniform(size=n) > 0.03
    offsets = rng.uniform(-0.5, 0.5, (n, 2))
    true = photometry(sky, {b: tophat(BANDS[b][0], BANDS[b][1]) for b in bands})
    gal = np.flatnonzero(has & ~sky.is_point_source)
    pts = np.flatnonzero(has & sky.is_point_source)
    shapes = galaxy_profiles(sky, gal, size, offsets[gal]) if gal.size else np.zeros((0, size, size))
    area = np.pi * (APERTURE_RADIUS / PIXEL_SCALE) ** 2
    out: dict[str, Any] = {}
    offsets_arr = pa.array(np.where(has, size * size, 0).cumsum().astype(np.int32))
    offsets_arr = pa.concat_arrays([pa.array([0], pa.int32()), offsets_arr])
    for b in bands:
        _, _, depth, fwhm = BANDS[b]
        img = np.zeros((n, size, size))
        if gal.size:
            img[gal] = convolve(shapes, psf_kernel(fwhm, size))
            img[gal] /= img[gal].sum(axis=(1, 2), keepdims=True)
        if pts.size:
            img[pts] = point_sources(offsets[pts], fwhm, size)
        flux = 10.0 ** (-0.4 * (true[b] - 25.0))
        model = img * np.nan_to_num(flux, nan=0.0)[:, None, None]
        bg = 10.0 ** (-0.4 * (depth - 25.0)) / (5.0 * np.sqrt(area))
        noise = np.sqrt(bg**2 + np.clip(model, 0, None) * bg / 25.0)
        data = (model + rng.normal(size=model.shape) * noise)[has].astype(np.float32)
        out[f"splus_cut_{b}"] = pa.ListArray.from_arrays(offsets_arr, pa.array(data.ravel()))
    return out


DEMO_COLUMNS = DemoColumns(
    "image", make_columns,
    "12-band cutouts splus_cut_<band>: PSF point sources, Sersic galaxies, sky noise",
)
