"""The Codec base class: the contract every codec keeps (see docs/plugin-authoring.md)."""

from __future__ import annotations

import abc
import os
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from .errors import NotFittedError
from .modality import Modality, TokenKey

Tokens = Mapping[str, Any]


class Codec(abc.ABC):
    """Turns one modality into the tokens of its token key(s) and back.

    Subclasses set ``modalities`` (the Modality classes handled) and implement ``train``,
    ``encode``, ``decode``, ``save``, ``load``, ``token_keys``, ``is_fitted`` and
    ``_state`` (the config and arrays the fingerprint is computed from).

    - ``encode(modality)`` returns ``{token_key: array}``: integer tokens in
      ``[0, vocab_size)``, uint16 when the vocabulary fits, first axis = rows; a ragged key
      returns ``(flat, indptr)``. Missing values are the key's ``mask_token``.
    - ``decode(tokens, **metadata)`` returns a modality in physical units.
    - ``save(path)`` / ``load(path)`` never pickle (use :mod:`astromodal_core.serialize`).
    """

    modalities: ClassVar[tuple[type[Modality], ...]] = ()

    @abc.abstractmethod
    def train(self, sources: Any, **kwargs: Any) -> Codec:
        """Fit on parquet paths, pyarrow tables or arrays; return self."""

    @abc.abstractmethod
    def encode(self, modality: Modality) -> dict[str, Any]:
        """Tokens of one modality batch: ``{token_key: array}``."""

    @abc.abstractmethod
    def decode(self, tokens: Tokens, **metadata: Any) -> Modality:
        """A modality rebuilt from tokens."""

    @abc.abstractmethod
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the fitted state without pickle, atomically."""

    @classmethod
    @abc.abstractmethod
    def load(cls, path: str | os.PathLike[str], **kwargs: Any) -> Codec:
        """Read a state written by :meth:`save`."""

    @property
    @abc.abstractmethod
    def token_keys(self) -> tuple[TokenKey, ...]:
        """The token keys this codec writes."""

    @property
    @abc.abstractmethod
    def is_fitted(self) -> bool:
        """True once trained or loaded."""

    @abc.abstractmethod
    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """``(config, arrays)`` of the fitted state, for the fingerprint."""

    @property
    def fingerprint(self) -> str:
        """A short hash of the fitted state: equal states give equal fingerprints."""
        from .serialize import fingerprint

        self.check_fitted()
        config, arrays = self._state()
        return fingerprint(config, arrays)

    def check_fitted(self) -> None:
        """Raise :class:`NotFittedError` unless fitted."""
        if not self.is_fitted:
            raise NotFittedError(
                f"{type(self).__name__} is not fitted: call train(...) or load(...) first"
            )

    def accepts(self, modality: Modality) -> bool:
        """True if this codec encodes this instance (e.g. the band or group it was fitted on).

        :class:`~astromodal_core.manager.CodecManager` asks every codec handling the
        modality's class, in order; override when several fitted codecs share a class.
        """
        return True

    def accepts_metadata(self, metadata: Mapping[str, Any]) -> bool:
        """True if this codec decodes with ``metadata`` (the keyword arguments of ``decode``)."""
        return True

    def handles(self, modality: Modality | type[Modality]) -> bool:
        """True if this codec encodes the modality (walking its class hierarchy)."""
        cls = modality if isinstance(modality, type) else type(modality)
        return any(issubclass(cls, m) for m in self.modalities)
