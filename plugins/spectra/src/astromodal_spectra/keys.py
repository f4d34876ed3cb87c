"""The token keys of the default configuration (codebook 2048, 1024 norm bins, patch 1)."""

from __future__ import annotations

from astromodal_core.modality import TokenKey

from .groups import DESI_ARMS, DESI_GRIDS, XP_BANDS, XP_N_SAMPLES, ZTF_BANDS

DEFAULT_CODEBOOK = 2048
DEFAULT_NORM_BINS = 1024
#: Default longest ZTF light curve (points) a rectangular ZTF key is registered with.
DEFAULT_ZTF_LENGTH = 2000


def _pair(key: str, layout: str, length: int, modality: str, what: str) -> list[TokenKey]:
    return [
        TokenKey(key, DEFAULT_CODEBOOK + 1, layout, max_length=length, modality=modality,
                 mask_token=DEFAULT_CODEBOOK, description=f"{what}: k-means tokens, one per point"),
        TokenKey(f"{key}_norm", DEFAULT_NORM_BINS + 1, "scalar", modality=modality,
                 mask_token=DEFAULT_NORM_BINS, ordinal=True, description=f"{what}: per-object normalisation"),
    ]


def default_token_keys() -> list[TokenKey]:
    """Every key the default groups write (DESI b/r/z, ZTF g/r/i, Gaia XP BP/RP)."""
    keys: list[TokenKey] = []
    for arm in DESI_ARMS:
        keys += _pair(f"tok_spectrum_desi_{arm}", "sequence", DESI_GRIDS[arm][2], "DESISpectrum",
                      f"DESI {arm} arm")
    for band in ZTF_BANDS:
        keys += _pair(f"tok_lightcurve_ztf_{band}", "sequence", DEFAULT_ZTF_LENGTH,
                      "ZTFLightCurve", f"ZTF {band} light curve")
    for band in XP_BANDS:
        keys += _pair(f"tok_xp_{band.lower()}", "ragged", XP_N_SAMPLES, "GaiaXPSpectrum",
                      f"Gaia XP {band}")
    return keys
