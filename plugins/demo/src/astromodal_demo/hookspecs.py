"""The hook the demo plugin adds (through ``astromodal_add_hookspecs``).

A survey plugin implements it as ``@hookimpl(optionalhook=True)``, so that it still loads when
the demo plugin is not installed; the demo collects the registrations with
:func:`astromodal_demo.datacube.installed_contributions`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from astromodal_core.hookspecs import hookspec

DEMO_COLUMNS_HOOK = "astromodal_register_demo_columns"


@hookspec
def astromodal_register_demo_columns(register: Callable[[Any], None]) -> None:
    """Add survey columns to the demo datacube: ``register(DemoColumns(name, make))``
    (``DemoColumns`` from ``astromodal_demo.sky``)."""
