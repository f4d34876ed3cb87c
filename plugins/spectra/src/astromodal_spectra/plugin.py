"""Hook implementations of astromodal-spectra (heavy imports happen inside the hooks)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from astromodal_core import hookimpl


@hookimpl
def astromodal_register_modalities(register: Callable[[type], None]) -> None:
    from .modalities import DESISpectrum, GaiaXPSpectrum, ZTFLightCurve

    for cls in (DESISpectrum, ZTFLightCurve, GaiaXPSpectrum):
        register(cls)


@hookimpl
def astromodal_register_codecs(register: Callable[[type], None]) -> None:
    from .codecs import DESISpectrumCodec, GaiaXPCodec, ZTFLightCurveCodec

    for cls in (DESISpectrumCodec, ZTFLightCurveCodec, GaiaXPCodec):
        register(cls)


@hookimpl
def astromodal_register_token_keys(register: Callable[[Any], None]) -> None:
    from .keys import default_token_keys

    for key in default_token_keys():
        register(key)


@hookimpl
def astromodal_register_tokenizers(register: Callable[[str, type], None]) -> None:
    from .tokenizer import SpectrumTokenizer

    register("spectrum", SpectrumTokenizer)


@hookimpl(optionalhook=True)  # the demo plugin's hook: this plugin loads without it
def astromodal_register_demo_columns(register: Callable[[Any], None]) -> None:
    """This survey's columns for the demo datacube (see ``demo.py``)."""
    from .demo import DEMO_COLUMNS

    register(DEMO_COLUMNS)
