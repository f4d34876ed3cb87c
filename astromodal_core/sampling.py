"""Deterministic, mergeable, order-independent reservoir sampling (bottom-k by hashed keys).

Each value gets a pseudo-random key computed from ``(seed, salt, row id, position)``, never
from the order it was read in. Keeping the ``k`` smallest keys is a uniform sample without
replacement; the same data and seed give the same sample whatever the order of the files, and
two reservoirs built on different workers merge into the one a single pass would have built.
"""

from __future__ import annotations

import zlib

import numpy as np

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _splitmix(x: np.ndarray) -> np.ndarray:
    x = x + _GOLDEN
    x = (x ^ (x >> np.uint64(30))) * _M1
    x = (x ^ (x >> np.uint64(27))) * _M2
    return x ^ (x >> np.uint64(31))


def hash_keys32(ids: np.ndarray, seed: int, salt: str = "") -> np.ndarray:
    """uint32 keys (the high half of :func:`hash_keys`): half the memory for reservoirs of
    millions of scalars; ties (rare) are broken by value, so samples stay deterministic."""
    return (hash_keys(ids, seed, salt) >> np.uint64(32)).astype(np.uint32)


def hash_keys(ids: np.ndarray, seed: int, salt: str = "", sub: np.ndarray | None = None) -> np.ndarray:
    """uint64 keys for row ids (and optional sub-positions within a row)."""
    base = np.uint64(zlib.crc32(salt.encode()) ^ ((int(seed) & 0xFFFFFFFF) << 32))
    with np.errstate(over="ignore"):
        x = _splitmix(np.asarray(ids).astype(np.int64).view(np.uint64) ^ base)
        if sub is not None:
            x = _splitmix(x ^ np.asarray(sub).astype(np.uint64))
    return x


class BottomK:
    """A bounded reservoir of rows (1-D values or 2-D feature vectors) keyed by hashed ids."""

    def __init__(self, k: int, width: int | None = None, dtype: type = np.float64,
                 key_dtype: type = np.uint64):
        if k < 1:
            raise ValueError(f"reservoir size must be >= 1, got {k}")
        self.k = int(k)
        self.width = width
        shape = (0,) if width is None else (0, width)
        self.keys = np.empty(0, dtype=key_dtype)
        self.values = np.empty(shape, dtype=dtype)
        self.seen = 0
        self._pending_keys: list[np.ndarray] = []
        self._pending_values: list[np.ndarray] = []
        self._pending = 0

    def add(self, keys: np.ndarray, values: np.ndarray) -> None:
        """Offer values with their keys; memory stays O(k)."""
        if len(keys) != len(values):
            raise ValueError("keys and values differ in length")
        self.seen += len(keys)
        if not len(keys):
            return
        self._pending_keys.append(np.asarray(keys, dtype=self.keys.dtype))
        self._pending_values.append(np.asarray(values, dtype=self.values.dtype))
        self._pending += len(keys)
        if self._pending >= 2 * self.k:
            self._compact()

    def merge(self, other: BottomK) -> BottomK:
        """Fold another reservoir (built on other files or workers) into this one."""
        other._compact()
        self.add(other.keys, other.values)
        self.seen += other.seen - len(other.keys)
        return self

    def _order(self, keys: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Indices sorting by key, ties broken by value, so arrival order never matters."""
        order = np.argsort(keys)
        sorted_keys = keys[order]
        if not np.any(sorted_keys[1:] == sorted_keys[:-1]):
            return order  # distinct keys: the one order (lexsort's, without its passes over values)
        cols = values.reshape(len(values), -1).T[::-1] if len(values) else []
        return np.lexsort((*cols, keys))

    def _compact(self) -> None:
        if not self._pending_keys:
            return
        keys = np.concatenate([self.keys, *self._pending_keys])
        values = np.concatenate([self.values, *self._pending_values])
        self._pending_keys, self._pending_values, self._pending = [], [], 0
        if len(keys) > self.k:
            idx = np.argpartition(keys, self.k - 1)[: self.k]
            threshold = keys[idx].max()
            below = np.flatnonzero(keys < threshold)
            tied = np.flatnonzero(keys == threshold)
            if len(below) + len(tied) > self.k:  # equal keys (one id in two files): by value
                tied = tied[self._order(keys[tied], values[tied])][: self.k - len(below)]
            idx = np.concatenate([below, tied])
            keys, values = keys[idx], values[idx]
        self.keys, self.values = keys, values  # unsorted: sorting waits for sample()

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """``(keys, values)`` of the kept sample, in no particular order (no sort)."""
        self._compact()
        return self.keys, self.values

    def sample(self) -> np.ndarray:
        """The kept values, ordered by key then value (so deterministic)."""
        self._compact()
        order = self._order(self.keys, self.values)
        self.keys, self.values = self.keys[order], self.values[order]
        return self.values

    def __len__(self) -> int:
        self._compact()
        return len(self.keys)
