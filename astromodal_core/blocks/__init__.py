"""Building blocks a tokenizer is made of, so that a new survey is mostly configuration.

- :class:`QuantileBins` (:mod:`astromodal_core.blocks.quantile`): per-column quantile bins,
  values -> ordinal uint16 tokens with a mask token, for scalar, multi-column and ragged data.
- :class:`KMeansCodebook` (:mod:`astromodal_core.blocks.codebook`): a k-means codebook,
  feature vectors -> nearest code ids (uint16 / uint32) with a mask token, and back.
"""

from __future__ import annotations

from .codebook import KMeansCodebook, check_codebook
from .quantile import BinTable, QuantileBins, fit_bins, missing_mask, quantile_edges

__all__ = ["BinTable", "KMeansCodebook", "QuantileBins", "check_codebook", "fit_bins", "missing_mask",
           "quantile_edges"]
