"""``from astromodal.tokenizers import ScalarTokenizer``: tokenizers come from installed plugins.

The names resolve through the registry (``astromodal_register_tokenizers``), so the core
imports no plugin: ``ScalarTokenizer`` exists when astromodal-splus is installed.
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name.startswith("__"):
        raise AttributeError(name)
    from astromodal_core.registry import get_registry

    reg = get_registry()
    for entry in reg.tokenizers.values():
        if entry.obj.__name__ == name:
            return entry.obj
    available = sorted(e.obj.__name__ for e in reg.tokenizers.values())
    raise AttributeError(
        f"astromodal.tokenizers has no {name!r}: no installed plugin registers it "
        f"(available: {available}; install the plugin that provides it)"
    )


def __dir__() -> list[str]:
    from astromodal_core.registry import get_registry

    return sorted(e.obj.__name__ for e in get_registry().tokenizers.values())
