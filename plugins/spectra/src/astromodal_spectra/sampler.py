"""Bounded, seeded, order-independent training samples for one group.

Per file, rows are chosen by the bottom-``max_rows_per_file`` hashed row keys and, within a
row, patches by the bottom-``max_points_per_row / patch_size`` hashed patch keys; the chosen
vectors go into a group reservoir (``astromodal_core.sampling.BottomK``) of
``max_features_per_group`` keyed by ``hash_keys(row id, seed, salt=group, sub=patch index)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from astromodal_core.sampling import BottomK, hash_keys

from .group_model import n_channels, patchify, point_features, row_norm
from .points import Points

_RANK_BITS = 20
_MAX_NORMS = 1_000_000


class GroupSample:
    """The mergeable training sample of one group (vectors, row norms, longest row)."""

    def __init__(self, spec: Mapping[str, Any], *, seed: int, max_features: int,
                 max_rows_per_file: int, max_points_per_row: int):
        self.spec = dict(spec)
        self.seed = int(seed)
        self.max_rows = int(max_rows_per_file)
        p = int(spec["patch_size"])
        self.cap = min(max(1, int(max_points_per_row) // p), (1 << _RANK_BITS) - 1)
        width = n_channels(spec["kind"]) * p
        self.vectors = BottomK(int(max_features), width=width, dtype=np.float32)
        self.norms = BottomK(min(int(max_features), _MAX_NORMS))
        self.max_len = 0
        self.rows = 0
        self._file: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._file_n = 0

    def add(self, points: Points, ids: np.ndarray) -> None:
        """Offer one batch of rows of the current file."""
        name = self.spec["name"]
        self.max_len = max(self.max_len, int(points.lengths.max(initial=0)))
        norm, has = row_norm(points, self.spec["kind"])
        self.rows += int(has.sum())
        if not has.any():
            return
        self.norms.add(hash_keys(ids[has], self.seed, salt=f"{name}/norm"), norm[has])
        vec, any_valid = patchify(point_features(points, np.where(has, norm, 0.0),
                                                 self.spec["kind"]), points.valid,
                                  int(self.spec["patch_size"]))
        rows, cols = np.nonzero(any_valid)
        pk = hash_keys(ids[rows], self.seed, salt=name, sub=cols)
        order = np.lexsort((pk, rows))
        rows_s = rows[order]
        starts = np.searchsorted(rows_s, rows_s, side="left")
        rank = np.arange(len(rows_s)) - starts
        keep = order[rank < self.cap]
        rk = hash_keys(ids[rows[keep]], self.seed, salt=f"{name}/rows")
        mask = np.uint64(~((1 << _RANK_BITS) - 1) & 0xFFFFFFFFFFFFFFFF)
        fkey = (rk & mask) | (rank[rank < self.cap].astype(np.uint64))
        self._file.append((fkey, pk[keep], vec[rows[keep], cols[keep]]))
        self._file_n += len(fkey)
        if self._file_n > 4 * self.max_rows * self.cap:
            self._compact_file()

    def _compact_file(self) -> None:
        if not self._file:
            return
        fkey = np.concatenate([f[0] for f in self._file])
        pk = np.concatenate([f[1] for f in self._file])
        vec = np.concatenate([f[2] for f in self._file])
        k = self.max_rows * self.cap
        if len(fkey) > k:
            idx = np.argpartition(fkey, k - 1)[:k]
            fkey, pk, vec = fkey[idx], pk[idx], vec[idx]
        self._file = [(fkey, pk, vec)]
        self._file_n = len(fkey)

    def end_file(self) -> None:
        """Keep the file's first ``max_rows_per_file`` rows by row key; feed the reservoir."""
        self._compact_file()
        if not self._file:
            return
        fkey, pk, vec = self._file[0]
        self._file, self._file_n = [], 0
        row_key = fkey >> np.uint64(_RANK_BITS)
        distinct = np.unique(row_key)
        if len(distinct) > self.max_rows:
            keep = row_key <= distinct[self.max_rows - 1]
            pk, vec = pk[keep], vec[keep]
        self.vectors.add(pk, vec)

    def merge(self, other: GroupSample) -> GroupSample:
        """Fold in the sample of other files."""
        if other.spec != self.spec:
            raise ValueError(f"cannot merge samples of different groups ({other.spec['name']!r})")
        other.end_file()
        self.end_file()
        self.vectors.merge(other.vectors)
        self.norms.merge(other.norms)
        self.max_len = max(self.max_len, other.max_len)
        self.rows += other.rows
        return self
