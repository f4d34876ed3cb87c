"""astromodal-spectra: tokenizers and codecs for DESI spectra, ZTF light curves and Gaia XP."""

from __future__ import annotations

from .codecs import DESISpectrumCodec, GaiaXPCodec, SpectrumGroupCodec, ZTFLightCurveCodec
from .modalities import DESISpectrum, GaiaXPSpectrum, ZTFLightCurve
from .tokenizer import SpectrumTokenizer

__version__ = "0.1.0"
__all__ = [
    "DESISpectrum",
    "DESISpectrumCodec",
    "GaiaXPCodec",
    "GaiaXPSpectrum",
    "SpectrumGroupCodec",
    "SpectrumTokenizer",
    "ZTFLightCurve",
    "ZTFLightCurveCodec",
]
