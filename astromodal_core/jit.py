"""numba's ``njit`` with an on-disk cache only where a cache can be written.

``numba.njit(cache=True)`` fails at import when neither the package's ``__pycache__`` nor the
user's cache directory is writable (a shared cluster install with a read-only home). This
decorator then compiles without a cache, so the plugin still loads (it only compiles anew
in each process).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def njit(**options: Any) -> Callable[[Callable[..., Any]], Any]:
    """``numba.njit(**options)``, falling back to ``cache=False`` when no cache is writable."""
    import numba

    def decorate(fn: Callable[..., Any]) -> Any:
        if not options.get("cache"):
            return numba.njit(**options)(fn)
        try:
            return numba.njit(**options)(fn)
        except RuntimeError as exc:  # "cannot cache function ...: no locator available"
            if "cache" not in str(exc):
                raise
            return numba.njit(**{**options, "cache": False})(fn)

    return decorate
