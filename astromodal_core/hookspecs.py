"""Every hook a plugin can implement. Markers are named after the project."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("astromodal")
hookimpl = pluggy.HookimplMarker("astromodal")


@hookspec
def astromodal_register_modalities(register: Callable[[type], None]) -> None:
    """Register Modality subclasses: ``register(ModalityClass)``."""


@hookspec
def astromodal_register_codecs(register: Callable[[type], None]) -> None:
    """Register Codec subclasses: ``register(CodecClass)``; each names the modalities it handles."""


@hookspec
def astromodal_register_token_keys(register: Callable[[Any], None]) -> None:
    """Register the token streams a plugin contributes: ``register(TokenKey(...))``."""


@hookspec
def astromodal_register_tokenizers(register: Callable[[str, type], None]) -> None:
    """Register tokenizer classes by config section name: ``register("scalar", ScalarTokenizer)``."""


@hookspec
def astromodal_register_commands(cli: Any) -> None:
    """Add subcommands to the ``astromodal`` click group: ``@cli.command() def train(): ...``."""


@hookspec
def astromodal_register_demo_columns(register: Callable[[Any], None]) -> None:
    """Add survey columns to the demo datacube: ``register(DemoColumns(name, make))``."""
