"""WISECodec: per-band quantile bins; a missing magnitude is the mask token."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from astromodal_core import Codec, DataError, Modality, TokenKey
from astromodal_core.serialize import load_npz, save_npz

from .modality import BANDS, DEFAULT_N_BINS, WISEPhotometry, wise_token_key

KIND = "astromodal_wise.WISECodec"


def quantile_edges(values: np.ndarray, n_bins: int) -> np.ndarray:
    """``n_bins - 1`` inner edges splitting finite ``values`` into equally populated bins."""
    v = values[np.isfinite(values)]
    if v.size == 0:
        raise DataError("no finite magnitude to fit quantile bins on")
    return np.quantile(v, np.linspace(0, 1, n_bins + 1)[1:-1])


class WISECodec(Codec):
    """Encodes :class:`WISEPhotometry` to ``tok_wise`` (4 tokens a row) and back.

    Token ``k`` of band ``b`` means "between edge k-1 and edge k"; it decodes to the median
    of the training values in that bin. NaN decodes from and encodes to the mask token.
    """

    modalities = (WISEPhotometry,)

    def __init__(self, n_bins: int = DEFAULT_N_BINS):
        if not 2 <= n_bins <= 65535:
            raise ValueError(f"n_bins must be in [2, 65535], got {n_bins}")
        self.n_bins = int(n_bins)
        self.edges: np.ndarray | None = None  # (4, n_bins - 1)
        self.centers: np.ndarray | None = None  # (4, n_bins)

    # fitting ------------------------------------------------------------------------------
    def train(self, sources: Any, **kwargs: Any) -> WISECodec:
        """Fit on a WISEPhotometry or an (n, 4) array of magnitudes."""
        mag = sources.mag if isinstance(sources, WISEPhotometry) else sources
        return self.fit_arrays([np.asarray(mag, dtype=np.float64)[:, b] for b in range(len(BANDS))])

    def fit_arrays(self, per_band: list[np.ndarray]) -> WISECodec:
        """Fit from one array of sampled magnitudes per band."""
        edges, centers = [], []
        for values in per_band:
            e = quantile_edges(np.asarray(values, dtype=np.float64), self.n_bins)
            v = np.sort(values[np.isfinite(values)])
            idx = np.searchsorted(e, v, side="right")
            c = np.array([np.median(v[idx == k]) if np.any(idx == k) else np.nan
                          for k in range(self.n_bins)])
            # empty bins (ties) decode to the nearest edge
            fill = np.concatenate([[v[0]], e])
            edges.append(e)
            centers.append(np.where(np.isfinite(c), c, fill))
        self.edges, self.centers = np.stack(edges), np.stack(centers)
        return self

    # the contract -------------------------------------------------------------------------
    @property
    def is_fitted(self) -> bool:
        return self.edges is not None

    @property
    def token_keys(self) -> tuple[TokenKey, ...]:
        return (wise_token_key(self.n_bins),)

    def encode_array(self, mag: np.ndarray) -> np.ndarray:
        """(n, 4) magnitudes -> (n, 4) uint16 tokens; NaN -> the mask token."""
        self.check_fitted()
        mag = np.asarray(mag, dtype=np.float64)
        out = np.full(mag.shape, self.n_bins, dtype=np.uint16)
        for b in range(len(BANDS)):
            ok = np.isfinite(mag[:, b])
            out[ok, b] = np.searchsorted(self.edges[b], mag[ok, b], side="right")
        return out

    def encode(self, modality: Modality) -> dict[str, Any]:
        self.check_fitted()
        return {wise_token_key(self.n_bins).name: self.encode_array(np.asarray(modality.mag))}

    def decode(self, tokens: Any, **metadata: Any) -> WISEPhotometry:
        self.check_fitted()
        tok = np.asarray(tokens[wise_token_key(self.n_bins).name]).astype(np.int64)
        mag = np.full(tok.shape, np.nan)
        for b in range(len(BANDS)):
            ok = tok[:, b] < self.n_bins
            mag[ok, b] = self.centers[b][tok[ok, b]]
        return WISEPhotometry(mag=mag)

    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {"n_bins": self.n_bins}, {"edges": self.edges, "centers": self.centers}

    def save(self, path: str | os.PathLike[str]) -> None:
        self.check_fitted()
        config, arrays = self._state()
        save_npz(path, config, arrays, kind=KIND)

    @classmethod
    def load(cls, path: str | os.PathLike[str], **kwargs: Any) -> WISECodec:
        config, arrays, _ = load_npz(path, kind=KIND)
        codec = cls(n_bins=int(config["n_bins"]))
        codec.edges, codec.centers = arrays["edges"], arrays["centers"]
        return codec
