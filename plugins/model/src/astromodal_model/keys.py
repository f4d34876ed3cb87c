"""Which token keys a model is built for, and checks that saved keys still match."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from astromodal_core.modality import TokenKey

from .errors import IncompatibleKeyError

KeySpec = None | Iterable[str | TokenKey] | Mapping[str, TokenKey]
_COMPARED = ("vocab_size", "layout", "max_length", "mask_token", "shape")


def resolve_token_keys(token_keys: KeySpec = None) -> dict[str, TokenKey]:
    """Token keys by name: every registered key (None), or names / TokenKey records.

    Names are looked up in the registry (an unknown name raises ``TokenKeyError`` naming it);
    TokenKey records (for example ``store_metadata(path)["token_keys"]``) are used as given.
    """
    from astromodal_core import get_registry

    if token_keys is None:
        keys = get_registry().token_keys()
    elif isinstance(token_keys, Mapping):
        keys = {}
        for name, k in token_keys.items():
            keys[name] = k if isinstance(k, TokenKey) else get_registry().token_key(name)
    else:
        keys = {}
        for k in token_keys:
            key = k if isinstance(k, TokenKey) else get_registry().token_key(str(k))
            if key.name in keys:
                raise ValueError(f"token key {key.name!r} given twice")
            keys[key.name] = key
    if not keys:
        raise IncompatibleKeyError(
            "no token keys: install a plugin that registers token keys, or pass token_keys="
        )
    return dict(keys)


def key_length(key: TokenKey) -> int:
    """Number of positions the model reserves for a key (1 for scalars)."""
    return 1 if key.layout == "scalar" else int(key.max_length)


def check_keys_match(
    recorded: Mapping[str, TokenKey],
    available: Mapping[str, TokenKey],
    *,
    where: str,
    recorded_fingerprints: Mapping[str, str] | None = None,
    fingerprints: Mapping[str, str] | None = None,
) -> None:
    """Raise :class:`IncompatibleKeyError` naming the first key that differs or is missing."""
    for name, key in recorded.items():
        if name not in available:
            raise IncompatibleKeyError(
                f"token key {name!r}: the model was built for it but {where} has no such key "
                "(is the plugin that registers it installed?)"
            )
        other = available[name]
        for attr in _COMPARED:
            a, b = getattr(key, attr), getattr(other, attr)
            if a != b:
                raise IncompatibleKeyError(
                    f"token key {name!r}: the model has {attr}={a!r} but {where} has {attr}={b!r}"
                )
    if recorded_fingerprints and fingerprints:
        for name, fp in recorded_fingerprints.items():
            if name in fingerprints and fingerprints[name] != fp:
                what = f"token key {name!r}" if name in recorded else f"codec {name!r}"
                raise IncompatibleKeyError(
                    f"{what}: the model was trained on tokens from codec fingerprint "
                    f"{fp!r} but {where} has {fingerprints[name]!r}"
                )


def keys_to_json(keys: Mapping[str, TokenKey]) -> dict[str, Any]:
    return {name: k.as_dict() for name, k in keys.items()}


def keys_from_json(d: Mapping[str, Any]) -> dict[str, TokenKey]:
    return {name: TokenKey.from_dict(dict(v)) for name, v in d.items()}
