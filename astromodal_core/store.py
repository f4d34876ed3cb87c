"""The token store: parquet with the id column and one column per token key.

Column types follow the key's layout: ``scalar`` -> uint16 (uint32 for vocabularies over
65,536); ``sequence`` and ``grid`` -> fixed-size list; ``ragged`` -> list. A row that has no
data for a key holds the key's ``mask_token`` (scalar), a sequence of mask tokens (sequence,
grid) or an empty list (ragged). The schema metadata records every key's record and the
fingerprints of the codecs that made the tokens, so a model can refuse tokens it was not
built for.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .errors import DataError, TokenKeyError
from .modality import TokenKey
from .serialize import atomic_path

STORE_META_KEY = b"astromodal.token_store"
Ragged = tuple[np.ndarray, np.ndarray]  # (flat, indptr)


def _arrow_column(key: TokenKey, value: Any, n: int) -> pa.Array:
    dtype = key.dtype
    pa_type = pa.uint16() if dtype == np.uint16 else pa.uint32()
    if key.layout == "ragged":
        if not (isinstance(value, tuple) and len(value) == 2):
            raise DataError(f"token key {key.name!r}: a ragged column needs (flat, indptr)")
        flat, indptr = (np.asarray(v) for v in value)
        if len(indptr) != n + 1:
            raise DataError(f"token key {key.name!r}: indptr has {len(indptr)} entries, expected {n + 1}")
        _check_range(key, flat)
        return pa.ListArray.from_arrays(
            pa.array(indptr.astype(np.int32)), pa.array(flat.astype(dtype), type=pa_type)
        )
    arr = np.asarray(value)
    if arr.shape[0] != n:
        raise DataError(f"token key {key.name!r}: {arr.shape[0]} rows, expected {n}")
    _check_range(key, arr)
    if key.layout == "scalar":
        if arr.ndim != 1:
            raise DataError(f"token key {key.name!r}: a scalar column needs shape (n,), got {arr.shape}")
        return pa.array(arr.astype(dtype), type=pa_type)
    flat = arr.reshape(n, -1).astype(dtype)
    return pa.FixedSizeListArray.from_arrays(pa.array(flat.ravel(), type=pa_type), flat.shape[1])


def _check_range(key: TokenKey, arr: np.ndarray) -> None:
    if arr.size and (arr.min() < 0 or arr.max() >= key.vocab_size):
        raise DataError(
            f"token key {key.name!r}: tokens outside [0, {key.vocab_size}) "
            f"(min {arr.min()}, max {arr.max()})"
        )


def write_token_store(
    path: str | os.PathLike[str],
    ids: np.ndarray,
    columns: Mapping[str, np.ndarray | Ragged],
    token_keys: Mapping[str, TokenKey] | Sequence[TokenKey],
    *,
    id_col: str = "id",
    fingerprints: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write a token store atomically: nothing is left at ``path`` if anything fails.

    ``fingerprints`` maps each token key name to the fingerprint of the tokenizer (or codec)
    that made its tokens; a model records them and refuses tokens from another fitted state.
    """
    keys = token_keys if isinstance(token_keys, Mapping) else {k.name: k for k in token_keys}
    ids = np.asarray(ids, dtype=np.int64)
    n = len(ids)
    arrays = {id_col: pa.array(ids, type=pa.int64())}
    for name, value in columns.items():
        if name not in keys:
            raise TokenKeyError(f"unknown token key {name!r}; known: {sorted(keys)}")
        arrays[name] = _arrow_column(keys[name], value, n)
    meta = {
        "id_col": id_col,
        "token_keys": {name: keys[name].as_dict() for name in columns},
        "fingerprints": dict(fingerprints or {}),
        **dict(extra or {}),
    }
    table = pa.table(arrays).replace_schema_metadata({STORE_META_KEY: json.dumps(meta)})
    with atomic_path(path, suffix=".parquet") as tmp:
        pq.write_table(table, tmp)
    return Path(path)


def store_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The store's recorded id column, token keys and fingerprints."""
    from .io import open_parquet

    pf = open_parquet(path)
    raw = (pf.schema_arrow.metadata or {}).get(STORE_META_KEY)
    if raw is None:
        raise DataError(f"{path}: not an astromodal token store (no {STORE_META_KEY.decode()} metadata)")
    meta = json.loads(raw)
    meta["token_keys"] = {k: TokenKey.from_dict(v) for k, v in meta["token_keys"].items()}
    return meta


def column_to_numpy(col: pa.Array, key: TokenKey) -> np.ndarray | Ragged:
    """A store column back to numpy: (n,), (n, L), (n, H, W) or (flat, indptr)."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    if key.layout == "scalar":
        return col.to_numpy(zero_copy_only=False).astype(key.dtype)
    if key.layout == "ragged":
        offsets = col.offsets.to_numpy().astype(np.int64)
        flat = col.values.to_numpy(zero_copy_only=False)[offsets[0] : offsets[-1]].astype(key.dtype)
        return flat, offsets - offsets[0]
    size = col.type.list_size
    flat = col.flatten().to_numpy(zero_copy_only=False).astype(key.dtype).reshape(len(col), size)
    if key.layout == "grid" and key.shape is not None:
        return flat.reshape(len(col), *key.shape)
    return flat


def iter_token_store(
    path: str | os.PathLike[str],
    keys: Sequence[str] | None = None,
    *,
    batch_size: int = 65_536,
) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray | Ragged]]]:
    """Yield ``(ids, {key: tokens})`` batches from a token store."""
    from .io import iter_batches

    meta = store_metadata(path)
    known = meta["token_keys"]
    keys = list(known) if keys is None else list(keys)
    for k in keys:
        if k not in known:
            raise TokenKeyError(f"{path}: token store has no key {k!r}; it has {sorted(known)}")
    for batch in iter_batches(path, [meta["id_col"], *keys], batch_size=batch_size, allow_empty=True):
        ids = batch.column(meta["id_col"]).to_numpy(zero_copy_only=False).astype(np.int64)
        yield ids, {k: column_to_numpy(batch.column(k), known[k]) for k in keys}


def read_token_store(
    path: str | os.PathLike[str], keys: Sequence[str] | None = None
) -> tuple[np.ndarray, dict[str, np.ndarray | Ragged]]:
    """Read a whole token store (small stores, tests); use :func:`iter_token_store` for large ones."""
    meta = store_metadata(path)
    keys = list(meta["token_keys"]) if keys is None else list(keys)
    table = pq.read_table(path, columns=[meta["id_col"], *keys])
    known = meta["token_keys"]
    ids = table.column(meta["id_col"]).to_numpy().astype(np.int64)
    return ids, {k: column_to_numpy(table.column(k), known[k]) for k in keys}
