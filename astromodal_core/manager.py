"""CodecManager: encode modalities to tokens and decode tokens back, as in AION."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from .codec import Codec
from .errors import ModalityTypeError, TokenKeyError
from .modality import Modality


class CodecManager:
    """Encode any mix of modalities with fitted codecs and decode tokens back.

    ``codecs`` are fitted codec instances (or tokenizers exposing ``codecs()``); the
    manager picks, for each modality, the codec whose class handles it, walking the
    modality's class hierarchy. ``device="cpu"`` returns torch tensors on that device
    when torch is installed, numpy arrays otherwise (``device=None``).
    """

    def __init__(self, device: str | None = "cpu", codecs: Iterable[Any] = ()):
        self.device = device
        self._codecs: list[Codec] = []
        for c in codecs:
            self.add(c)

    def add(self, codec: Any) -> None:
        """Add a fitted codec, or every codec of a fitted tokenizer."""
        if hasattr(codec, "codecs") and not isinstance(codec, Codec):
            for c in codec.codecs():
                self.add(c)
            return
        if not isinstance(codec, Codec):
            raise TypeError(f"{codec!r} is not a Codec")
        codec.check_fitted()
        self._codecs.append(codec)

    @classmethod
    def from_files(cls, *paths: str | os.PathLike[str], device: str | None = "cpu") -> CodecManager:
        """Load saved tokenizers (each ``*_config.npz``) through the registry."""
        from .registry import get_registry
        from .serialize import load_npz

        reg = get_registry()
        manager = cls(device=device)
        for p in paths:
            config, _, _ = load_npz(p)
            tok_cls = reg.tokenizer(config["tokenizer"])
            manager.add(tok_cls.load(p))
        return manager

    @property
    def codecs(self) -> tuple[Codec, ...]:
        return tuple(self._codecs)

    def codec_for(self, modality: Modality | type[Modality]) -> Codec:
        """The fitted codec for a modality instance or class."""
        cls = modality if isinstance(modality, type) else type(modality)
        if not (isinstance(cls, type) and issubclass(cls, Modality)):
            raise ModalityTypeError(f"{modality!r} is not a Modality")
        instance = None if isinstance(modality, type) else modality
        for base in cls.__mro__:
            for c in self._codecs:
                if base in c.modalities and (instance is None or c.accepts(instance)):
                    return c
        raise ModalityTypeError(
            f"no fitted codec handles modality {cls.__name__!r}; "
            f"loaded: {[type(c).__name__ for c in self._codecs]}"
        )

    def encode(self, *modalities: Modality) -> dict[str, Any]:
        """``{token_key: tokens}`` for every modality given."""
        out: dict[str, Any] = {}
        for m in modalities:
            for key, value in self.codec_for(m).encode(m).items():
                if key in out:
                    raise TokenKeyError(f"two modalities produced token key {key!r}")
                out[key] = self._to_device(value)
        return out

    def decode(self, tokens: Mapping[str, Any], modality_class: type[Modality], **metadata: Any) -> Modality:
        """Rebuild a modality of ``modality_class`` from ``tokens``.

        Among the codecs handling the class, the one whose token keys are in ``tokens`` (and
        whose ``accepts_metadata`` takes ``metadata``) decodes.
        """
        handling = [
            c for c in self._codecs
            if c.handles(modality_class)
            and c.accepts_metadata(metadata)
        ]
        if not handling:
            raise ModalityTypeError(
                f"no fitted codec decodes modality {modality_class.__name__!r} with "
                f"metadata {sorted(metadata)}; loaded: {[type(c).__name__ for c in self._codecs]}"
            )
        usable = [c for c in handling if any(k.name in tokens for k in c.token_keys)]
        if not usable:
            needed = sorted({k.name for c in handling for k in c.token_keys})
            raise TokenKeyError(
                f"decoding {modality_class.__name__} needs one of the token keys {needed}; "
                f"got {sorted(tokens)}"
            )
        if len(usable) > 1:
            raise TokenKeyError(
                f"tokens {sorted(tokens)} match several codecs for {modality_class.__name__} "
                f"({[type(c).__name__ for c in usable]}); pass only one modality's keys"
            )
        codec = usable[0]
        numpy_tokens = {k.name: _to_numpy(tokens[k.name]) for k in codec.token_keys if k.name in tokens}
        return codec.decode(numpy_tokens, **metadata)

    def _to_device(self, value: Any) -> Any:
        if self.device is None:
            return value
        try:
            import torch
        except ImportError:
            return value
        if isinstance(value, tuple):
            return tuple(self._to_device(v) for v in value)
        arr = np.asarray(value)
        if arr.dtype in (np.uint16, np.uint32):
            arr = arr.astype(np.int64)
        return torch.as_tensor(arr, device=self.device)


def _to_numpy(value: Any) -> Any:
    if isinstance(value, tuple):
        return tuple(_to_numpy(v) for v in value)
    if type(value).__module__.startswith("torch"):
        return value.detach().cpu().numpy()
    return np.asarray(value)
