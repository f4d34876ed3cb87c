"""WISECodec: one quantile table per band (the core's QuantileBins); NaN is the mask token."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from astromodal_core import Codec, Modality, TokenKey
from astromodal_core.blocks import QuantileBins
from astromodal_core.serialize import load_npz, save_npz

from .modality import BANDS, DEFAULT_N_BINS, TOKEN_KEY, WISEPhotometry, wise_token_key

KIND = "astromodal_wise.WISECodec"


class WISECodec(Codec):
    """Encodes :class:`WISEPhotometry` to ``tok_wise`` (4 tokens a row) and back.

    Token ``k`` of band ``b`` is bin ``k`` of that band's equal-count bins; it decodes to the
    median of the training values in the bin. NaN encodes to (and decodes from) the mask token.
    """

    modalities = (WISEPhotometry,)

    def __init__(self, n_bins: int = DEFAULT_N_BINS):
        self.bins = QuantileBins(n_bins, BANDS)

    @property
    def n_bins(self) -> int:
        return self.bins.n_bins

    def train(self, sources: Any, **kwargs: Any) -> WISECodec:
        """Fit on a WISEPhotometry or an (n, 4) array of magnitudes (NaN is left out)."""
        mag = sources.mag if isinstance(sources, WISEPhotometry) else sources
        self.bins.fit(np.asarray(mag, dtype=np.float64))
        return self

    @property
    def is_fitted(self) -> bool:
        return self.bins.is_fitted

    @property
    def token_keys(self) -> tuple[TokenKey, ...]:
        return (wise_token_key(self.n_bins),)

    def encode(self, modality: Modality) -> dict[str, Any]:
        self.check_fitted()
        return {TOKEN_KEY: self.bins.encode(np.asarray(modality.mag))}

    def decode(self, tokens: Any, **metadata: Any) -> WISEPhotometry:
        self.check_fitted()
        return WISEPhotometry(mag=self.bins.decode(np.asarray(tokens[TOKEN_KEY])))

    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return self.bins.state()

    def save(self, path: str | os.PathLike[str]) -> None:
        self.check_fitted()
        save_npz(path, *self._state(), kind=KIND)

    @classmethod
    def load(cls, path: str | os.PathLike[str], **kwargs: Any) -> WISECodec:
        config, arrays, _ = load_npz(path, kind=KIND)
        codec = cls(int(config["n_bins"]))
        codec.bins = QuantileBins.from_state(config, arrays)
        return codec
