"""Token ids -> physical values, for predictions with a mean and a spread.

The protocol ``predict_value`` needs from a "codec" is small: a 1-D array giving the physical
value of every real token id of the key (index = token id; length at least the number of real
ids, i.e. ``vocab_size`` or ``vocab_size - 1`` when the last id is the mask token). It is
found, in this order, in:

1. a 1-D array (or list) itself;
2. a mapping ``{token_key_name: array}``;
3. a tokenizer with ``codecs()`` (e.g. the S-PLUS ScalarTokenizer): the codec whose
   ``token_keys`` include the key, then read by the rules below;
4. an object's ``bin_values`` attribute: an array, such a mapping, or a callable
   ``bin_values(key_name) -> array``;
5. an object's ``decode_tokens(key_name, ids) -> values`` method, called with every real id;
6. an astromodal Codec: ``decode({key_name: ids})`` whose modality holds one numeric array
   field (the decoded values).

A NaN value marks an id that is not a real bin (e.g. a quantile codec that fitted fewer bins
than its vocabulary holds): such ids get probability zero and the rest is renormalised.
Infinite values are an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
import numpy as np

from astromodal_core.errors import DataError
from astromodal_core.modality import TokenKey, to_numpy


def _n_real(key: TokenKey) -> int:
    return key.vocab_size - 1 if key.mask_token == key.vocab_size - 1 else key.vocab_size


def _from_decode(codec: Any, key: TokenKey, ids: np.ndarray) -> np.ndarray:
    modality = codec.decode({key.name: ids.astype(key.dtype)})
    arrays = []
    for f in attrs.fields(type(modality)):
        v = getattr(modality, f.name)
        if hasattr(v, "shape") and getattr(v, "ndim", 0) >= 1 and v.shape[0] == len(ids):
            arrays.append(to_numpy(v))
    if len(arrays) != 1:
        raise DataError(
            f"token key {key.name!r}: {type(codec).__name__}.decode returned {len(arrays)} value "
            "arrays; pass bin values explicitly"
        )
    return arrays[0].reshape(len(ids), -1)[:, 0]


def _codec_for_key(tokenizer: Any, key: TokenKey) -> Any:
    codecs = list(tokenizer.codecs())
    for c in codecs:
        if key.name in {getattr(k, "name", k) for k in getattr(c, "token_keys", ())}:
            return c
    known = sorted(getattr(k, "name", k) for c in codecs for k in getattr(c, "token_keys", ()))
    raise DataError(
        f"token key {key.name!r}: {type(tokenizer).__name__} has no codec for it; its codecs cover {known}"
    )


def token_values(codec: Any, key: TokenKey) -> np.ndarray:
    """A float64 array (vocab_size,) of per-token values; NaN at the mask token and at ids
    that are not real bins."""
    n = _n_real(key)
    ids = np.arange(n)
    source: Any = codec
    if not isinstance(source, (Mapping, np.ndarray, list, tuple)) and callable(getattr(source, "codecs", None)):
        source = _codec_for_key(source, key)
    if isinstance(source, Mapping):
        if key.name not in source:
            raise DataError(f"no bin values for token key {key.name!r}; given {sorted(source)}")
        source = source[key.name]
    elif hasattr(source, "bin_values"):
        source = source.bin_values
        if isinstance(source, Mapping):
            source = source[key.name]
        elif callable(source):
            source = source(key.name)
    elif hasattr(source, "decode_tokens"):
        source = np.asarray(source.decode_tokens(key.name, ids))
    elif hasattr(source, "decode") and hasattr(source, "token_keys"):
        source = _from_decode(source, key, ids)
    values = np.asarray(source, dtype=np.float64).ravel()
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
