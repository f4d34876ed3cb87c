"""Token dicts in every accepted form -> dense (batch, length) id tensors with -1 = absent.

Accepted per-key values (numpy arrays, torch tensors or lists of ints):

- ``scalar``: shape (B,) or (B, 1).
- ``sequence``: (B, L) with L <= max_length (position i is the key's i-th token).
- ``grid``: (B, H, W) or (B, H*W).
- ``ragged``: ``(flat, indptr)`` as in the token store; ``(padded, lengths)`` with padded
  (B, L) and lengths (B,); ``(padded, valid)`` with a boolean (B, L) mask; or a padded (B, L)
  tensor whose padding holds the key's mask token.

Everywhere the key's ``mask_token`` means "no value": it becomes -1 (absent), so it is never
embedded and never a target.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from astromodal_core.errors import DataError
from astromodal_core.modality import TokenKey

from .errors import UnknownTokenKeyError
from .keys import key_length

ABSENT = -1


def _tensor(value: Any, name: str, source: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        t = value
    else:
        arr = np.asarray(value)
        if arr.dtype.kind not in "iub":
            raise DataError(
                f"{source}: token key {name!r}: tokens must be integers, got dtype {arr.dtype}"
            )
        if arr.dtype == np.uint16 or arr.dtype == np.uint32:
            arr = arr.astype(np.int64)
        t = torch.from_numpy(np.ascontiguousarray(arr))
    if t.is_floating_point() or t.is_complex():
        raise DataError(f"{source}: token key {name!r}: tokens must be integers, got {t.dtype}")
    return t


def _row_name(ids: np.ndarray | None, row: int) -> str:
    return f"row id {int(ids[row])}" if ids is not None else f"row {row}"


def _ragged_to_padded(
    key: TokenKey, flat: torch.Tensor, indptr: torch.Tensor, source: str
) -> tuple[torch.Tensor, torch.Tensor]:
    indptr = indptr.to(torch.int64).cpu()
    if indptr.ndim != 1 or len(indptr) < 1 or int(indptr[0]) != 0 or bool((indptr[1:] < indptr[:-1]).any()):
        raise DataError(f"{source}: token key {key.name!r}: indptr must start at 0 and not decrease")
    if int(indptr[-1]) != flat.shape[0]:
        raise DataError(
            f"{source}: token key {key.name!r}: indptr ends at {int(indptr[-1])} but flat holds "
            f"{flat.shape[0]} tokens"
        )
    lengths = indptr[1:] - indptr[:-1]
    n = len(lengths)
    L = int(lengths.max()) if n else 0
    padded = torch.full((n, max(L, 1)), 0, dtype=torch.int64, device=flat.device)
    valid = torch.arange(max(L, 1))[None, :] < lengths[:, None]
    valid = valid.to(flat.device)
    padded[valid] = flat.to(torch.int64)
    return padded, valid


def dense_tokens(
    key: TokenKey,
    value: Any,
    *,
    ids: np.ndarray | None = None,
    source: str = "input",
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """One key's tokens as a (B, L) int64 tensor, -1 where absent (padding or mask token)."""
    name = key.name
    valid: torch.Tensor | None = None
    if isinstance(value, tuple):
        if len(value) != 2:
            raise DataError(f"{source}: token key {name!r}: a tuple must be (flat, indptr) or (padded, lengths)")
        a = _tensor(value[0], name, source)
        b = value[1] if isinstance(value[1], torch.Tensor) else torch.as_tensor(np.asarray(value[1]))
        if a.ndim == 1:
            t, valid = _ragged_to_padded(key, a, b, source)
        elif a.ndim == 2 and b.ndim == 1:
            if len(b) != a.shape[0]:
                raise DataError(f"{source}: token key {name!r}: {len(b)} lengths for {a.shape[0]} rows")
            t = a.to(torch.int64)
            valid = torch.arange(a.shape[1], device=a.device)[None, :] < b.to(a.device)[:, None]
        elif a.ndim == 2 and b.shape == a.shape:
            t, valid = a.to(torch.int64), b.to(device=a.device, dtype=torch.bool)
        else:
            raise DataError(f"{source}: token key {name!r}: cannot read a tuple of shapes {tuple(a.shape)}, {tuple(b.shape)}")
    else:
        t = _tensor(value, name, source).to(torch.int64)
    if key.layout == "scalar":
        if t.ndim == 2 and t.shape[1] == 1:
            t = t[:, 0]
        if t.ndim != 1:
            raise DataError(f"{source}: token key {name!r}: a scalar key needs shape (B,) or (B, 1), got {tuple(t.shape)}")
        t = t[:, None]
        if valid is not None:
            valid = valid.reshape(-1, 1)
    elif key.layout == "grid" and t.ndim == 3:
        if tuple(t.shape[1:]) != tuple(key.shape or ()):
            raise DataError(f"{source}: token key {name!r}: grid shape {tuple(t.shape[1:])}, expected {key.shape}")
        t = t.reshape(t.shape[0], -1)
    if t.ndim != 2:
        raise DataError(f"{source}: token key {name!r}: expected shape (B, L), got {tuple(t.shape)}")
    L = key_length(key)
    if key.layout == "grid" and t.shape[1] != L:
        raise DataError(f"{source}: token key {name!r}: a grid needs {L} tokens per row, got {t.shape[1]}")
    if valid is None:
        valid = torch.ones_like(t, dtype=torch.bool)
    if t.shape[1] > L:
        too_long = valid[:, L:].any(dim=1)
        if bool(too_long.any()):
            row = int(torch.nonzero(too_long)[0, 0])
            raise DataError(
                f"{source}: token key {name!r}: {_row_name(ids, row)} has more than max_length={L} tokens"
            )
        t, valid = t[:, :L], valid[:, :L]
    bad = valid & ((t < 0) | (t >= key.vocab_size))
    if bool(bad.any()):
        row, col = (int(x) for x in torch.nonzero(bad)[0])
        raise DataError(
            f"{source}: token key {name!r}: {_row_name(ids, row)}: token {int(t[row, col])} "
            f"outside [0, {key.vocab_size})"
        )
    if key.mask_token is not None:
        valid = valid & (t != key.mask_token)
    out = torch.where(valid, t, torch.full_like(t, ABSENT))
    return out.to(device) if device is not None else out


def dense_batch(
    keys: Mapping[str, TokenKey],
    input_tokens: Mapping[str, Any],
    *,
    ids: np.ndarray | None = None,
    source: str = "input",
    device: torch.device | str | None = None,
) -> dict[str, torch.Tensor]:
    """Every key of a token dict as dense (B, L) tensors; unknown keys and ragged batch sizes fail."""
    out: dict[str, torch.Tensor] = {}
    n: int | None = None
    for name, value in input_tokens.items():
        if name not in keys:
            raise UnknownTokenKeyError(
                f"{source}: unknown token key {name!r}; the model knows {sorted(keys)}"
            )
        t = dense_tokens(keys[name], value, ids=ids, source=source, device=device)
        if n is None:
            n = t.shape[0]
        elif t.shape[0] != n:
            raise DataError(f"{source}: token key {name!r} has {t.shape[0]} rows, other keys have {n}")
        out[name] = t
    if not out:
        raise DataError(f"{source}: no input tokens given")
    return out
