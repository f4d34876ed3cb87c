"""Embeddings and predictions for a whole token store, written to parquet in batches."""

from __future__ import annotations

import os
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


def _store_keys(model: AstroModel, store_path: str | os.PathLike[str], exclude: tuple[str, ...] = ()) -> dict:
    meta = store_metadata(store_path)
    model.check_compatible(meta["token_keys"], meta.get("fingerprints"), where=f"token store {store_path}")
    keys = {k: v for k, v in meta["token_keys"].items() if k in model.token_keys and k not in exclude}
    if not keys:
        raise DataError(
            f"{store_path}: the store has no token key the model uses as input; "
            f"store keys {sorted(meta['token_keys'])}, model keys {sorted(model.token_keys)}"
        )
    return {k: model.token_keys[k] for k in keys}


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
def embed_store(
    model: AstroModel,
    store_path: str | os.PathLike[str],
    *,
    batch_size: int = 256,
    num_encoder_tokens: int = 600,
    seed: int = 0,
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """``(ids, embeddings (n, dim) float32)``: pooled encoder embeddings of every store row."""
    model.eval()
    keys = _store_keys(model, store_path)
    ids_out, embs = [], []
    for ids, tokens in _batches(model, store_path, keys, batch_size, progress, "embed"):
        emb = model.embed(tokens, num_encoder_tokens, generator=seed)
        ids_out.append(ids)
        embs.append(emb.float().cpu().numpy())
    if not ids_out:
        return np.zeros(0, np.int64), np.zeros((0, model.config.dim), np.float32)
    return np.concatenate(ids_out), np.concatenate(embs).astype(np.float32)


@torch.no_grad()
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
) -> dict[str, np.ndarray]:
    """Predictions of ``target`` for every store row, from the other keys.

    Returns ``id``, ``token`` (most probable id, (n, L)), ``prob`` (its probability) and, when
    ``codec`` gives bin values (see :mod:`astromodal_model.values`), ``mean`` and ``std``.
    A scalar target gives (n,) arrays.
    """
    from .values import distribution_moments, token_values

    if target not in model.token_keys:
        raise DataError(f"unknown target key {target!r}; the model knows {sorted(model.token_keys)}")
    model.eval()
    key = model.token_keys[target]
    keys = _store_keys(model, store_path, exclude=(target,))
    values = token_values(codec, key) if codec is not None else None
    out: dict[str, list[np.ndarray]] = {"id": [], "token": [], "prob": [], "mean": [], "std": []}
    for ids, tokens in _batches(model, store_path, keys, batch_size, progress, "predict"):
        probs = model.predict(tokens, target, num_encoder_tokens, generator=seed).cpu().numpy()
        out["id"].append(ids)
        out["token"].append(probs.argmax(-1))
        out["prob"].append(probs.max(-1))
        if values is not None:
            m, s = distribution_moments(probs, values, key)
            out["mean"].append(m)
            out["std"].append(s)
    result = {k: np.concatenate(v) for k, v in out.items() if v}
    if key.layout == "scalar":
        result = {k: (v[:, 0] if v.ndim == 2 else v) for k, v in result.items()}
    return result


def write_table(path: str | os.PathLike[str], columns: dict[str, np.ndarray]) -> Path:
    """Write columns (1-D, or 2-D as fixed-size lists) to parquet atomically."""
    from astromodal_core.serialize import atomic_path

    arrays = {}
    for name, a in columns.items():
        a = np.asarray(a)
        if a.ndim == 1:
            arrays[name] = pa.array(a)
        else:
            flat = a.reshape(len(a), -1)
            arrays[name] = pa.FixedSizeListArray.from_arrays(pa.array(flat.ravel()), flat.shape[1])
    with atomic_path(path, suffix=".parquet") as tmp:
        pq.write_table(pa.table(arrays), tmp)
    return Path(path)
