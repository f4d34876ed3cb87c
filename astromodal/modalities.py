"""``from astromodal.modalities import DESISpectrum``: modality classes from installed plugins."""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name.startswith("__"):
        raise AttributeError(name)
    from astromodal_core.registry import get_registry

    reg = get_registry()
    for entry in reg.modalities.values():
        if entry.obj.__name__ == name or entry.name == name:
            return entry.obj
    raise AttributeError(
        f"astromodal.modalities has no {name!r}; registered: {sorted(reg.modalities)}"
    )
