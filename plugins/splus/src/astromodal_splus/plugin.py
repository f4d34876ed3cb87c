"""Hook implementations of astromodal-splus (registered through the ``astromodal`` entry point)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from astromodal_core import hookimpl


@hookimpl
def astromodal_register_modalities(register: Callable[[type], None]) -> None:
    from .modalities import CatalogScalar, GaiaAstrometry, Redshift, SplusMagnitude

    for cls in (SplusMagnitude, GaiaAstrometry, Redshift, CatalogScalar):
        register(cls)


@hookimpl
def astromodal_register_codecs(register: Callable[[type], None]) -> None:
    from .codecs import AstrometryCodec, CatalogScalarCodec, MagnitudeCodec, RedshiftCodec

    for cls in (MagnitudeCodec, AstrometryCodec, RedshiftCodec, CatalogScalarCodec):
        register(cls)


@hookimpl
def astromodal_register_token_keys(register: Callable[[Any], None]) -> None:
    from .tokenizer import ScalarTokenizer

    for key in ScalarTokenizer().token_keys:
        register(key)


@hookimpl
def astromodal_register_tokenizers(register: Callable[[str, type], None]) -> None:
    from .tokenizer import ScalarTokenizer

    register("scalar", ScalarTokenizer)


@hookimpl(optionalhook=True)  # the demo plugin's hook: this plugin loads without it
def astromodal_register_demo_columns(register: Callable[[Any], None]) -> None:
    """This survey's columns for the demo datacube (see ``demo.py``)."""
    from .demo import DEMO_COLUMNS

    register(DEMO_COLUMNS)
