"""Synthetic token keys and token stores with a learnable relation (tests, benchmarks, demos).

Every key is a noisy function of one latent value per row, so any key can be predicted from
the others (the scalar ``tok_t_c`` in particular). Some rows miss values: mask tokens for
scalars, sequences and grids, empty lists for the ragged key.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from astromodal_core import TokenKey, hookimpl
from astromodal_core.store import write_token_store

KEYS: tuple[TokenKey, ...] = (
    TokenKey("tok_t_a", 17, "scalar", mask_token=16, modality="TestA"),
    TokenKey("tok_t_b", 17, "scalar", mask_token=16, modality="TestB"),
    TokenKey("tok_t_c", 17, "scalar", mask_token=16, modality="TestC"),
    TokenKey("tok_t_seq", 33, "sequence", max_length=6, mask_token=32, modality="TestSeq"),
    TokenKey("tok_t_rag", 20, "ragged", max_length=8, modality="TestRag"),
    TokenKey("tok_t_grid", 12, "grid", max_length=9, shape=(3, 3), mask_token=11, modality="TestGrid"),
)
KEYMAP: dict[str, TokenKey] = {k.name: k for k in KEYS}
FINGERPRINTS: dict[str, str] = {"tok_t_a": "aaaa", "tok_t_b": "bbbb", "tok_t_c": "cccc"}


class SyntheticKeysPlugin:
    """A plugin object registering :data:`KEYS` (``astromodal_core.register_plugin(obj, name)``)."""

    def __init__(self, keys: Sequence[TokenKey] = KEYS):
        self.keys = tuple(keys)

    @hookimpl
    def astromodal_register_token_keys(self, register):  # noqa: ANN001
        for k in self.keys:
            register(k)


def synthetic_columns(n: int, seed: int, first_id: int = 0) -> tuple[np.ndarray, dict]:
    """``(ids, {key: tokens})`` for :data:`KEYS`; ``tok_t_c`` is the binned latent."""
    rng = np.random.default_rng(seed)
    z = rng.uniform(0, 1, n)

    def scalar(noise: float) -> np.ndarray:
        return np.clip(np.floor((z + rng.normal(0, noise, n)) * 16), 0, 15).astype(np.uint16)

    a, b, c = scalar(0.02), scalar(0.02), scalar(0.01)
    a[rng.random(n) < 0.1] = 16  # missing values
    b[rng.random(n) < 0.1] = 16
    seq = np.clip(np.floor(z[:, None] * 32 + np.arange(6)[None, :]), 0, 31).astype(np.uint16)
    seq[rng.random(n) < 0.1, 3] = 32
    lengths = rng.integers(0, 9, n)
    lengths[rng.random(n) < 0.1] = 0
    flat = np.concatenate(
        [np.clip(np.floor(z[i] * 19) + rng.integers(-1, 2, m), 0, 19) for i, m in enumerate(lengths)]
    ).astype(np.uint16)
    indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    grid = np.repeat(np.floor(z * 11).astype(np.uint16)[:, None], 9, 1).reshape(n, 3, 3)
    grid[rng.random(n) < 0.1] = 11
    ids = np.arange(first_id, first_id + n, dtype=np.int64)
    cols = {"tok_t_a": a, "tok_t_b": b, "tok_t_c": c, "tok_t_seq": seq,
            "tok_t_rag": (flat, indptr), "tok_t_grid": grid}
    return ids, cols


def synthetic_token_store(
    path: str | os.PathLike[str],
    n: int,
    seed: int = 0,
    *,
    first_id: int = 0,
    keys: Sequence[TokenKey] = KEYS,
    fingerprints: Mapping[str, str] = FINGERPRINTS,
) -> Path:
    """Write a token store of ``n`` synthetic rows for :data:`KEYS`."""
    ids, cols = synthetic_columns(n, seed, first_id)
    return write_token_store(path, ids, cols, keys, fingerprints=fingerprints)
