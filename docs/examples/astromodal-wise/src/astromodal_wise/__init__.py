"""astromodal-wise: WISE W1-W4 magnitudes as the token key ``tok_wise`` (the plugin tutorial)."""

from .codec import WISECodec
from .modality import BANDS, WISEPhotometry
from .tokenizer import WISETokenizer

__all__ = ["BANDS", "WISECodec", "WISEPhotometry", "WISETokenizer"]
