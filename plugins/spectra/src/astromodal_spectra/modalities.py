"""The spectra plugin's modalities: DESI arms, ZTF light curves and Gaia XP spectra.

Each is a batch of rows padded to one length; a point that holds no measurement is marked in
``mask`` (True = masked / absent). Their ``token_key`` depends on the arm or band.
"""

from __future__ import annotations

from typing import Any

import attrs

from astromodal_core import Modality, array_field
from astromodal_core.modality import as_array


def _opt_array(value: Any) -> Any:
    return None if value is None else as_array(value)


@attrs.define(kw_only=True, eq=False)
class DESISpectrum(Modality):
    """One DESI spectrograph arm for a batch of objects.

    ``flux`` and ``ivar`` are (n, L) in 1e-17 erg/s/cm2/A and its inverse variance; ``mask``
    (n, L) is True where a pixel is unusable (ivar = 0, mask bits set, NaN); ``wavelength``
    (L,) is in Angstrom; ``arm`` is ``b``, ``r`` or ``z``.
    """

    flux: Any = array_field()
    ivar: Any = array_field()
    mask: Any = attrs.field(default=None, converter=_opt_array)
    wavelength: Any = attrs.field(default=None, converter=_opt_array)
    arm: str = "b"

    @property
    def token_key(self) -> str:  # type: ignore[override]
        return f"tok_spectrum_desi_{self.arm}"


@attrs.define(kw_only=True, eq=False)
class ZTFLightCurve(Modality):
    """One ZTF band's light curves: ``time`` (HMJD, days), ``mag`` and ``magerr`` (n, L).

    ``mask`` is True where a point is absent (padding) or unusable (NaN magnitude).
    """

    time: Any = array_field()
    mag: Any = array_field()
    magerr: Any = array_field()
    mask: Any = attrs.field(default=None, converter=_opt_array)
    band: str = "g"

    @property
    def token_key(self) -> str:  # type: ignore[override]
        return f"tok_lightcurve_ztf_{self.band}"


@attrs.define(kw_only=True, eq=False)
class GaiaXPSpectrum(Modality):
    """Gaia DR3 XP spectra of one band (``BP`` or ``RP``) for a batch of sources.

    As the archive ships them: ``coefficients`` and ``coefficient_errors`` (n, 55),
    ``standard_deviation`` (n,). ``present`` (n,) is False for a source without this band.
    A decoded instance also holds the sampled ``flux`` / ``flux_error`` (n, 600) on
    ``pseudo_wavelength`` (600,), as gaiaxpy.convert samples them.
    """

    coefficients: Any = array_field()
    coefficient_errors: Any = array_field()
    standard_deviation: Any = attrs.field(default=None, converter=_opt_array)
    present: Any = attrs.field(default=None, converter=_opt_array)
    band: str = "BP"
    flux: Any = attrs.field(default=None, converter=_opt_array)
    flux_error: Any = attrs.field(default=None, converter=_opt_array)
    pseudo_wavelength: Any = attrs.field(default=None, converter=_opt_array)

    @property
    def token_key(self) -> str:  # type: ignore[override]
        return f"tok_xp_{self.band.lower()}"
