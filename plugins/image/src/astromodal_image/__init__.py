"""astromodal-image: multi-band cutouts tokenized by a conv autoencoder and a k-means codebook.

Importing this package does not import torch; ``ImageTokenizer`` and ``ImageCodec`` load it
when first used.
"""

from __future__ import annotations

from typing import Any

from .modality import SPLUS_BANDS, SPLUS_TOKEN_KEY, ImageCutout, image_modality, image_token_key
from .storage import band_column, cutout_table, iter_cutouts, write_cutouts

__version__ = "0.1.0"

__all__ = [
    "SPLUS_BANDS",
    "SPLUS_TOKEN_KEY",
    "ImageCodec",
    "ImageCutout",
    "ImageTokenizer",
    "band_column",
    "cutout_table",
    "image_modality",
    "image_token_key",
    "iter_cutouts",
    "write_cutouts",
]


def __getattr__(name: str) -> Any:
    if name == "ImageTokenizer":
        from .tokenizer import ImageTokenizer

        return ImageTokenizer
    if name == "ImageCodec":
        from .codec import ImageCodec

        return ImageCodec
    raise AttributeError(f"module 'astromodal_image' has no attribute {name!r}")
