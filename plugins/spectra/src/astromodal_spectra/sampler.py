"""Bounded, seeded, order-independent training samples for one group.

Per file, the rows kept are those with data whose hashed row keys are the
``max_rows_per_file`` smallest of the file; within a kept row, the patches kept are those with
the ``max_points_per_row / patch_size`` smallest hashed patch keys; the kept vectors go into
the group's reservoir (``astromodal_core.sampling.BottomK``) of ``max_features`` keyed by
``hash_keys(row id, seed, salt=group, sub=patch index)``. Row norms of every row with data go
into a second reservoir.

Memory is bounded by the reservoirs and one record batch, never by the file: a file is read in
two passes, :meth:`GroupSample.scan` (norms, longest row, the file's smallest row keys) then
:meth:`GroupSample.add` (features of the kept rows only). When the whole file fits the row
limit, one pass does both (``scan`` then ``add`` on the same batch).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from astromodal_core.sampling import BottomK, hash_keys

from .fused import FluxRows
from .group_model import row_norm, sample_vectors, sample_width
from .points import Points

_MAX_NORMS = 1_000_000
_ALL = np.uint64(0xFFFFFFFFFFFFFFFF)


def _take(points: Points, rows: np.ndarray) -> Points:
    return Points(points.value[rows], points.sigma[rows], points.valid[rows], points.lengths[rows],
                  None if points.time is None else points.time[rows])


class GroupSample:
    """The mergeable training sample of one group (vectors, row norms, longest row)."""

    def __init__(self, spec: Mapping[str, Any], *, seed: int, max_features: int,
                 max_rows_per_file: int, max_points_per_row: int):
        self.spec = dict(spec)
        self.seed = int(seed)
        self.max_rows = int(max_rows_per_file)
        p = int(spec["patch_size"])
        self.cap = max(1, int(max_points_per_row) // p)
        self.vectors = BottomK(int(max_features), width=sample_width(spec), dtype=np.float32)
        self.norms = BottomK(min(int(max_features), _MAX_NORMS))
        self.max_len = 0
        self.max_span = 0.0  # ZTF: the longest time from a row's first to its last valid point
        self.rows = 0
        self._row_keys = np.empty(0, dtype=np.uint64)  # the file's smallest row keys so far
        self._full: tuple[np.ndarray, np.uint64] | None = None  # (reservoir keys, their max)

    def row_keys(self, ids: np.ndarray) -> np.ndarray:
        """The hashed keys that choose a file's rows."""
        return hash_keys(ids, self.seed, salt=f"{self.spec['name']}/rows")

    def scan(self, points: Points, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """First pass over one batch of the current file: norms, longest row, row keys.
        Returns the rows' ``(norm, has_data)`` (for :meth:`add` on the same batch)."""
        self.max_len = max(self.max_len, int(points.lengths.max(initial=0)))
        norm, has = row_norm(points, self.spec["kind"])
        if points.time is not None and has.any():
            t = np.where(points.valid[has], points.time[has], np.nan)
            self.max_span = max(self.max_span, float(np.max(np.nanmax(t, axis=1) - np.nanmin(t, axis=1))))
        self.rows += int(has.sum())
        if not has.any():
            return norm, has
        self.norms.add(hash_keys(ids[has], self.seed, salt=f"{self.spec['name']}/norm"), norm[has])
        keys = np.union1d(self._row_keys, self.row_keys(ids[has]))  # sorted, distinct
        self._row_keys = keys[: self.max_rows]
        return norm, has

    @property
    def threshold(self) -> np.uint64:
        """The largest row key kept in the current file (so far)."""
        if len(self._row_keys) < self.max_rows:
            return _ALL
        return self._row_keys[-1]

    def selected(self, ids: np.ndarray) -> np.ndarray:
        """True for the rows of ``ids`` whose row key is kept (after :meth:`scan` of the file)."""
        return self.row_keys(ids) <= self.threshold

    def add(self, points: Points | FluxRows, ids: np.ndarray,
            norm_has: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        """Second pass over one batch: the patches of the kept rows into the reservoir
        (``norm_has``: what :meth:`scan` returned for this batch, if it was just scanned)."""
        norm, has = row_norm(points, self.spec["kind"]) if norm_has is None else norm_has
        keep = np.flatnonzero(has & self.selected(ids))
        if not len(keep):
            return
        if isinstance(points, FluxRows):
            self._add_pixels(points, ids, norm, keep)
            return
        pts, ids = _take(points, keep), ids[keep]
        vec, any_valid = sample_vectors(pts, norm[keep], self.spec)
        rows, cols = np.nonzero(any_valid)
        pk = hash_keys(ids[rows], self.seed, salt=self.spec["name"], sub=cols)
        if any_valid.shape[1] > self.cap:  # a row's patches with the smallest keys
            order = np.lexsort((pk, rows))
            rank = np.arange(len(order)) - np.searchsorted(rows[order], rows[order], side="left")
            pick = order[rank < self.cap]
            rows, cols, pk = rows[pick], cols[pick], pk[pick]
        pk, vectors = self._below_full_reservoir(pk, rows, cols)
        self.vectors.add(pk, vec[vectors])

    def _add_pixels(self, rows: FluxRows, ids: np.ndarray, norm: np.ndarray, keep: np.ndarray
                    ) -> None:
        """:meth:`add` of a flux_ivar group read by the fused reader: the same patches, keys
        and vectors, picked and computed row by row in one kernel."""
        p = int(self.spec["patch_size"])
        scale = (10.0 ** norm[keep][:, None])[:, 0]  # as point_features
        valid = rows.patch_valid(keep, p)
        row_keys = hash_keys(ids[keep], self.seed, salt=self.spec["name"])
        keys, vec, offered = rows.sample(keep, scale, valid, row_keys, self.cap, self._limit(), p)
        self.vectors.seen += offered - len(keys)
        self.vectors.add(keys, vec)

    def _limit(self) -> np.uint64:
        """The largest key a full reservoir still takes (all keys while it is not full)."""
        res = self.vectors
        if len(res.keys) < res.k:
            return _ALL
        if self._full is None or self._full[0] is not res.keys:  # compacted since
            self._full = (res.keys, res.keys.max())
        return self._full[1]

    def _below_full_reservoir(self, pk: np.ndarray, rows: np.ndarray, cols: np.ndarray
                              ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
        """Drop offers a full reservoir would refuse (keys above its largest), counting them
        as seen: the same sample, without holding them until the next compaction."""
        res = self.vectors
        if len(res.keys) < res.k:
            return pk, (rows, cols)
        if self._full is None or self._full[0] is not res.keys:  # compacted since
            self._full = (res.keys, res.keys.max())
        fits = pk <= self._full[1]
        res.seen += int(len(pk) - np.count_nonzero(fits))
        return pk[fits], (rows[fits], cols[fits])

    def end_file(self) -> None:
        """Forget the current file's row keys (the next file chooses its own rows)."""
        self._row_keys = np.empty(0, dtype=np.uint64)

    def merge(self, other: GroupSample) -> GroupSample:
        """Fold in the sample of other files."""
        if other.spec != self.spec:
            raise ValueError(f"cannot merge samples of different groups ({other.spec['name']!r})")
        self.vectors.merge(other.vectors)
        self.norms.merge(other.norms)
        self.max_len = max(self.max_len, other.max_len)
        self.max_span = max(self.max_span, other.max_span)
        self.rows += other.rows
        return self
