"""The token keys of the default configuration (codebook 2048, 1024 norm bins, patch 1).

These are registry defaults: a fitted tokenizer's keys (``SpectrumTokenizer.token_keys``) carry
the data's lengths and time bins (a ZTF key's ``max_length`` is the longest light curve seen
in training)."""

from __future__ import annotations

from astromodal_core.modality import TokenKey

from .groups import DEFAULT_TIME_STEP, DESI_ARMS, DESI_GRIDS, XP_BANDS, XP_N_SAMPLES, ZTF_BANDS

DEFAULT_CODEBOOK = 2048
DEFAULT_NORM_BINS = 1024
#: Longest ZTF light curve (points) the registry's ragged ZTF keys allow.
DEFAULT_ZTF_LENGTH = 2000
#: Time ids of the registry's ZTF ``_time`` keys: 4096 days in ``DEFAULT_TIME_STEP`` bins.
DEFAULT_ZTF_TIME_BINS = int(4096 / DEFAULT_TIME_STEP) + 1


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
        key = f"tok_lightcurve_ztf_{band}"
        keys += _pair(key, "ragged", DEFAULT_ZTF_LENGTH, "ZTFLightCurve", f"ZTF {band} light curve")
        keys.append(TokenKey(f"{key}_time", DEFAULT_ZTF_TIME_BINS + 1, "ragged",
                             max_length=DEFAULT_ZTF_LENGTH, modality="ZTFLightCurve",
                             mask_token=DEFAULT_ZTF_TIME_BINS, ordinal=True,
                             description=f"ZTF {band} light curve: days since the first point"))
    for band in XP_BANDS:
        keys += _pair(f"tok_xp_{band.lower()}", "ragged", XP_N_SAMPLES, "GaiaXPSpectrum",
                      f"Gaia XP {band}")
    return keys
