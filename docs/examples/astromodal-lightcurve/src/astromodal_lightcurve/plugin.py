"""The hooks astromodal calls: the tokenizer and the token keys of its default settings."""

from __future__ import annotations

from typing import Any

from astromodal_core import hookimpl


@hookimpl
def astromodal_register_tokenizers(register: Any) -> None:
    from .tokenizer import LightCurveTokenizer

    register("lightcurve", LightCurveTokenizer)


@hookimpl
def astromodal_register_token_keys(register: Any) -> None:
    from .tokenizer import LightCurveTokenizer

    for key in LightCurveTokenizer().token_keys:
        register(key)
