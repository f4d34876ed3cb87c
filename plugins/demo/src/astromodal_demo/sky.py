"""A deterministic synthetic sky: the shared object list every demo column generator reads.

The sky holds physics only (no survey names): object ids, a class (star, galaxy, qso), a
redshift, a rest-frame spectral energy distribution (SED) model that can be evaluated on any
wavelength grid, the apparent brightness, astrometry, morphology and variability parameters.
Plugins turn it into survey columns through the demo plugin's ``astromodal_register_demo_columns``
hook (``astromodal_demo.hookspecs``): ``register(DemoColumns("my-survey", make))`` with
``make(sky, options) -> {column: values}``.

Units: wavelengths in Angstrom, f_lambda in 1e-17 erg/s/cm^2/A, magnitudes AB, angles in
arcsec, proper motions in mas/yr, times in days.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import numpy as np

CLASSES: tuple[str, ...] = ("star", "galaxy", "qso")
STAR, GALAXY, QSO = 0, 1, 2
C_KMS = 299_792.458
C_AA_S = 2.99792458e18  # speed of light in Angstrom / s
HC_K = 1.438777e8  # h c / k in Angstrom * K
FLAM_UNIT = 1e-17  # erg/s/cm^2/A of one f_lambda unit
REFERENCE_WINDOW = (6000.0, 7000.0)  # observed-frame top-hat defining ``mag_ref``

# Rest wavelengths (Angstrom, vacuum-ish) of the lines the SED model draws.
BALMER = {"Halpha": 6564.6, "Hbeta": 4862.7, "Hgamma": 4341.7, "Hdelta": 4102.9}
METAL_ABSORPTION = {"CaK": 3934.8, "CaH": 3969.6, "Gband": 4305.0, "Mgb": 5176.7,
                    "NaD": 5895.6, "CaT1": 8500.4, "CaT2": 8544.4, "CaT3": 8664.5}
NEBULAR_EMISSION = {"OII": (3728.5, 1.0), "Hbeta": (4862.7, 0.35), "OIII4959": (4960.3, 0.25),
                    "OIII5007": (5008.2, 0.75), "Halpha": (6564.6, 1.0), "NII": (6585.3, 0.3),
                    "SII6717": (6718.3, 0.2), "SII6731": (6732.7, 0.15)}
BROAD_EMISSION = {"Lyalpha": (1215.7, 1.0), "CIV": (1549.1, 0.4), "CIII": (1908.7, 0.2),
                  "MgII": (2799.1, 0.3), "Hgamma": (4341.7, 0.08), "Hbeta": (4862.7, 0.2),
                  "Halpha": (6564.6, 0.6)}


def _seed_for(seed: int, purpose: str) -> np.random.SeedSequence:
    return np.random.SeedSequence([int(seed) & 0xFFFFFFFF, zlib.crc32(purpose.encode())])


def blackbody(wave: np.ndarray, temperature: np.ndarray) -> np.ndarray:
    """Planck f_lambda shape (arbitrary units) at ``wave`` (A) for ``temperature`` (K)."""
    x = HC_K / (wave * temperature)
    with np.errstate(over="ignore"):
        return (wave / 5000.0) ** -5 / np.expm1(np.minimum(x, 700.0))


def _below(wave: np.ndarray, edge: float, width: float) -> np.ndarray:
    """A smooth step: 1 well below ``edge``, 0 well above (a logistic of scale ``width``)."""
    return 0.5 * (1.0 - np.tanh((wave - edge) / (2.0 * width)))


def gaussian_line(wave: np.ndarray, center: Any, sigma: Any) -> np.ndarray:
    """A unit-area Gaussian line profile."""
    return np.exp(-0.5 * ((wave - center) / sigma) ** 2) / (np.sqrt(2 * np.pi) * sigma)


def ab_magnitude(
    wave: np.ndarray, flam: np.ndarray, filter_wave: np.ndarray, filter_response: np.ndarray
) -> np.ndarray:
    """Photon-counting AB magnitude of f_lambda (1e-17 units) through a response curve.

    ``flam`` is (..., len(wave)); the response is interpolated onto ``wave``. Non-positive
    flux gives NaN.
    """
    resp = np.interp(wave, filter_wave, filter_response, left=0.0, right=0.0)
    num = np.trapezoid(flam * FLAM_UNIT * resp * wave, wave, axis=-1)
    den = np.trapezoid(C_AA_S * resp / wave, wave)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(num > 0, -2.5 * np.log10(num / den) - 48.60, np.nan)


def flux_from_ab(mag: np.ndarray, zeropoint: float = 25.0) -> np.ndarray:
    """Linear flux on a zeropoint scale (``zeropoint=25``: 1 unit = 25th magnitude)."""
    return 10.0 ** (-0.4 * (np.asarray(mag, dtype=np.float64) - zeropoint))


def tophat(center: float, width: float, edge: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """A top-hat response with smooth edges: ``(wave, response)`` sampled every 2 A."""
    from math import erf

    lo, hi = center - width / 2, center + width / 2
    s = max(edge * width, 2.0)
    wave = np.arange(lo - 4 * s, hi + 4 * s, 2.0)
    resp = np.array([0.5 * (erf((w - lo) / s) - erf((w - hi) / s)) for w in wave])
    return wave, resp


@attrs.frozen
class DemoColumns:
    """One plugin's contribution to the demo datacube.

    ``make(sky, options)`` returns ``{column name: values}`` with one entry per sky object:
    numpy arrays for scalar columns (NaN where missing), lists of arrays (empty = no data) or
    pyarrow arrays for list columns. ``options`` holds generic knobs (``cutout_size``...).
    """

    name: str
    make: Callable[..., Mapping[str, Any]]
    description: str = ""
    #: The plugin that registered it (set when collected from the hook); its tokenizers are
    #: the ones the demo trains on these columns.
    plugin: str = ""

    def __call__(self, sky: Sky, options: Mapping[str, Any] | None = None) -> Mapping[str, Any]:
        """The columns for ``sky``; ``make`` may take ``(sky)`` or ``(sky, options)``."""
        import inspect

        try:
            n_params = len(inspect.signature(self.make).parameters)
        except (TypeError, ValueError):
            n_params = 2
        return self.make(sky, dict(options or {})) if n_params >= 2 else self.make(sky)

    @classmethod
    def coerce(cls, obj: Any, name: str, plugin: str = "") -> DemoColumns:
        """A registered contribution as DemoColumns (a bare ``make`` callable is accepted and
        named ``name``); ``plugin`` records who registered it."""
        if isinstance(obj, DemoColumns):
            return attrs.evolve(obj, plugin=plugin) if plugin and not obj.plugin else obj
        if callable(obj):
            doc = (getattr(obj, "__doc__", "") or "").strip().split("\n")[0]
            return cls(name, obj, doc, plugin)
        raise TypeError(f"demo columns of {name!r} must be DemoColumns or a callable, got {obj!r}")


def _arr(dtype: Any) -> Any:
    return attrs.field(converter=lambda v: np.asarray(v, dtype=dtype))


@attrs.frozen(eq=False)
class Sky:
    """A list of synthetic objects with everything a survey would observe of them.

    Build one with :meth:`generate`; every array has one entry per object. Parameters that do
    not apply to an object's class are NaN (a galaxy has no temperature).
    """

    seed: int
    ids: np.ndarray = _arr(np.int64)
    kind: np.ndarray = _arr(np.int8)  # index into CLASSES
    redshift: np.ndarray = _arr(np.float64)
    mag_ref: np.ndarray = _arr(np.float64)  # AB magnitude in REFERENCE_WINDOW (observed)
    ra: np.ndarray = _arr(np.float64)
    dec: np.ndarray = _arr(np.float64)
    temperature: np.ndarray = _arr(np.float64)  # stars: effective temperature (K)
    young_fraction: np.ndarray = _arr(np.float64)  # galaxies: share of the young population
    emission_ew: np.ndarray = _arr(np.float64)  # galaxies: H-alpha rest equivalent width (A)
    qso_slope: np.ndarray = _arr(np.float64)  # qso: f_nu ~ nu^slope
    qso_line_ew: np.ndarray = _arr(np.float64)  # qso: Lyman-alpha rest EW (A)
    parallax: np.ndarray = _arr(np.float64)  # mas (0 for extragalactic)
    pmra: np.ndarray = _arr(np.float64)  # mas/yr
    pmdec: np.ndarray = _arr(np.float64)
    half_light: np.ndarray = _arr(np.float64)  # arcsec (0 = point source)
    sersic_n: np.ndarray = _arr(np.float64)
    axis_ratio: np.ndarray = _arr(np.float64)
    position_angle: np.ndarray = _arr(np.float64)  # degrees
    period: np.ndarray = _arr(np.float64)  # days (periodic stars, NaN otherwise)
    amplitude: np.ndarray = _arr(np.float64)  # mag (periodic stars)
    phase: np.ndarray = _arr(np.float64)  # [0, 1)
    drw_tau: np.ndarray = _arr(np.float64)  # days (qsos: damped random walk)
    drw_sigma: np.ndarray = _arr(np.float64)  # mag, asymptotic rms (qsos)

    # construction -------------------------------------------------------------------------
    @classmethod
    def generate(
        cls,
        n: int,
        seed: int = 0,
        *,
        fractions: tuple[float, float, float] = (0.45, 0.4, 0.15),
        first_id: int = 1_000_000,
        mag_range: tuple[float, float] = (14.0, 21.5),
    ) -> Sky:
        """A sky of ``n`` objects; the same ``(n, seed)`` always gives the same sky."""
        if n < 1:
            raise ValueError(f"a sky needs at least one object, got n={n}")
        if any(f < 0 for f in fractions) or not np.isclose(sum(fractions), 1.0):
            raise ValueError(f"class fractions {fractions} must be >= 0 and sum to 1")
        rng = np.random.default_rng(_seed_for(seed, "objects"))
        kind = rng.choice(3, size=n, p=np.asarray(fractions)).astype(np.int8)
        nan = np.full(n, np.nan)
        star, gal, qso = kind == STAR, kind == GALAXY, kind == QSO
        lo, hi = mag_range

        redshift = np.zeros(n)
        redshift[star] = rng.normal(0.0, 1e-4, star.sum())  # radial velocities ~30 km/s
        # galaxies: a gamma-like distribution peaking near z~0.15, tail to ~0.8
        redshift[gal] = np.clip(rng.gamma(2.2, 0.08, gal.sum()), 0.005, 0.9)
        redshift[qso] = np.clip(rng.uniform(0.2, 3.6, qso.sum()), 0.2, 3.6)

        mag = np.empty(n)
        # counts rise towards faint magnitudes (Euclidean-ish slope), truncated to mag_range
        u = rng.uniform(size=n)
        mag[:] = lo + (hi - lo) * u ** 0.45
        # fainter galaxies sit at higher redshift (a rough Hubble diagram with scatter)
        mag[gal] = np.clip(19.0 + 2.2 * np.log10(redshift[gal] / 0.15) + rng.normal(0, 0.7, gal.sum()),
                           max(lo, 15.0), hi)
        mag[qso] = np.clip(rng.uniform(17.0, hi, qso.sum()), lo, hi)

        temperature = nan.copy()
        temperature[star] = np.exp(rng.uniform(np.log(3200), np.log(12000), star.sum()))
        young = nan.copy()
        young[gal] = rng.beta(1.2, 1.8, gal.sum())
        ew = nan.copy()
        ew[gal] = young[gal] * rng.lognormal(np.log(60), 0.5, gal.sum())
        slope = nan.copy()
        slope[qso] = rng.normal(-0.5, 0.25, qso.sum())
        qew = nan.copy()
        qew[qso] = rng.lognormal(np.log(80), 0.4, qso.sum())

        # astrometry: stars in a thick disc, 200 pc - 20 kpc, tangential speed ~ 30-200 km/s
        parallax = np.zeros(n)
        pmra = np.zeros(n)
        pmdec = np.zeros(n)
        dist_pc = np.exp(rng.uniform(np.log(200), np.log(20000), star.sum()))
        parallax[star] = 1000.0 / dist_pc
        vt = rng.lognormal(np.log(50), 0.6, star.sum())
        ang = rng.uniform(0, 2 * np.pi, star.sum())
        mu = vt / (4.74047 * dist_pc / 1000.0)
        pmra[star], pmdec[star] = mu * np.cos(ang), mu * np.sin(ang)

        half = np.zeros(n)
        half[gal] = np.clip(rng.lognormal(np.log(2.0), 0.4, gal.sum()) / (1 + 3 * redshift[gal]), 0.3, 6)
        sersic = np.full(n, np.nan)
        sersic[gal] = np.where(young[gal] > 0.4, rng.uniform(0.7, 1.5, gal.sum()),
                               rng.uniform(2.5, 4.5, gal.sum()))
        q = np.ones(n)
        q[gal] = rng.uniform(0.35, 1.0, gal.sum())
        pa = np.zeros(n)
        pa[gal] = rng.uniform(0, 180, gal.sum())

        period, amp, phase = nan.copy(), nan.copy(), nan.copy()
        periodic = star & (rng.uniform(size=n) < 0.12)
        period[periodic] = np.exp(rng.uniform(np.log(0.25), np.log(20.0), periodic.sum()))
        amp[periodic] = rng.uniform(0.1, 0.8, periodic.sum())
        phase[periodic] = rng.uniform(0, 1, periodic.sum())
        tau, sig = nan.copy(), nan.copy()
        tau[qso] = rng.lognormal(np.log(200), 0.5, qso.sum()) * (1 + redshift[qso]) ** 0.5
        sig[qso] = rng.lognormal(np.log(0.15), 0.35, qso.sum())

        return cls(
            seed=seed, ids=first_id + np.arange(n), kind=kind, redshift=redshift, mag_ref=mag,
            ra=rng.uniform(150.0, 152.0, n), dec=rng.uniform(-1.0, 1.0, n),
            temperature=temperature, young_fraction=young, emission_ew=ew, qso_slope=slope,
            qso_line_ew=qew, parallax=parallax, pmra=pmra, pmdec=pmdec, half_light=half,
            sersic_n=sersic, axis_ratio=q, position_angle=pa, period=period, amplitude=amp,
            phase=phase, drw_tau=tau, drw_sigma=sig,
        )

    def replace(self, index: Any, **fields: Any) -> Sky:
        """A copy with ``fields`` overwritten at ``index`` (used to pin real objects)."""
        changes = {}
        for name, value in fields.items():
            arr = np.array(getattr(self, name), copy=True)
            arr[index] = value
            changes[name] = arr
        return attrs.evolve(self, **changes)

    # lookups ------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.ids)

    @property
    def class_names(self) -> np.ndarray:
        """The class of every object as a string array."""
        return np.asarray(CLASSES)[self.kind]

    def is_class(self, name: str) -> np.ndarray:
        """Boolean mask of the objects of one class."""
        return self.kind == CLASSES.index(name)

    @property
    def is_point_source(self) -> np.ndarray:
        """Stars and quasars (unresolved)."""
        return self.half_light <= 0

    def rng(self, purpose: str) -> np.random.Generator:
        """An independent generator per purpose: adding one survey never shifts another's noise."""
        return np.random.default_rng(_seed_for(self.seed, purpose))

    def truth(self) -> dict[str, np.ndarray]:
        """The true parameters as datacube columns (``id``, ``true_class``, ``true_redshift``...)."""
        return {
            "id": self.ids, "ra": self.ra, "dec": self.dec,
            "true_class": self.class_names, "true_redshift": self.redshift,
            "true_mag_ref": self.mag_ref,
        }

    # spectra ------------------------------------------------------------------------------
    def rest_sed(self, wave_rest: np.ndarray, index: np.ndarray) -> np.ndarray:
        """Un-normalised rest-frame f_lambda of the objects at ``index`` on ``wave_rest``.

        ``wave_rest`` is (L,) or (len(index), L). Stars: a black body with Balmer and metal
        absorption; galaxies: an old population with a 4000 A break plus a young one with
        nebular emission; quasars: a power law with broad lines and Lyman-alpha forest.
        """
        index = np.atleast_1d(np.asarray(index))
        w = np.broadcast_to(wave_rest, (len(index), np.shape(wave_rest)[-1])).astype(np.float64)
        out = np.zeros_like(w)
        kinds = self.kind[index]
        for k in (STAR, GALAXY, QSO):
            sel = np.flatnonzero(kinds == k)
            if sel.size:
                out[sel] = (self._star, self._galaxy, self._qso)[k](w[sel], index[sel])
        return out

    def _star(self, w: np.ndarray, idx: np.ndarray) -> np.ndarray:
        t = self.temperature[idx][:, None]
        cont = blackbody(w, t)
        # Balmer depth peaks near 9500 K; metal lines grow towards cool stars
        balmer = 0.6 * np.exp(-0.5 * ((t - 9500.0) / 2500.0) ** 2)
        metal = 0.5 * np.clip((7000.0 - t) / 3500.0, 0.05, 1.0)
        absorb = np.zeros_like(w)
        for lam in BALMER.values():
            absorb += balmer * np.exp(-0.5 * ((w - lam) / 8.0) ** 2)
        for lam in METAL_ABSORPTION.values():
            absorb += metal * np.exp(-0.5 * ((w - lam) / 3.0) ** 2)
        # molecular bands (TiO-like) flatten the red continuum of cool stars
        tio = np.clip((4000.0 - t) / 1000.0, 0.0, 0.6) * (w > 7050) * (w < 7700)
        return cont * np.clip(1.0 - absorb - tio, 0.02, None)

    def _galaxy(self, w: np.ndarray, idx: np.ndarray) -> np.ndarray:
        y = self.young_fraction[idx][:, None]
        old = blackbody(w, 4200.0) * (1.0 - 0.55 * _below(w, 4000.0, 40.0))
        young = blackbody(w, 14000.0) * (1.0 - 0.2 * _below(w, 3650.0, 30.0))
        o = old / blackbody(np.array(5500.0), 4200.0)
        yo = young / blackbody(np.array(5500.0), 14000.0)
        cont = (1.0 - y) * o + y * yo
        absorb = np.zeros_like(w)
        for lam in METAL_ABSORPTION.values():
            absorb += 0.25 * (1.0 - y) * np.exp(-0.5 * ((w - lam) / 5.0) ** 2)
        cont = cont * np.clip(1.0 - absorb, 0.05, None)
        ew = self.emission_ew[idx][:, None]
        cont_ha = (1.0 - y) * np.interp(6564.6, w[0], o[0]) + y * np.interp(6564.6, w[0], yo[0])
        lines = np.zeros_like(w)
        for lam, rel in NEBULAR_EMISSION.values():
            sigma = lam * 120.0 / C_KMS
            lines += rel * gaussian_line(w, lam, sigma)
        return cont + ew * cont_ha * lines

    def _qso(self, w: np.ndarray, idx: np.ndarray) -> np.ndarray:
        slope = self.qso_slope[idx][:, None]
        cont = (w / 3000.0) ** (-2.0 - slope)
        ew = self.qso_line_ew[idx][:, None]
        lines = np.zeros_like(w)
        for lam, rel in BROAD_EMISSION.values():
            sigma = lam * 2200.0 / C_KMS
            lines += rel * gaussian_line(w, lam, sigma) * (lam / 3000.0) ** (-2.0 - slope)
        flux = cont + ew * lines
        # mean Lyman-alpha forest transmission and the Lyman limit
        z = self.redshift[idx][:, None]
        lam_obs = w * (1.0 + z)
        forest = np.where(w < 1215.7, np.exp(-0.0036 * (lam_obs / 1215.7) ** 3.46), 1.0)
        return flux * forest * np.where(w < 912.0, 0.05, 1.0)

    def sed(self, wave_obs: np.ndarray, index: Any = None, *, chunk: int = 256) -> np.ndarray:
        """Observed-frame f_lambda (1e-17 erg/s/cm^2/A) on ``wave_obs`` (A), shape (n, L).

        Redshifted (``f(l_obs) = f_rest(l_obs / (1+z)) / (1+z)``) and scaled so the AB
        magnitude through the top-hat ``REFERENCE_WINDOW`` equals ``mag_ref``.
        """
        index = np.arange(len(self)) if index is None else np.atleast_1d(np.asarray(index))
        wave_obs = np.asarray(wave_obs, dtype=np.float64)
        ref_w = np.arange(REFERENCE_WINDOW[0] - 10, REFERENCE_WINDOW[1] + 10, 2.0)
        ref_r = ((ref_w >= REFERENCE_WINDOW[0]) & (ref_w <= REFERENCE_WINDOW[1])).astype(float)
        out = np.empty((len(index), len(wave_obs)))
        for s in range(0, len(index), chunk):
            idx = index[s : s + chunk]
            zp1 = (1.0 + self.redshift[idx])[:, None]
            flux = self.rest_sed(wave_obs[None, :] / zp1, idx) / zp1
            ref = self.rest_sed(ref_w[None, :] / zp1, idx) / zp1
            m_raw = ab_magnitude(ref_w, ref, ref_w, ref_r)
            scale = 10.0 ** (-0.4 * (self.mag_ref[idx] - m_raw))
            out[s : s + chunk] = flux * scale[:, None]
        return out


