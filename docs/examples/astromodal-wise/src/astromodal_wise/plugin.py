"""The hooks astromodal calls: this module holds only @hookimpl functions."""

from __future__ import annotations

from typing import Any

from astromodal_core import hookimpl


@hookimpl
def astromodal_register_modalities(register: Any) -> None:
    from .modality import WISEPhotometry

    register(WISEPhotometry)


@hookimpl
def astromodal_register_codecs(register: Any) -> None:
    from .codec import WISECodec

    register(WISECodec)


@hookimpl
def astromodal_register_token_keys(register: Any) -> None:
    from .modality import wise_token_key

    register(wise_token_key())


@hookimpl
def astromodal_register_tokenizers(register: Any) -> None:
    from .tokenizer import WISETokenizer

    register("wise", WISETokenizer)


@hookimpl(optionalhook=True)  # the demo plugin's hook: this plugin loads without it
def astromodal_register_demo_columns(register: Any) -> None:
    from .demo import DEMO_COLUMNS

    register(DEMO_COLUMNS)
