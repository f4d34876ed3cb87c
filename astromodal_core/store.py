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


class TokenStoreWriter:
    """Write a token store batch by batch; the file appears at ``path`` only on a clean close.

        with TokenStoreWriter(path, keys, fingerprints=fps) as writer:
            for ids, columns in batches:
                writer.write(ids, columns)

    Memory is bounded by the batch; if anything raises inside the ``with`` block, nothing is
    left at ``path``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        token_keys: Mapping[str, TokenKey] | Sequence[TokenKey],
        *,
        id_col: str = "id",
        fingerprints: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ):
        self.path = Path(path)
        self.keys = dict(token_keys) if isinstance(token_keys, Mapping) else {k.name: k for k in token_keys}
        self.id_col = id_col
        meta = {
            "id_col": id_col,
            "token_keys": {name: k.as_dict() for name, k in self.keys.items()},
            "fingerprints": dict(fingerprints or {}),
            **dict(extra or {}),
        }
        fields = [pa.field(id_col, pa.int64())]
        for name, key in self.keys.items():
            item = pa.uint16() if key.dtype == np.uint16 else pa.uint32()
            if key.layout == "scalar":
                fields.append(pa.field(name, item))
            elif key.layout == "ragged":
                fields.append(pa.field(name, pa.list_(item)))
            else:
                fields.append(pa.field(name, pa.list_(item, key.max_length)))
        self.schema = pa.schema(fields, metadata={STORE_META_KEY: json.dumps(meta)})
        self.rows = 0
        self._atomic: Any = None
        self._writer: pq.ParquetWriter | None = None

    def __enter__(self) -> TokenStoreWriter:
        self._atomic = atomic_path(self.path, suffix=".parquet")
        tmp = self._atomic.__enter__()
        try:
            self._writer = pq.ParquetWriter(tmp, self.schema)  # writes the header already
        except BaseException as err:
            self._atomic.__exit__(type(err), err, err.__traceback__)  # drops the temp file
            raise
        return self

    def write(self, ids: np.ndarray, columns: Mapping[str, np.ndarray | Ragged]) -> None:
        """Append one batch: ``ids`` and a value for every key of the store."""
        if self._writer is None:
            raise RuntimeError("use TokenStoreWriter as a context manager")
        ids = np.asarray(ids, dtype=np.int64)
        for name in columns:
            if name not in self.keys:
                raise TokenKeyError(f"unknown token key {name!r}; known: {sorted(self.keys)}")
        missing = [k for k in self.keys if k not in columns]
        if missing:
            raise DataError(f"{self.path}: batch lacks token key column(s) {missing}")
        arrays = [pa.array(ids, type=pa.int64())]
        arrays += [_arrow_column(self.keys[k], columns[k], len(ids)) for k in self.keys]
        self._writer.write_batch(pa.record_batch(arrays, schema=self.schema))
        self.rows += len(ids)

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        assert self._writer is not None and self._atomic is not None
        close_error = None
        try:
            self._writer.close()
        except BaseException as err:  # a full disk fails the footer: still drop the temp file
            close_error = err
        if exc is None and close_error is not None:
            exc_type, exc, tb = type(close_error), close_error, close_error.__traceback__
        self._atomic.__exit__(exc_type, exc, tb)  # raises its own error, or returns False
        if close_error is not None and exc is close_error:
            raise close_error


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
    The store records the keys of ``columns`` (a subset of ``token_keys``).
    """
    keys = token_keys if isinstance(token_keys, Mapping) else {k.name: k for k in token_keys}
    for name in columns:
        if name not in keys:
            raise TokenKeyError(f"unknown token key {name!r}; known: {sorted(keys)}")
    with TokenStoreWriter(
        path, {k: keys[k] for k in columns}, id_col=id_col, fingerprints=fingerprints, extra=extra
    ) as writer:
        writer.write(ids, columns)
    return Path(path)


