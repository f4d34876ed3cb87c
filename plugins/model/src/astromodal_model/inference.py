"""Embeddings and predictions for a whole token store, streamed to parquet batch by batch.

Every function checks the store against the model first (key records and tokenizer
fingerprints, :meth:`AstroModel.check_compatible`); ``allow_mismatch=True`` turns a fingerprint
difference into a warning.

:func:`write_embeddings` and :func:`write_predictions` hold one batch at a time (memory bounded
by ``batch_size``) and write through :func:`astromodal_core.serialize.atomic_path`, so a failure
leaves no partial file. :func:`embed_store` / :func:`predict_store` return everything in memory.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from astromodal_core.errors import DataError
from astromodal_core.store import store_metadata

from .data import iter_dense_chunks
from .model import AstroModel


def _store_keys(
    model: AstroModel, store_path: str | os.PathLike[str], exclude: tuple[str, ...] = (), allow_mismatch: bool = False
) -> dict:
    meta = store_metadata(store_path)
    model.check_compatible(
        meta["token_keys"], meta.get("fingerprints"), f"token store {store_path}", allow_mismatch=allow_mismatch
    )
    keys = {k: v for k, v in meta["token_keys"].items() if k in model.token_keys and k not in exclude}
    if not keys:
        raise DataError(
            f"{store_path}: the store has no token key the model uses as input; "
            f"store keys {sorted(meta['token_keys'])}, model keys {sorted(model.token_keys)}"
        )
    return {k: model.token_keys[k] for k in keys}


def _check_exclude(model: AstroModel, exclude: Iterable[str]) -> tuple[str, ...]:
    exclude = tuple(exclude)
    unknown = [k for k in exclude if k not in model.token_keys]
    if unknown:
        raise DataError(f"exclude: unknown token key {unknown[0]!r}; the model knows {sorted(model.token_keys)}")
    return exclude


def _batches(model: AstroModel, store_path: Any, keys: dict, batch_size: int, progress: bool, desc: str):
    from tqdm.auto import tqdm

    from astromodal_core.io import num_rows

    bar = tqdm(total=num_rows(store_path), disable=not progress, desc=desc, unit="row")
    for ids, dense in iter_dense_chunks(store_path, keys, chunk_rows=batch_size):
        yield ids, {
            k: (torch.from_numpy(np.maximum(v, 0).astype(np.int64)), torch.from_numpy(v >= 0))
            for k, v in dense.items()
        }
        bar.update(len(ids))
    bar.close()


@torch.no_grad()
def iter_embeddings(
    model: AstroModel,
    store_path: str | os.PathLike[str],
    *,
    batch_size: int = 256,
    num_encoder_tokens: int = 600,
    seed: int = 0,
    progress: bool = True,
    allow_mismatch: bool = False,
    exclude: Iterable[str] = (),
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(ids, embeddings (b, dim) float32)`` per batch of at most ``batch_size`` store rows;
    ``exclude`` names keys not to use as inputs (e.g. a redshift, to find neighbours by
    photometry alone)."""
    model.eval()
    exclude = _check_exclude(model, exclude)
    keys = _store_keys(model, store_path, exclude=exclude, allow_mismatch=allow_mismatch)
    for ids, tokens in _batches(model, store_path, keys, batch_size, progress, "embed"):
        emb = model.embed(tokens, num_encoder_tokens, generator=seed)
        yield ids, emb.float().cpu().numpy().astype(np.float32, copy=False)


def embed_store(
    model: AstroModel,
    store_path: str | os.PathLike[str],
    *,
    batch_size: int = 256,
    num_encoder_tokens: int = 600,
    seed: int = 0,
    progress: bool = True,
    allow_mismatch: bool = False,
    exclude: Iterable[str] = (),
) -> tuple[np.ndarray, np.ndarray]:
    """``(ids, embeddings (n, dim) float32)``: pooled encoder embeddings of every store row,
    in memory (:func:`write_embeddings` streams them to a file instead); ``exclude`` as in
    :func:`iter_embeddings`."""
    ids_out, embs = [], []
    for ids, emb in iter_embeddings(
        model, store_path, batch_size=batch_size, num_encoder_tokens=num_encoder_tokens, seed=seed, progress=progress,
        allow_mismatch=allow_mismatch, exclude=exclude,
    ):
        ids_out.append(ids)
        embs.append(emb)
    if not ids_out:
        return np.zeros(0, np.int64), np.zeros((0, model.config.dim), np.float32)
    return np.concatenate(ids_out), np.concatenate(embs).astype(np.float32)


