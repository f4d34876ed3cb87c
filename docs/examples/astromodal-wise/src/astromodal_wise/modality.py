"""The WISEPhotometry modality and the token key it is written to."""

from __future__ import annotations

from typing import Any

import attrs

from astromodal_core import Modality, TokenKey, array_field

BANDS: tuple[str, ...] = ("w1", "w2", "w3", "w4")
TOKEN_KEY = "tok_wise"
DEFAULT_N_BINS = 64


@attrs.define(kw_only=True, eq=False)
class WISEPhotometry(Modality):
    """WISE magnitudes (Vega), shape (n, 4) in the order W1, W2, W3, W4; NaN = not detected."""

    token_key = TOKEN_KEY

    mag: Any = array_field()

    def __attrs_post_init__(self) -> None:
        if self.mag.ndim != 2 or self.mag.shape[1] != len(BANDS):
            raise ValueError(f"WISEPhotometry.mag must be (n, 4), got shape {tuple(self.mag.shape)}")


def wise_token_key(n_bins: int = DEFAULT_N_BINS) -> TokenKey:
    """One token per band, a shared vocabulary of ``n_bins`` bins plus the mask token."""
    return TokenKey(
        TOKEN_KEY, vocab_size=n_bins + 1, layout="sequence", max_length=len(BANDS),
        modality="WISEPhotometry", description="WISE W1-W4 magnitude bins (per-band quantiles)",
        mask_token=n_bins,
    )
