"""The ImageCutout modality, the S-PLUS band set and the grid token key of an image tokenizer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
import numpy as np

from astromodal_core import Modality, TokenKey, array_field
from astromodal_core.modality import to_numpy

#: The 12 S-PLUS filters, in wavelength order as the survey lists them.
SPLUS_BANDS: tuple[str, ...] = (
    "U", "F378", "F395", "F410", "F430", "G", "F515", "R", "F660", "I", "F861", "Z",
)
SPLUS_TOKEN_KEY = "tok_image_splus"
DEFAULT_CUTOUT_SIZE = 96
DEFAULT_LATENT_DIM = 2
DEFAULT_CODEBOOK_SIZE = 1024
DEFAULT_CHANNELS: tuple[int, ...] = (16, 32, 32)
#: learning-rate schedules of the training recipe
SCHEDULES: tuple[str, ...] = ("one_cycle", "constant")


def _optional_array(value: Any) -> Any:
    return None if value is None else to_numpy(value).astype(bool)


@attrs.define(kw_only=True, eq=False)
class ImageCutout(Modality):
    """A batch of multi-band cutouts.

    ``flux`` has shape (n, bands, H, W) in the survey's flux units; NaN pixels are missing.
    ``bands`` names the planes of axis 1. ``band_mask`` (n, bands), when given, is True where a
    row has that band (a False band is ignored whatever its pixels hold). ``pixel_scale`` is in
    arcsec per pixel. Other surveys subclass it (see :func:`image_modality`) to get their own
    token key.
    """

    token_key = SPLUS_TOKEN_KEY

    flux: Any = array_field()
    bands: tuple[str, ...] = attrs.field(converter=lambda b: tuple(str(x) for x in b))
    band_mask: Any = attrs.field(default=None, converter=_optional_array)
    pixel_scale: float | None = attrs.field(default=None)

    def __attrs_post_init__(self) -> None:
        shape = tuple(self.flux.shape)
        if len(shape) != 4:
            raise ValueError(f"{type(self).__name__}.flux must be (n, bands, H, W), got shape {shape}")
        if shape[1] != len(self.bands):
            raise ValueError(
                f"{type(self).__name__}: flux has {shape[1]} band planes but {len(self.bands)} "
                f"band names {list(self.bands)}"
            )
        if len(set(self.bands)) != len(self.bands):
            raise ValueError(f"{type(self).__name__}: duplicate band names in {list(self.bands)}")
        if self.band_mask is not None and tuple(self.band_mask.shape) != shape[:2]:
            raise ValueError(
                f"{type(self).__name__}.band_mask must be (n, bands) = {shape[:2]}, "
                f"got {tuple(self.band_mask.shape)}"
            )

    def masked_flux(self) -> np.ndarray:
        """float32 flux with the planes of absent bands (``band_mask`` False) set to NaN."""
        flux = np.array(to_numpy(self.flux), dtype=np.float32, copy=True)
        if self.band_mask is not None:
            flux[~self.band_mask] = np.nan
        return flux


def image_modality(name: str, token_key: str, doc: str = "") -> type[ImageCutout]:
    """A new ImageCutout subclass writing ``token_key``, for another survey's plugin to register."""
    cls = attrs.define(kw_only=True, eq=False)(
        type(name, (ImageCutout,), {"token_key": token_key, "name": name, "__doc__": doc or None})
    )
    return cls


def image_token_key(
    name: str = SPLUS_TOKEN_KEY,
    *,
    codebook_size: int = DEFAULT_CODEBOOK_SIZE,
    grid: Sequence[int] = (12, 12),
    modality: str = "ImageCutout",
    description: str = "",
) -> TokenKey:
    """The grid token key of an image tokenizer: ``codebook_size`` codes plus the mask token."""
    h, w = (int(g) for g in grid)
    return TokenKey(
        name=name,
        vocab_size=codebook_size + 1,
        layout="grid",
        max_length=h * w,
        shape=(h, w),
        modality=modality,
        mask_token=codebook_size,
        description=description
        or f"image cutout codes on a {h}x{w} latent grid; {codebook_size} = no data",
    )