@torch.no_grad()
def iter_predictions(
    model: AstroModel,
    store_path: str | os.PathLike[str],
    target: str,
    *,
    codec: Any = None,
    batch_size: int = 256,
    num_encoder_tokens: int = 600,
    seed: int = 0,
    progress: bool = True,
    allow_mismatch: bool = False,
    exclude: Iterable[str] = (),
    probs: bool = False,
) -> Iterator[dict[str, np.ndarray]]:
    """Per batch of store rows, the columns :func:`predict_store` returns."""
    from .values import (
        distribution_moments,
        distribution_quantile,
        restrict_probs,
        token_values,
        values_source_fingerprint,
    )

    if target not in model.token_keys:
        raise DataError(f"unknown target key {target!r}; the model knows {sorted(model.token_keys)}")
    exclude = _check_exclude(model, exclude)
    model.eval()
    key = model.token_keys[target]
    keys = _store_keys(model, store_path, exclude=(target, *exclude), allow_mismatch=allow_mismatch)
    values = None
    if codec is not None:
        fp = values_source_fingerprint(codec, target)
        if fp is not None:  # values from a tokenizer: it must be the one that made the target's tokens
            model.check_fingerprints({target: fp}, where=f"the tokenizer giving the values of {target!r}",
                                     allow_mismatch=allow_mismatch)
        values = token_values(codec, key)
    for ids, tokens in _batches(model, store_path, keys, batch_size, progress, "predict"):
        p = model.predict(tokens, target, num_encoder_tokens, generator=seed).cpu().numpy()
        if values is not None:  # ids without a bin value (unused bins) are never predicted
            p = restrict_probs(p, values, key)
        out = {"id": ids, "token": p.argmax(-1), "prob": p.max(-1).astype(np.float32)}
        if values is not None:
            out["mean"], out["std"] = distribution_moments(p, values, key)
            out["median"] = distribution_quantile(p, values, key, 0.5)
        if probs:
            out["probs"] = p.astype(np.float32)
        if key.layout == "scalar":
            out = {k: (v[:, 0] if v.ndim >= 2 else v) for k, v in out.items()}
        yield out


def predict_store(
    model: AstroModel,
    store_path: str | os.PathLike[str],
    target: str,
    *,
    codec: Any = None,
    batch_size: int = 256,
    num_encoder_tokens: int = 600,
    seed: int = 0,
    progress: bool = True,
    allow_mismatch: bool = False,
    exclude: Iterable[str] = (),
    probs: bool = False,
) -> dict[str, np.ndarray]:
    """Predictions of ``target`` for every store row, from the other keys, in memory.

    ``exclude`` names store keys not to use as inputs (besides the target), e.g. to predict a
    redshift from photometry alone or to leave out another key that is hidden at test time.

    Returns ``id``, ``token`` (most probable id, (n, L)), ``prob`` (its probability) and, when
    ``codec`` gives bin values (see :mod:`astromodal_model.values`), ``mean``, ``std`` and
    ``median`` of the predicted distribution in physical units (prefer the median for a
    multimodal target such as redshift); ids without a bin value get probability zero. A scalar target gives (n,) arrays.
    ``probs=True`` adds ``probs``, the whole predicted distribution (n, vocab) float32 (for a
    sequence target (n, L, vocab)): what a PIT or CRPS needs (:mod:`astromodal_model.scoring`).
    :func:`write_predictions` streams the same columns to a file.
    """
    parts: dict[str, list[np.ndarray]] = {}
    for batch in iter_predictions(
        model, store_path, target, codec=codec, batch_size=batch_size,
        num_encoder_tokens=num_encoder_tokens, seed=seed, progress=progress, exclude=exclude,
        allow_mismatch=allow_mismatch, probs=probs,
    ):
        for k, v in batch.items():
            parts.setdefault(k, []).append(v)
    return {k: np.concatenate(v) for k, v in parts.items()}


