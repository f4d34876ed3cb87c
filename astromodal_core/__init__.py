"""astromodal core: registry, codec contract, safe serialization and token store."""

from __future__ import annotations

__version__ = "0.1.0"

from .codec import Codec
from .config import Config, load_config
from .errors import (
    AstromodalError,
    CodecFormatError,
    ConfigError,
    DataError,
    DuplicateRegistrationError,
    ModalityTypeError,
    NotFittedError,
    PluginLoadError,
    RegistrationError,
    TokenKeyError,
)
from .hookspecs import hookimpl
from .manager import CodecManager
from .modality import Modality, TokenKey, array_field
from .registry import get_registry, register_plugin, unregister
from .tokenizer import Tokenizer
from .tokenizer_set import TokenizerSet

__all__ = [
    "AstromodalError",
    "Codec",
    "CodecFormatError",
    "CodecManager",
    "Config",
    "ConfigError",
    "DataError",
    "DuplicateRegistrationError",
    "Modality",
    "ModalityTypeError",
    "NotFittedError",
    "PluginLoadError",
    "RegistrationError",
    "TokenKey",
    "TokenKeyError",
    "Tokenizer",
    "TokenizerSet",
    "__version__",
    "array_field",
    "get_registry",
    "hookimpl",
    "load_config",
    "register_plugin",
    "unregister",
]
