"""astromodal-lightcurve: per-epoch light curves as ragged token keys (the second tutorial)."""

from .tokenizer import LightCurveTokenizer

__all__ = ["LightCurveTokenizer"]
