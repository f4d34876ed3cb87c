"""Reading a token store for training and inference, in bounded memory.

The store is read in record batches (``chunk_rows`` rows at a time); every key becomes a dense
(n, L) int32 array with -1 where a token is absent. Training rows are shuffled within each
chunk by a seeded permutation; a deterministic hash of the row id puts ``val_fraction`` of the
rows in a validation split, whatever the order of the file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from astromodal_core.errors import DataError
from astromodal_core.modality import TokenKey
from astromodal_core.sampling import hash_keys
from astromodal_core.store import iter_token_store

from .batching import dense_tokens
from .masking import VAL_STEP, mask_batch

Dense = dict[str, np.ndarray]


def concat_dense(parts: Sequence[Dense]) -> Dense:
    """Concatenate dense chunks row-wise, padding each key to the widest chunk with -1."""
    out: Dense = {}
    for k in parts[0]:
        width = max(p[k].shape[1] for p in parts)
        out[k] = np.concatenate(
            [np.pad(p[k], ((0, 0), (0, width - p[k].shape[1])), constant_values=-1) for p in parts]
        )
    return out


def take_rows(dense: Dense, rows: np.ndarray | slice) -> Dense:
    return {k: v[rows] for k, v in dense.items()}


def iter_dense_chunks(
    path: str | os.PathLike[str],
    keys: Mapping[str, TokenKey],
    *,
    chunk_rows: int = 8192,
) -> Iterator[tuple[np.ndarray, Dense]]:
    """Yield ``(ids, {key: (n, L) int32, -1 = absent})`` for the given keys, chunk by chunk."""
    for ids, cols in iter_token_store(path, list(keys), batch_size=chunk_rows):
        if not len(ids):
            continue
        dense = {
            k: dense_tokens(keys[k], cols[k], ids=ids, source=f"{path}: column {k!r}")
            .to(torch.int32)
            .numpy()
            for k in keys
        }
        yield ids, dense


def is_validation(ids: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Deterministic validation membership of each row id."""
    if fraction <= 0:
        return np.zeros(len(ids), bool)
    h = hash_keys(np.asarray(ids, np.int64), seed, "astromodal_model.val")
    return (h >> np.uint64(11)).astype(np.float64) / 2.0**53 < fraction


def global_batches(
    path: str | os.PathLike[str],
    keys: Mapping[str, TokenKey],
    *,
    batch_size: int,
    seed: int,
    val_fraction: float,
    chunk_rows: int = 8192,
) -> Iterator[tuple[np.ndarray, Dense]]:
    """An endless stream of shuffled training batches (validation rows left out)."""
    epoch = 0
    carry: tuple[np.ndarray, Dense] | None = None
    while True:
        seen = 0
        for c, (ids, dense) in enumerate(iter_dense_chunks(path, keys, chunk_rows=chunk_rows)):
            keep = np.flatnonzero(~is_validation(ids, val_fraction, seed))
            rng = np.random.default_rng([seed, epoch, c])
            rows = keep[rng.permutation(len(keep))]
            seen += len(rows)
            ids, dense = ids[rows], take_rows(dense, rows)
            if carry is not None:
                ids = np.concatenate([carry[0], ids])
                dense = concat_dense([carry[1], dense])
            start = 0
            while len(ids) - start >= batch_size:
                sl = slice(start, start + batch_size)
                yield ids[sl], take_rows(dense, sl)
                start += batch_size
            carry = (ids[start:], take_rows(dense, slice(start, None)))
        if seen == 0:
            raise DataError(f"{path}: no training rows (the store is empty or all rows are validation)")
        epoch += 1


