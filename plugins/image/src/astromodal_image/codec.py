"""ImageCodec: the Codec contract over an ImageTokenizer (ImageCutout <-> grid tokens)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from astromodal_core import Codec, DataError, TokenKey
from astromodal_core.codec import Tokens
from astromodal_core.modality import Modality, to_numpy

from .modality import ImageCutout
from .tokenizer import ImageTokenizer


class ImageCodec(Codec):
    """Encodes :class:`ImageCutout` batches to ``{token_key: (n, H', W') uint16}`` and back.

    A survey with its own cutout modality subclasses this and sets ``modalities``.
    ``train_kwargs`` (epochs, batch_size, progress, ...) are passed to the training call.
    """

    modalities = (ImageCutout,)

    def __init__(
        self,
        tokenizer: ImageTokenizer | None = None,
        *,
        train_kwargs: Mapping[str, Any] | None = None,
        **tokenizer_kwargs: Any,
    ):
        self.tokenizer = tokenizer if tokenizer is not None else ImageTokenizer(**tokenizer_kwargs)
        self.train_kwargs = dict(train_kwargs or {})

    @classmethod
    def from_tokenizer(cls, tokenizer: ImageTokenizer) -> ImageCodec:
        """A codec sharing a fitted tokenizer's state."""
        return cls(tokenizer)

    # contract --------------------------------------------------------------------------------
    def train(self, sources: Any, **kwargs: Any) -> ImageCodec:
        """Fit on parquet path(s), an ImageCutout batch or a float array (n, bands, H, W)."""
        kw = {**self.train_kwargs, **kwargs}
        if isinstance(sources, ImageCutout):
            self.tokenizer.fit_arrays(self._tokenizer_flux(sources), **kw)
        elif isinstance(sources, np.ndarray):
            self.tokenizer.fit_arrays(sources, **kw)
        else:
            self.tokenizer.train(sources, **kw)
        return self

    def encode(self, modality: Modality) -> dict[str, Any]:
        """``{token_key: uint16 (n, H', W')}``; a row with no valid pixel is all mask tokens."""
        self.check_fitted()
        if not isinstance(modality, ImageCutout):
            raise DataError(f"ImageCodec encodes ImageCutout batches, got {type(modality).__name__}")
        tokens, _ = self.tokenizer.encode_array(
            self._tokenizer_flux(modality), source=type(modality).__name__
        )
        return {self.tokenizer.key_name: tokens}

    def decode(self, tokens: Tokens, **metadata: Any) -> ImageCutout:
        """An ImageCutout (flux in input units) for ``bands=`` (default: all the tokenizer's)."""
        self.check_fitted()
        key = self.tokenizer.key_name
        if key not in tokens:
            raise DataError(f"ImageCodec.decode needs token key {key!r}; got {sorted(tokens)}")
        bands = list(metadata.get("bands") or self.tokenizer.bands)
        flux = self.tokenizer.decode(to_numpy(tokens[key]), bands)
        mask = ~np.isnan(flux).all(axis=(2, 3))
        return self.modalities[0](
            flux=flux, bands=bands, band_mask=mask, pixel_scale=metadata.get("pixel_scale")
        )

    def accepts(self, modality: Modality) -> bool:
        """True for cutouts of this token key whose bands this tokenizer knows."""
        return (
            isinstance(modality, ImageCutout)
            and modality.token_key == self.tokenizer.key_name
            and set(modality.bands) <= set(self.tokenizer.bands)
        )

    def accepts_metadata(self, metadata: Mapping[str, Any]) -> bool:
        """True when the requested ``bands`` (if any) are among the tokenizer's."""
        bands = metadata.get("bands")
        return bands is None or set(bands) <= set(self.tokenizer.bands)

    def save(self, path: str | os.PathLike[str]) -> None:
        self.tokenizer.save(path)

    @classmethod
    def load(cls, path: str | os.PathLike[str], **kwargs: Any) -> ImageCodec:
        return cls(ImageTokenizer.load(path, **kwargs))

    @property
    def token_keys(self) -> tuple[TokenKey, ...]:
        return self.tokenizer.token_keys

    @property
    def is_fitted(self) -> bool:
        return self.tokenizer.is_fitted

    @property
    def fingerprint(self) -> str:
        """The tokenizer's fingerprint (its settings, scales, weights and codebook)."""
        return self.tokenizer.fingerprint

    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return self.tokenizer._state()

    # helpers ---------------------------------------------------------------------------------
    def _tokenizer_flux(self, modality: ImageCutout) -> np.ndarray:
        """The modality's flux in the tokenizer's band order; absent bands are NaN planes."""
        tok = self.tokenizer
        name = type(modality).__name__
        unknown = [b for b in modality.bands if b not in tok.bands]
        if unknown:
            raise DataError(f"{name}: bands {unknown} are not among the tokenizer's bands {tok.bands}")
        flux = modality.masked_flux()
        n, _, h, w = flux.shape
        if (h, w) != (tok.cutout_size, tok.cutout_size):
            raise DataError(
                f"{name}: cutouts are {h}x{w}, this tokenizer expects "
                f"{tok.cutout_size}x{tok.cutout_size}"
            )
        if list(modality.bands) == tok.bands:
            return flux
        out = np.full((n, len(tok.bands), h, w), np.nan, dtype=np.float32)
        for j, band in enumerate(modality.bands):
            out[:, tok.bands.index(band)] = flux[:, j]
        return out