def _arrow(columns: dict[str, np.ndarray]) -> pa.Table:
    arrays = {}
    for name, a in columns.items():
        a = np.asarray(a)
        if a.ndim == 1:
            arrays[name] = pa.array(a)
        else:
            flat = a.reshape(len(a), -1)
            arrays[name] = pa.FixedSizeListArray.from_arrays(pa.array(flat.ravel()), flat.shape[1])
    return pa.table(arrays)


def write_batches(
    path: str | os.PathLike[str], batches: Iterable[dict[str, np.ndarray]], empty: dict[str, np.ndarray]
) -> tuple[Path, int]:
    """Stream column batches into one parquet file (a row group per batch); ``(path, rows)``.

    The file appears at ``path`` only once every batch is written; ``empty`` (zero-row
    columns) gives the schema when there is no batch at all.
    """
    from astromodal_core.serialize import atomic_path

    rows = 0
    with atomic_path(path, suffix=".parquet") as tmp:
        writer: pq.ParquetWriter | None = None
        try:
            for batch in batches:
                table = _arrow(batch)
                if writer is None:
                    writer = pq.ParquetWriter(tmp, table.schema)
                writer.write_table(table.cast(writer.schema))
                rows += table.num_rows
            if writer is None:
                pq.write_table(_arrow(empty), tmp)
        finally:
            if writer is not None:
                writer.close()
    return Path(path), rows


def write_embeddings(
    model: AstroModel,
    store_path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    id_col: str = "id",
    batch_size: int = 256,
    num_encoder_tokens: int = 600,
    seed: int = 0,
    progress: bool = True,
    allow_mismatch: bool = False,
    exclude: Iterable[str] = (),
) -> int:
    """Write ``id_col`` + ``embedding`` (fixed-size float32 lists) for every store row, one
    batch in memory at a time; returns the number of rows. ``exclude``: keys not used as
    inputs."""
    batches = (
        {id_col: ids, "embedding": emb}
        for ids, emb in iter_embeddings(
            model, store_path, batch_size=batch_size, num_encoder_tokens=num_encoder_tokens,
            seed=seed, progress=progress, allow_mismatch=allow_mismatch, exclude=exclude,
        )
    )
    empty = {id_col: np.zeros(0, np.int64), "embedding": np.zeros((0, model.config.dim), np.float32)}
    return write_batches(out, batches, empty)[1]


def write_predictions(
    model: AstroModel,
    store_path: str | os.PathLike[str],
    target: str,
    out: str | os.PathLike[str],
    *,
    id_col: str = "id",
    codec: Any = None,
    batch_size: int = 256,
    num_encoder_tokens: int = 600,
    seed: int = 0,
    progress: bool = True,
    allow_mismatch: bool = False,
    exclude: Iterable[str] = (),
    probs: bool = False,
) -> tuple[int, list[str]]:
    """Write :func:`predict_store`'s columns (``id`` named ``id_col``; ``probs`` as a
    fixed-size list per row) batch by batch; returns ``(rows, column names)``."""
    from .keys import key_length

    batches = (
        {id_col: b.pop("id"), **b}
        for b in iter_predictions(
            model, store_path, target, codec=codec, batch_size=batch_size,
            num_encoder_tokens=num_encoder_tokens, seed=seed, progress=progress, exclude=exclude,
            allow_mismatch=allow_mismatch, probs=probs,
        )
    )
    key = model.token_keys.get(target)
    shape: tuple[int, ...] = (0,) if key is None or key.layout == "scalar" else (0, key_length(key))
    empty = {id_col: np.zeros(0, np.int64), "token": np.zeros(shape, np.int64), "prob": np.zeros(shape, np.float32)}
    if codec is not None:
        empty.update(mean=np.zeros(shape), std=np.zeros(shape), median=np.zeros(shape))
    if probs and key is not None:
        empty["probs"] = np.zeros((*shape, key.vocab_size), np.float32)
    _, rows = write_batches(out, batches, empty)
    return rows, list(empty)


def write_table(path: str | os.PathLike[str], columns: dict[str, np.ndarray]) -> Path:
    """Write in-memory columns (1-D, or 2-D as fixed-size lists) to parquet atomically."""
    return write_batches(path, [columns], columns)[0]
