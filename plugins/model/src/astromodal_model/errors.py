"""Errors raised by the model plugin (subclasses of the core's, so callers can catch those)."""

from __future__ import annotations

from astromodal_core.errors import DataError, TokenKeyError


class UnknownTokenKeyError(DataError, TokenKeyError):
    """An input or target names a token key the model was not built for."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class IncompatibleKeyError(TokenKeyError):
    """A saved model and the registry (or a token store) disagree about a token key."""
