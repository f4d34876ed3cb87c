"""A bottom-k sample keyed by :func:`astromodal_core.sampling.hash_keys`, without sorting.

It keeps exactly the values :class:`astromodal_core.sampling.BottomK` keeps (the ``k``
smallest keys, so a uniform, seeded, order-independent and mergeable sample) but selects
them with ``argpartition`` instead of sorting: quantile edges need the set, not its order,
and sorting millions of keys per column dominated training time.
"""

from __future__ import annotations

import numpy as np


class KeyedSample:
    """Values with uint64 keys; holds at most ``k`` (plus a pending buffer below ``2k``)."""

    def __init__(self, k: int):
        if k < 1:
            raise ValueError(f"sample size must be >= 1, got {k}")
        self.k = int(k)
        self._keys: list[np.ndarray] = []
        self._values: list[np.ndarray] = []
        self._n = 0

    def add(self, keys: np.ndarray, values: np.ndarray) -> None:
        """Offer values with their keys; memory stays O(k)."""
        if len(keys) != len(values):
            raise ValueError("keys and values differ in length")
        if not len(keys):
            return
        self._keys.append(np.asarray(keys, dtype=np.uint64))
        self._values.append(np.asarray(values, dtype=np.float64))
        self._n += len(keys)
        if self._n >= 2 * self.k:
            self._shrink()

    def _shrink(self) -> None:
        keys = np.concatenate(self._keys) if len(self._keys) != 1 else self._keys[0]
        values = np.concatenate(self._values) if len(self._values) != 1 else self._values[0]
        if len(keys) > self.k:
            idx = np.argpartition(keys, self.k - 1)[: self.k]
            keys, values = keys[idx], values[idx]
        self._keys, self._values, self._n = [keys], [values], len(keys)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """``(keys, values)`` of the kept sample (in no particular order)."""
        if not self._keys:
            return np.empty(0, dtype=np.uint64), np.empty(0, dtype=np.float64)
        self._shrink()
        return self._keys[0], self._values[0]

    def __len__(self) -> int:
        return len(self.arrays()[0])
