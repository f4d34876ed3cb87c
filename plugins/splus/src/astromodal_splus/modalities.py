"""Scalar modalities: S-PLUS magnitudes, Gaia astrometry, redshift and any other catalogue scalar.

Values are 1-D batches (numpy arrays or torch tensors). NaN, inf and the survey sentinels
(99 / -99) mean "not measured" and encode to the key's mask token.
"""

from __future__ import annotations

from typing import Any

import attrs

from astromodal_core import Modality
from astromodal_core.modality import as_array

from .columns import GAIA_QUANTITIES, REDSHIFT_COLUMN, normalize_band, token_key_name


def _optional_array(value: Any) -> Any:
    return None if value is None else as_array(value)


def _quantity(value: str) -> str:
    if value not in GAIA_QUANTITIES:
        raise ValueError(f"unknown Gaia quantity {value!r}; expected one of {GAIA_QUANTITIES}")
    return value


@attrs.define(kw_only=True, eq=False)
class SplusMagnitude(Modality):
    """S-PLUS total magnitudes (AB) in one band, with optional errors.

    ``band`` is one of u, j0378, j0395, j0410, j0430, g, j0515, r, j0660, i, j0861, z
    (case-insensitive); the token key is ``tok_mag_pstotal_<band>``.
    """

    value: Any = attrs.field(converter=as_array)
    band: str = attrs.field(converter=normalize_band)
    error: Any = attrs.field(default=None, converter=_optional_array)

    @property
    def token_key(self) -> str:  # type: ignore[override]
        return token_key_name(f"mag_pstotal_{self.band}")


@attrs.define(kw_only=True, eq=False)
class GaiaAstrometry(Modality):
    """One Gaia astrometric quantity: ``parallax`` (mas), ``pmra`` or ``pmdec`` (mas/yr).

    The token key is ``tok_gaia_<quantity>``.
    """

    value: Any = attrs.field(converter=as_array)
    quantity: str = attrs.field(validator=lambda _i, _a, v: _quantity(v))
    error: Any = attrs.field(default=None, converter=_optional_array)

    @property
    def token_key(self) -> str:  # type: ignore[override]
        return token_key_name(f"gaia_{self.quantity}")


@attrs.define(kw_only=True, eq=False)
class Redshift(Modality):
    """Spectroscopic redshift (column ``z``); token key ``tok_z``."""

    token_key = token_key_name(REDSHIFT_COLUMN)
    value: Any = attrs.field(converter=as_array)
    error: Any = attrs.field(default=None, converter=_optional_array)


@attrs.define(kw_only=True, eq=False)
class CatalogScalar(Modality):
    """Any other catalogue scalar listed in ``scalar_columns``; token key ``tok_<column>``."""

    value: Any = attrs.field(converter=as_array)
    column: str = attrs.field()
    error: Any = attrs.field(default=None, converter=_optional_array)

    @property
    def token_key(self) -> str:  # type: ignore[override]
        return token_key_name(self.column)
