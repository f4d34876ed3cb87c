"""Exception types a user can catch. Every message names the file, column, row, key or plugin."""

from __future__ import annotations


class AstromodalError(Exception):
    """Base class of every error raised by astromodal."""


class DataError(AstromodalError, ValueError):
    """Input data is unusable: a missing column, a wrong type, ragged lengths, an empty file."""


class CodecFormatError(AstromodalError, ValueError):
    """A saved tokenizer, codec or model file cannot be read safely."""


class NotFittedError(AstromodalError, RuntimeError):
    """A codec or tokenizer was used before `train` / `fit` or `load`."""


class ConfigError(AstromodalError, ValueError):
    """A configuration file holds a value of the wrong type; the message gives the key path."""


class RegistryError(AstromodalError):
    """Base class of the plugin registry's errors."""


class PluginLoadError(RegistryError):
    """A plugin distribution could not be imported or validated."""

    def __init__(self, plugin: str, cause: BaseException | str):
        self.plugin = plugin
        self.cause = cause
        detail = cause if isinstance(cause, str) else f"{type(cause).__name__}: {cause}"
        self.detail = detail
        super().__init__(f"plugin {plugin!r} failed to load: {detail}")


class DuplicateRegistrationError(RegistryError):
    """Two plugins claim the same name (token key, modality, tokenizer)."""


class RegistrationError(RegistryError, TypeError):
    """A plugin registered something invalid (a codec for an unregistered modality, a non-class)."""


class ModalityTypeError(AstromodalError, TypeError):
    """No codec handles this modality, or an object is not a modality."""


class TokenKeyError(AstromodalError, KeyError):
    """A token key is unknown, or absent from a token dict."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""