def spectroscopic_sample(
    sky: Sky, *, mag_limit: float = 20.5, fraction: float = 0.6, star_fraction: float = 0.1
) -> np.ndarray:
    """Which objects a spectroscopic follow-up observed: brighter than ``mag_limit``, a random
    ``fraction`` of galaxies and quasars and ``star_fraction`` of stars. Deterministic per sky,
    so every plugin that needs "has a spectrum" agrees."""
    u = sky.rng("spectroscopic-sample").uniform(size=len(sky))
    keep = np.where(sky.kind == STAR, u < star_fraction, u < fraction)
    return keep & (sky.mag_ref < mag_limit)


def photometry(
    sky: Sky,
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]],
    *,
    step: float = 4.0,
    index: Any = None,
) -> dict[str, np.ndarray]:
    """True AB magnitudes of the sky's SEDs through response curves ``{name: (wave, resp)}``."""
    lo = min(float(np.min(w)) for w, _ in curves.values())
    hi = max(float(np.max(w)) for w, _ in curves.values())
    wave = np.arange(lo, hi + step, step)
    flam = sky.sed(wave, index)
    return {name: ab_magnitude(wave, flam, w, r) for name, (w, r) in curves.items()}


def list_column(rows: list[np.ndarray | None], value_type: Any = None) -> Any:
    """A pyarrow list column from per-object arrays; ``None`` is a null, ``[]`` an empty list."""
    import pyarrow as pa

    value_type = value_type if value_type is not None else pa.float32()
    lengths = np.array([0 if r is None else len(r) for r in rows], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    dtype = value_type.to_pandas_dtype()
    parts = [np.asarray(r, dtype=dtype) for r in rows if r is not None and len(r)]
    values = np.concatenate(parts) if parts else np.empty(0, dtype=dtype)
    mask = pa.array([r is None for r in rows]) if any(r is None for r in rows) else None
    return pa.ListArray.from_arrays(
        pa.array(offsets), pa.array(values, type=value_type), mask=mask
    )
