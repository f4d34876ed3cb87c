"""Which token keys a model is built for, and the checks of a model against the tokens it meets.

Two checks, run whenever a model meets a token store, a fitted tokenizer set or a tokenizer:

- :func:`check_keys_match`: the key records (vocab size, layout, length, mask token, shape)
  must agree; a model cannot take ids from another vocabulary, so this is always an error.
- :func:`check_fingerprints`: the fingerprint of the tokenizer that made each key's tokens must
  be the one the model was trained on. A retrained tokenizer with the same vocabulary gives ids
  that mean something else; this is an error unless the caller allows it explicitly
  (``allow_mismatch=True``, CLI ``--allow-fingerprint-mismatch``), which warns naming the keys.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

from astromodal_core.modality import TokenKey

from .errors import IncompatibleKeyError

KeySpec = None | Iterable[str | TokenKey] | Mapping[str, TokenKey]
_COMPARED = ("vocab_size", "layout", "max_length", "mask_token", "shape")
_FINGERPRINT = re.compile(r"^[0-9a-f]{16}$")
ALLOW_HINT = "pass allow_mismatch=True (CLI: --allow-fingerprint-mismatch) to use them anyway"


class FingerprintMismatchWarning(UserWarning):
    """A model is used, explicitly allowed, on tokens from another fitted tokenizer."""


def resolve_token_keys(token_keys: KeySpec = None) -> dict[str, TokenKey]:
    """Token keys by name: every registered key (None), or names / TokenKey records.

    Names are looked up in the registry (an unknown name raises ``TokenKeyError`` naming it);
    TokenKey records (for example ``store_metadata(path)["token_keys"]``) are used as given.
    Registered keys carry a plugin's *default* vocabulary: build a model from the fitted state
    with :meth:`AstroModel.from_tokenizer_set` or :meth:`AstroModel.from_store` instead.
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


def select_keys(keys: Mapping[str, TokenKey], names: Iterable[str | TokenKey] | None, where: str) -> dict[str, TokenKey]:
    """``keys`` narrowed to ``names`` (in that order); an unknown name raises naming ``where``."""
    if names is None:
        return dict(keys)
    out: dict[str, TokenKey] = {}
    for n in names:
        name = getattr(n, "name", n)
        if name not in keys:
            raise IncompatibleKeyError(f"token key {name!r}: {where} has no such key; it has {sorted(keys)}")
        if name in out:
            raise ValueError(f"token key {name!r} given twice")
        out[name] = keys[name]
    if not out:
        raise IncompatibleKeyError(f"no token keys selected from {where}")
    return out


def key_length(key: TokenKey) -> int:
    """Number of positions the model reserves for a key (1 for scalars)."""
    return 1 if key.layout == "scalar" else int(key.max_length)


def tokenizer_fingerprints(value: Any) -> dict[str, str]:
    """``{tokenizer name: fingerprint}`` from a store's ``tokenizers`` record.

    Entries whose value is not a 16-hex fingerprint (older stores recorded import paths there)
    are unknown and left out; nothing in them is ever imported.
    """
    if not isinstance(value, Mapping):
        return {}
    return {str(k): v for k, v in value.items() if isinstance(v, str) and _FINGERPRINT.match(v)}


def check_keys_match(
    recorded: Mapping[str, TokenKey],
    available: Mapping[str, TokenKey],
    *,
    where: str,
    require_all: bool = True,
) -> None:
    """Raise :class:`IncompatibleKeyError` naming the first key whose record differs.

    ``require_all``: every recorded key must be in ``available`` (else only shared keys are
    compared).
    """
    for name, key in recorded.items():
        if name not in available:
            if not require_all:
                continue
            raise IncompatibleKeyError(
                f"token key {name!r}: the model was built for it but {where} has no such key"
            )
        other = available[name]
        for attr in _COMPARED:
            a, b = getattr(key, attr), getattr(other, attr)
            if a != b:
                raise IncompatibleKeyError(
                    f"token key {name!r}: the model has {attr}={a!r} but {where} has {attr}={b!r}"
                )


def _fp(value: str | None) -> str:
    return "none recorded" if value is None else str(value)


def fingerprint_mismatches(
    recorded: Mapping[str, str], given: Mapping[str, str], keys: Iterable[str]
) -> list[tuple[str, str | None, str | None]]:
    """``(key, recorded, given)`` for every key in ``keys`` whose fingerprints differ.

    A fingerprint recorded on one side only counts as a difference (tokens of unknown origin).
    """
    return [(k, recorded.get(k), given.get(k)) for k in keys if recorded.get(k) != given.get(k)]


def check_fingerprints(
    recorded: Mapping[str, str],
    given: Mapping[str, str],
    keys: Iterable[str],
    *,
    where: str,
    allow_mismatch: bool = False,
    what: str = "token key",
) -> list[str]:
    """Compare the model's recorded fingerprints with ``given`` over ``keys``.

    A difference raises :class:`IncompatibleKeyError` naming the key and both fingerprints
    (the model's, then ``where``'s); with ``allow_mismatch`` it warns
    (:class:`FingerprintMismatchWarning`, naming the keys) instead. Returns the keys that differ.
    """
    bad = fingerprint_mismatches(recorded, given, keys)
    if not bad:
        return []
    name, a, b = bad[0]
    more = f" (and {len(bad) - 1} more: {', '.join(k for k, _, _ in bad[1:])})" if len(bad) > 1 else ""
    if allow_mismatch:
        warnings.warn(
            f"tokenizer fingerprints differ, used anyway as allowed: {what}s "
            f"{', '.join(repr(k) for k, _, _ in bad)} (model {_fp(a)}, {_fp(b)} in {where} for {name!r})",
            FingerprintMismatchWarning, stacklevel=3,
        )
        return [k for k, _, _ in bad]
    raise IncompatibleKeyError(
        f"{what} {name!r}: tokenizer fingerprint {_fp(a)} recorded by the model, {_fp(b)} in "
        f"{where}{more}: the tokens come from another fitted tokenizer; re-encode with the "
        f"model's tokenizers or retrain the model, or {ALLOW_HINT}"
    )


def keys_to_json(keys: Mapping[str, TokenKey]) -> dict[str, Any]:
    return {name: k.as_dict() for name, k in keys.items()}


def keys_from_json(d: Mapping[str, Any]) -> dict[str, TokenKey]:
    return {name: TokenKey.from_dict(dict(v)) for name, v in d.items()}