def store_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The store's recorded id column, token keys and fingerprints."""
    from .io import open_parquet

    pf = open_parquet(path)
    raw = (pf.schema_arrow.metadata or {}).get(STORE_META_KEY)
    if raw is None:
        raise DataError(f"{path}: not an astromodal token store (no {STORE_META_KEY.decode()} metadata)")
    try:
        meta = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # bad UTF-8 / JSON, an over-long integer
        raise DataError(f"{path}: token store metadata is not JSON ({exc})") from exc
    if not isinstance(meta, dict):
        raise DataError(f"{path}: token store metadata is not a JSON object")
    for field in ("token_keys", "id_col"):
        if field not in meta:
            raise DataError(f"{path}: token store metadata lacks {field!r}")
    if not isinstance(meta["token_keys"], dict):
        raise DataError(f"{path}: token store metadata 'token_keys' is not a mapping")
    try:
        meta["token_keys"] = {k: TokenKey.from_dict(dict(v)) for k, v in meta["token_keys"].items()}
    except (TypeError, ValueError, OverflowError) as exc:  # OverflowError: an infinite size
        raise DataError(f"{path}: token store metadata has a bad token key ({exc})") from exc
    _check_columns(path, pf.schema_arrow, meta)
    meta.setdefault("fingerprints", {})
    return meta


def _check_columns(path: str | os.PathLike[str], schema: pa.Schema, meta: dict[str, Any]) -> None:
    """The id column and every recorded key's column exist, with types that hold the key."""
    id_col = meta["id_col"]
    if not isinstance(id_col, str) or schema.get_field_index(id_col) < 0 \
            or not pa.types.is_integer(schema.field(id_col).type):
        raise DataError(f"{path}: token store id column {id_col!r} is missing or not integer")
    for name, key in meta["token_keys"].items():
        if schema.get_field_index(name) < 0:
            raise DataError(f"{path}: token store records key {name!r} but has no such column")
        t = schema.field(name).type
        if key.layout == "scalar":
            ok = pa.types.is_integer(t)
        elif key.layout == "ragged":
            ok = (pa.types.is_list(t) or pa.types.is_large_list(t)) and pa.types.is_integer(t.value_type)
        else:
            ok = pa.types.is_fixed_size_list(t) and t.list_size == key.max_length \
                and pa.types.is_integer(t.value_type)
        if not ok:
            raise DataError(f"{path}: column {name!r} has type {t}, which cannot hold the "
                            f"{key.layout} token key {name!r} (max_length {key.max_length})")


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
    known = meta["token_keys"]
    keys = list(known) if keys is None else list(keys)
    for k in keys:
        if k not in known:
            raise TokenKeyError(f"{path}: token store has no key {k!r}; it has {sorted(known)}")
    try:
        table = pq.read_table(path, columns=[meta["id_col"], *keys])
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{path}: corrupt parquet data ({exc})") from exc
    ids = table.column(meta["id_col"]).to_numpy().astype(np.int64)
    return ids, {k: column_to_numpy(table.column(k), known[k]) for k in keys}


def concat_columns(key: TokenKey, parts: Sequence[np.ndarray | Ragged]) -> np.ndarray | Ragged:
    """Join batches of one key's tokens: arrays along rows, ``(flat, indptr)`` pairs end to end."""
    if key.layout == "ragged":
        flats, indptrs, offset = [], [np.zeros(1, dtype=np.int64)], 0
        for flat, indptr in parts:
            indptr = np.asarray(indptr, dtype=np.int64)
            flats.append(np.asarray(flat)[indptr[0] : indptr[-1]])
            indptrs.append(indptr[1:] - indptr[0] + offset)
            offset += int(indptr[-1] - indptr[0])
        flat = np.concatenate(flats).astype(key.dtype) if flats else np.empty(0, dtype=key.dtype)
        return flat, np.concatenate(indptrs)
    if not parts:
        shape = (0,) if key.layout == "scalar" else (0, *(key.shape or (key.max_length,)))
        return np.empty(shape, dtype=key.dtype)
    return np.concatenate([np.asarray(p) for p in parts])


def source_info(path: Any) -> dict[str, Any]:
    """What a store records of its input file: resolved path, size and modification time
    (another source: what its ``info()`` gives, see :mod:`astromodal_core.sources`)."""
    if not isinstance(path, (str, os.PathLike)) or not Path(path).is_file():
        from .sources import open_source

        return open_source(path).info()
    st = Path(path).stat()
    return {"path": str(Path(path).resolve()), "size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns)}
