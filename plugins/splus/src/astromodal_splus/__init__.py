"""astromodal-splus: S-PLUS magnitudes, Gaia astrometry and redshift as quantile-binned tokens."""

from __future__ import annotations

from .codecs import (
    AstrometryCodec,
    CatalogScalarCodec,
    MagnitudeCodec,
    RedshiftCodec,
    ScalarColumnCodec,
)
from .columns import BANDS, DEFAULT_SCALAR_COLUMNS, GAIA_QUANTITIES, token_key_name
from .modalities import CatalogScalar, GaiaAstrometry, Redshift, SplusMagnitude
from .tokenizer import ScalarTokenizer

__all__ = [
    "BANDS",
    "DEFAULT_SCALAR_COLUMNS",
    "GAIA_QUANTITIES",
    "AstrometryCodec",
    "CatalogScalar",
    "CatalogScalarCodec",
    "GaiaAstrometry",
    "MagnitudeCodec",
    "Redshift",
    "RedshiftCodec",
    "ScalarColumnCodec",
    "ScalarTokenizer",
    "SplusMagnitude",
    "token_key_name",
]
