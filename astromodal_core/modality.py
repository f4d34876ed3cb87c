"""The Modality base class and the TokenKey record."""

from __future__ import annotations

import re
from typing import Any, ClassVar, Literal

import attrs
import numpy as np

Layout = Literal["scalar", "sequence", "ragged", "grid"]
LAYOUTS: tuple[str, ...] = ("scalar", "sequence", "ragged", "grid")
TOKEN_KEY_PATTERN = re.compile(r"^tok_[a-z0-9_]+$")


def _check_name(instance: Any, attribute: attrs.Attribute, value: str) -> None:
    if not isinstance(value, str) or not TOKEN_KEY_PATTERN.match(value):
        raise ValueError(f"token key name {value!r} must match 'tok_[a-z0-9_]+'")


def _shape(value: Any) -> tuple[int, ...] | None:
    return None if value is None else tuple(int(v) for v in value)


@attrs.frozen
class TokenKey:
    """One token stream: its name, vocabulary and layout.

    ``mask_token`` is the reserved id meaning "no value here" (a missing magnitude, a masked
    pixel); it lies inside ``[0, vocab_size)`` and a model never embeds it as a real token.
    ``max_length`` is the longest sequence (1 for scalars, H*W for grids). ``shape`` is the
    grid shape (H, W) for ``layout="grid"``. ``ordinal`` says the ids are ordered like the
    values they stand for (quantile bins: id 5 lies between ids 4 and 6), so a model may share
    strength between neighbouring ids; codebook ids (k-means, VQ) are not ordinal.
    """

    name: str = attrs.field(validator=_check_name)
    vocab_size: int = attrs.field(converter=int)
    layout: str = attrs.field(default="scalar", validator=attrs.validators.in_(LAYOUTS))
    max_length: int = attrs.field(default=1, converter=int)
    modality: str = attrs.field(default="")
    description: str = attrs.field(default="")
    mask_token: int | None = attrs.field(default=None)
    shape: tuple[int, ...] | None = attrs.field(default=None, converter=_shape)
    ordinal: bool = attrs.field(default=False, validator=attrs.validators.instance_of(bool))

    @vocab_size.validator
    def _check_vocab(self, attribute: attrs.Attribute, value: int) -> None:
        if value < 1:
            raise ValueError(f"token key {self.name!r}: vocab_size must be >= 1, got {value}")

    @max_length.validator
    def _check_length(self, attribute: attrs.Attribute, value: int) -> None:
        if value < 1:
            raise ValueError(f"token key {self.name!r}: max_length must be >= 1, got {value}")
        if self.layout == "scalar" and value != 1:
            raise ValueError(f"token key {self.name!r}: a scalar key has max_length 1")

    @mask_token.validator
    def _check_mask(self, attribute: attrs.Attribute, value: int | None) -> None:
        if value is not None and not 0 <= value < self.vocab_size:
            raise ValueError(
                f"token key {self.name!r}: mask_token {value} outside [0, {self.vocab_size})"
            )

    @shape.validator
    def _check_shape(self, attribute: attrs.Attribute, value: tuple[int, ...] | None) -> None:
        if self.layout == "grid":
            if value is None or len(value) != 2:
                raise ValueError(f"token key {self.name!r}: a grid key needs shape=(H, W)")
            if value[0] * value[1] != self.max_length:
                raise ValueError(
                    f"token key {self.name!r}: shape {value} does not hold max_length "
                    f"{self.max_length} tokens"
                )

    @property
    def dtype(self) -> np.dtype:
        """The smallest unsigned dtype that holds every token id."""
        return np.dtype(np.uint16) if self.vocab_size <= 65536 else np.dtype(np.uint32)

    def as_dict(self) -> dict[str, Any]:
        d = attrs.asdict(self)
        d["shape"] = list(self.shape) if self.shape is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TokenKey:
        return cls(**d)


def as_array(value: Any) -> Any:
    """Accept numpy arrays, torch tensors, lists and scalars; keep tensors as tensors."""
    if type(value).__module__.startswith("torch"):
        return value
    return np.asarray(value)


def to_numpy(value: Any) -> np.ndarray:
    """A numpy view of a numpy array or a (CPU or CUDA) torch tensor."""
    if type(value).__module__.startswith("torch"):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def as_optional_array(value: Any) -> Any:
    """Like :func:`as_array`, but ``None`` stays ``None``."""
    return None if value is None else as_array(value)


def array_field(*, optional: bool = False, **kwargs: Any) -> Any:
    """An attrs field holding a numpy array or a torch tensor (or None when ``optional``)."""
    if optional:
        kwargs.setdefault("default", None)
        return attrs.field(converter=as_optional_array, **kwargs)
    return attrs.field(converter=as_array, **kwargs)


@attrs.define(kw_only=True, eq=False)
class Modality:
    """Base class of every modality: a batch of one kind of measurement.

    Subclasses are attrs classes (``@attrs.define(kw_only=True, eq=False)``) whose array fields
    use :func:`array_field`. ``token_key`` names the token stream the modality's codec writes
    (a class attribute, as in AION; a subclass may make it a property when it depends on the
    instance, for example a band). ``name`` is the registry name (the class name by default).
    """

    token_key: ClassVar[str] = ""
    name: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" not in cls.__dict__:
            cls.name = cls.__name__

    def as_dict(self) -> dict[str, Any]:
        """The modality's fields as a dict (arrays are not copied)."""
        return {f.name: getattr(self, f.name) for f in attrs.fields(type(self))}

    def __len__(self) -> int:
        for f in attrs.fields(type(self)):
            v = getattr(self, f.name)
            shape = getattr(v, "shape", None)
            if shape:
                return int(shape[0])
        raise TypeError(f"{type(self).__name__} holds no array to take a length from")
