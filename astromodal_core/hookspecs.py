"""Every hook of the core. Markers are named after the project.

A plugin adds hooks of its own through ``astromodal_add_hookspecs`` with these same markers
(as the demo plugin does for ``astromodal_register_demo_columns``).
"""

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
def astromodal_register_sources(register: Callable[[Any], None]) -> None:
    """Register kinds of data source: ``register(SourceKind("csv", open=CsvSource,
    suffixes=(".csv",)))`` (see :mod:`astromodal_core.sources`); every tokenizer then reads them."""


@hookspec
def astromodal_register_commands(cli: Any) -> None:
    """Add subcommands to the ``astromodal`` click group: ``@cli.command() def train(): ...``."""


@hookspec
def astromodal_add_hookspecs(pluginmanager: pluggy.PluginManager) -> None:
    """Add a plugin's own hookspecs: ``pluginmanager.add_hookspecs(my_hookspecs)``.

    Called once for each plugin that implements it, before the other plugins are registered,
    so their implementations of the new hooks are checked against the specs. A plugin that
    implements another plugin's hook marks it ``@hookimpl(optionalhook=True)``, so that it
    still loads when that plugin is not installed.
    """
