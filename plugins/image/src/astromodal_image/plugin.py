"""Hook implementations of astromodal-image (torch is imported only inside the hooks' callees)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from astromodal_core import hookimpl


@hookimpl
def astromodal_register_modalities(register: Callable[[type], None]) -> None:
    from .modality import ImageCutout

    register(ImageCutout)


@hookimpl
def astromodal_register_codecs(register: Callable[[type], None]) -> None:
    from .codec import ImageCodec

    register(ImageCodec)


@hookimpl
def astromodal_register_token_keys(register: Callable[[Any], None]) -> None:
    from .modality import (
        DEFAULT_CHANNELS,
        DEFAULT_CODEBOOK_SIZE,
        DEFAULT_CUTOUT_SIZE,
        SPLUS_TOKEN_KEY,
        image_token_key,
    )

    side = DEFAULT_CUTOUT_SIZE // 2 ** len(DEFAULT_CHANNELS)
    register(
        image_token_key(
            SPLUS_TOKEN_KEY,
            codebook_size=DEFAULT_CODEBOOK_SIZE,
            grid=(side, side),
            description=f"S-PLUS 12-band cutouts, {DEFAULT_CODEBOOK_SIZE} codes on a "
            f"{side}x{side} grid; {DEFAULT_CODEBOOK_SIZE} = no data",
        )
    )


@hookimpl
def astromodal_register_tokenizers(register: Callable[[str, type], None]) -> None:
    from .tokenizer import ImageTokenizer

    register("image", ImageTokenizer)


@hookimpl
def astromodal_register_commands(cli: Any) -> None:
    from .cli import image_train

    cli.add_command(image_train)


@hookimpl(optionalhook=True)  # the demo plugin's hook: this plugin loads without it
def astromodal_register_demo_columns(register: Callable[[Any], None]) -> None:
    """This survey's columns for the demo datacube (see ``demo.py``)."""
    from .demo import DEMO_COLUMNS

    register(DEMO_COLUMNS)