def validation_rows(
    path: str | os.PathLike[str],
    keys: Mapping[str, TokenKey],
    *,
    val_fraction: float,
    seed: int,
    max_rows: int,
    chunk_rows: int = 8192,
) -> tuple[np.ndarray, Dense] | None:
    """The first ``max_rows`` validation rows of the store (None when there are none)."""
    got_ids: list[np.ndarray] = []
    got: list[Dense] = []
    n = 0
    for ids, dense in iter_dense_chunks(path, keys, chunk_rows=chunk_rows):
        rows = np.flatnonzero(is_validation(ids, val_fraction, seed))[: max_rows - n]
        if len(rows):
            got_ids.append(ids[rows])
            got.append(take_rows(dense, rows))
            n += len(rows)
        if n >= max_rows:
            break
    if not n:
        return None
    return np.concatenate(got_ids), concat_dense(got)


class MaskedTokenDataset(IterableDataset):
    """Masked training batches for one rank, one per step from ``start_step`` on.

    Every rank reads the same global batch (``batch_size`` rows) and keeps its slice of
    ``batch_size // world_size`` rows. With ``num_workers`` DataLoader workers, worker ``w``
    prepares the steps ``s`` with ``s % num_workers == w`` (the DataLoader returns them in order).
    Use with ``DataLoader(dataset, batch_size=None)``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        keys: Mapping[str, TokenKey],
        key_names: Sequence[str],
        *,
        batch_size: int,
        input_budget: int,
        target_budget: int,
        alpha: float = 1.0,
        seed: int = 0,
        val_fraction: float = 0.0,
        chunk_rows: int = 8192,
        start_step: int = 0,
        steps: int | None = None,
        rank: int = 0,
        world_size: int = 1,
        focus: Sequence[str] = (),
        focus_prob: float = 0.0,
    ):
        if batch_size % world_size:
            raise ValueError(f"batch_size {batch_size} is not divisible by world size {world_size}")
        self.path, self.keys, self.key_names = path, dict(keys), list(key_names)
        self.batch_size, self.seed, self.val_fraction = batch_size, seed, val_fraction
        self.input_budget, self.target_budget, self.alpha = input_budget, target_budget, alpha
        self.chunk_rows, self.start_step, self.steps = chunk_rows, start_step, steps
        self.rank, self.world_size = rank, world_size
        self.focus, self.focus_prob = tuple(focus), focus_prob

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
        per = self.batch_size // self.world_size
        stream = global_batches(
            self.path, self.keys, batch_size=self.batch_size, seed=self.seed,
            val_fraction=self.val_fraction, chunk_rows=self.chunk_rows,
        )
        for step, (ids, dense) in enumerate(stream):
            if self.steps is not None and step >= self.start_step + self.steps:
                return
            if step < self.start_step or step % nw != wid:
                continue
            sl = slice(self.rank * per, (self.rank + 1) * per)
            batch = mask_batch(
                ids[sl], take_rows(dense, sl), self.key_names,
                input_budget=self.input_budget, target_budget=self.target_budget,
                alpha=self.alpha, seed=self.seed, step=step, focus=self.focus,
                focus_prob=self.focus_prob,
            )
            batch["step"] = step
            yield batch


def validation_batches(
    ids: np.ndarray,
    dense: Dense,
    key_names: Sequence[str],
    *,
    batch_size: int,
    input_budget: int,
    target_budget: int,
    alpha: float,
    seed: int,
    focus: Sequence[str] = (),
    focus_prob: float = 0.0,
) -> list[dict[str, np.ndarray]]:
    """Fixed masked batches of the validation rows (same masks at every evaluation)."""
    out = []
    for s in range(0, len(ids), batch_size):
        sl = slice(s, s + batch_size)
        out.append(
            mask_batch(
                ids[sl], take_rows(dense, sl), key_names, input_budget=input_budget,
                target_budget=target_budget, alpha=alpha, seed=seed, step=VAL_STEP,
                focus=focus, focus_prob=focus_prob,
            )
        )
    return out


def to_device(batch: Mapping[str, Any], device: torch.device) -> dict[str, torch.Tensor]:
    """Numpy batch arrays -> tensors on ``device`` (the ``step`` entry is dropped)."""
    return {
        k: torch.as_tensor(v).to(device, non_blocking=True)
        for k, v in batch.items()
        if k != "step"
    }
