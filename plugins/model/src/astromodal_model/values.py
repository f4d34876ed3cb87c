"""Token ids -> physical values, for predictions with a mean and a spread.

The protocol ``predict_value`` needs from a "codec" is small: a 1-D array giving the physical
value of every real token id of the key (index = token id; length at least the number of real
ids, i.e. ``vocab_size`` or ``vocab_size - 1`` when the last id is the mask token). It is
found, in this order, in:

1. a 1-D array (or list) itself;
2. a mapping ``{token_key_name: array}``;
3. an object's ``bin_values`` attribute: an array, such a mapping, or a callable
   ``bin_values(key_name) -> array``;
4. an object's ``decode_tokens(key_name, ids) -> values`` method, called with every real id;
5. an astromodal Codec: ``decode({key_name: ids})`` whose modality holds one numeric array
   field (the decoded values).
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


def token_values(codec: Any, key: TokenKey) -> np.ndarray:
    """A float64 array (vocab_size,) of per-token values; NaN at the mask token."""
    n = _n_real(key)
    ids = np.arange(n)
    source: Any = codec
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
    if not np.isfinite(out[:n]).all():
        bad = int(np.flatnonzero(~np.isfinite(out[:n]))[0])
        raise DataError(f"token key {key.name!r}: bin value of token {bad} is not finite")
    return out


def distribution_moments(
    probs: np.ndarray, values: np.ndarray, key: TokenKey
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of ``probs`` (..., vocab) over ``values`` (vocab,)."""
    v = np.where(np.isfinite(values), values, 0.0)
    p = probs.astype(np.float64)
    if key.mask_token is not None:
        p[..., key.mask_token] = 0.0
    p = p / np.clip(p.sum(-1, keepdims=True), 1e-30, None)
    mean = (p * v).sum(-1)
    var = (p * (v - mean[..., None]) ** 2).sum(-1)
    return mean, np.sqrt(np.clip(var, 0.0, None))
