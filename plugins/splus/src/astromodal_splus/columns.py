"""Canonical column names of the S-PLUS / Gaia / redshift scalars and their token keys.

Every name inside the plugin is *canonical* (the seed's default column name); a catalogue that
spells a column differently is read through a ``column_map`` ``{canonical: file column}``, so
token keys never depend on the catalogue a tokenizer was trained on.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

BANDS: tuple[str, ...] = (
    "u", "j0378", "j0395", "j0410", "j0430", "g",
    "j0515", "r", "j0660", "i", "j0861", "z",
)
GAIA_QUANTITIES: tuple[str, ...] = ("parallax", "pmra", "pmdec")
REDSHIFT_COLUMN = "z"
#: survey placeholders for "not measured"; by default they mean missing only in magnitude and
#: magnitude-error columns (a proper motion or redshift of exactly 99 is a real value)
DEFAULT_SENTINELS: tuple[float, ...] = (99.0, -99.0)

_UNSAFE = re.compile(r"[^a-z0-9_]")


def mag_column(band: str) -> str:
    """``mag_pstotal_<band>``."""
    return f"mag_pstotal_{normalize_band(band)}"


def err_column(band: str) -> str:
    """``err_mag_pstotal_<band>``."""
    return f"err_{mag_column(band)}"


def gaia_column(quantity: str) -> str:
    """``gaia_<quantity>`` for parallax, pmra, pmdec."""
    if quantity not in GAIA_QUANTITIES:
        raise ValueError(f"unknown Gaia quantity {quantity!r}; expected one of {GAIA_QUANTITIES}")
    return f"gaia_{quantity}"


MAG_COLUMNS: tuple[str, ...] = tuple(f"mag_pstotal_{b}" for b in BANDS)
GAIA_COLUMNS: tuple[str, ...] = tuple(f"gaia_{q}" for q in GAIA_QUANTITIES)
MAG_ERROR_COLUMNS: tuple[str, ...] = tuple(f"err_mag_pstotal_{b}" for b in BANDS)
DEFAULT_SCALAR_COLUMNS: tuple[str, ...] = (*MAG_COLUMNS, *GAIA_COLUMNS, REDSHIFT_COLUMN)


def default_sentinels(column: str, sentinels: Iterable[float] = DEFAULT_SENTINELS) -> tuple[float, ...]:
    """The sentinels that mean "missing" in a canonical column unless overridden: ``sentinels``
    for magnitude and magnitude-error columns, none for any other column."""
    if column in MAG_COLUMNS or column in MAG_ERROR_COLUMNS:
        return tuple(float(s) for s in sentinels)
    return ()


def normalize_band(band: str) -> str:
    """Lower-case band name, checked against the 12 S-PLUS bands."""
    b = str(band).lower()
    if b not in BANDS:
        raise ValueError(f"unknown S-PLUS band {band!r}; expected one of {BANDS}")
    return b


def token_key_name(column: str) -> str:
    """Canonical token key of a canonical column: ``"tok_" + column`` sanitised to [a-z0-9_]."""
    return "tok_" + _UNSAFE.sub("_", str(column).lower())


def column_kind(column: str) -> tuple[str, str | None]:
    """``("magnitude", band)``, ``("astrometry", quantity)``, ``("redshift", None)`` or
    ``("scalar", None)`` for any other column."""
    if column in MAG_COLUMNS:
        return "magnitude", column[len("mag_pstotal_"):]
    if column in GAIA_COLUMNS:
        return "astrometry", column[len("gaia_"):]
    if column == REDSHIFT_COLUMN:
        return "redshift", None
    return "scalar", None


def default_error_columns(columns: Iterable[str]) -> dict[str, str]:
    """The magnitude columns' error columns (``err_mag_pstotal_<band>``): the magerr filter."""
    return {c: f"err_{c}" for c in columns if c in MAG_COLUMNS}


def check_unique_keys(columns: Iterable[str]) -> None:
    """Raise ValueError if two columns sanitise to the same token key."""
    seen: dict[str, str] = {}
    for c in columns:
        k = token_key_name(c)
        if k in seen:
            raise ValueError(f"columns {seen[k]!r} and {c!r} both give token key {k!r}")
        seen[k] = c


def file_column(name: str, column_map: Mapping[str, str]) -> str:
    """The file's name for a canonical column."""
    return column_map.get(name, name)
