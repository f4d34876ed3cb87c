"""Token ids -> physical values, for predictions with a mean, a spread and a median.

The values of a key are a float64 array indexed by token id: NaN at the mask token and at ids
that are not real bins (e.g. a quantile tokenizer that fitted fewer bins than its vocabulary
holds); such ids get probability zero and the rest is renormalised. They come from:

1. a fitted tokenizer: ``tokenizer.token_values(key)`` (the base contract,
   :meth:`astromodal_core.tokenizer.Tokenizer.token_values`);
2. a fitted tokenizer set (:class:`~astromodal_core.tokenizer_set.TokenizerSet`): the
   ``token_values`` of the member that writes the key;
3. an explicit 1-D array (or list) indexed by token id, at least one value per real id;
4. a mapping ``{token key name: such an array}``.

Infinite values are an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from astromodal_core.errors import DataError, TokenKeyError
from astromodal_core.modality import TokenKey


def _n_real(key: TokenKey) -> int:
    return key.vocab_size - 1 if key.mask_token == key.vocab_size - 1 else key.vocab_size


def _is_set(source: Any) -> bool:
    from astromodal_core.tokenizer_set import TokenizerSet

    return isinstance(source, TokenizerSet)


def values_source_fingerprint(source: Any, key: str) -> str | None:
    """The fingerprint of the tokenizer ``source`` takes ``key``'s values from (None for
    explicit arrays and mappings)."""
    if _is_set(source):
        return source.key_fingerprints().get(key)
    fp = getattr(source, "fingerprint", None) if hasattr(source, "token_values") else None
    return fp if isinstance(fp, str) else None


def _from_tokenizer(tokenizer: Any, key: TokenKey) -> np.ndarray:
    name = type(tokenizer).__name__
    if not callable(getattr(tokenizer, "token_values", None)):
        raise DataError(f"token key {key.name!r}: {name} gives no physical values (no token_values method)")
    try:
        values = np.asarray(tokenizer.token_values(key.name), dtype=np.float64)
    except TokenKeyError as exc:
        raise DataError(f"token key {key.name!r}: no physical values: {exc}") from exc
    if values.shape not in ((key.vocab_size,), (_n_real(key),)):
        raise DataError(
            f"token key {key.name!r}: {name}.token_values gives shape {values.shape}, the key has "
            f"vocab_size {key.vocab_size} (a tokenizer other than the one that made the tokens?)"
        )
    return values


def token_values(codec: Any, key: TokenKey) -> np.ndarray:
    """A float64 array (vocab_size,) of per-token values from ``codec`` (a fitted tokenizer,
    a tokenizer set, an array or a ``{key: array}`` mapping); NaN at the mask token and at
    ids that are not real bins."""
    n = _n_real(key)
    source: Any = codec
    if _is_set(source):
        source = source.load(source.owner(key.name))
    if isinstance(source, Mapping):
        if key.name not in source:
            raise DataError(f"no bin values for token key {key.name!r}; given {sorted(source)}")
        source = source[key.name]
    elif not isinstance(source, (np.ndarray, list, tuple)):
        source = _from_tokenizer(source, key)
    try:
        values = np.asarray(source, dtype=np.float64).ravel()
    except (TypeError, ValueError) as exc:
        raise DataError(f"token key {key.name!r}: bin values are not numbers ({exc})") from exc
    if values.size < n:
        raise DataError(
            f"token key {key.name!r}: {values.size} bin values for {n} real token ids"
        )
    out = np.full(key.vocab_size, np.nan)
    out[:n] = values[:n]
    if np.isinf(out[:n]).any():
        bad = int(np.flatnonzero(np.isinf(out[:n]))[0])
        raise DataError(f"token key {key.name!r}: bin value of token {bad} is not finite")
    if np.isnan(out[:n]).all():
        raise DataError(f"token key {key.name!r}: no token id has a bin value (all NaN)")
    return out


def restrict_probs(probs: np.ndarray, values: np.ndarray, key: TokenKey) -> np.ndarray:
    """``probs`` (..., vocab) as float64 with the mask token and NaN-valued ids set to zero,
    renormalised over the remaining ids (a row with no mass left stays all zero)."""
    p = np.array(probs, dtype=np.float64)
    p[..., ~np.isfinite(values)] = 0.0
    if key.mask_token is not None:
        p[..., key.mask_token] = 0.0
    total = p.sum(-1, keepdims=True)
    return np.divide(p, total, out=np.zeros_like(p), where=total > 0)


def distribution_moments(
    probs: np.ndarray, values: np.ndarray, key: TokenKey
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of ``probs`` (..., vocab) over ``values`` (vocab,).

    Ids whose value is NaN (the mask token, unused bins) get no weight; the rest of the
    distribution is renormalised. A row with all its mass on such ids gives NaN.
    """
    v = np.where(np.isfinite(values), values, 0.0)
    p = restrict_probs(probs, values, key)
    empty = p.sum(-1) == 0
    mean = (p * v).sum(-1)
    var = (p * (v - mean[..., None]) ** 2).sum(-1)
    std = np.sqrt(np.clip(var, 0.0, None))
    return np.where(empty, np.nan, mean), np.where(empty, np.nan, std)


def distribution_quantile(
    probs: np.ndarray, values: np.ndarray, key: TokenKey, q: float = 0.5
) -> np.ndarray:
    """The ``q`` quantile of ``probs`` (..., vocab) over ``values`` (vocab,): the smallest
    value whose cumulative probability reaches ``q`` (NaN-valued ids get no weight).

    The median (``q=0.5``) is the point estimate to use for a multimodal distribution such
    as a photometric redshift, whose mean can fall between the modes.
    """
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile must be in [0, 1], got {q}")
    p = restrict_probs(probs, values, key)
    order = np.argsort(np.where(np.isfinite(values), values, np.inf), kind="stable")
    cdf = np.cumsum(p[..., order], axis=-1)
    empty = cdf[..., -1] == 0
    idx = np.minimum((cdf < q * cdf[..., -1:] - 1e-12).sum(-1), len(order) - 1)
    out = np.asarray(values, dtype=np.float64)[order][idx]
    return np.where(empty, np.nan, out)
