"""Quantile bins of one column: edges from a sample, bin medians and widths for decoding.

Token ``t`` of a value ``x`` is ``np.searchsorted(edges, x, side="right")``: bin ``t`` holds
``edges[t-1] <= x < edges[t]``; bin 0 and the last bin are open-ended. Duplicate edges (ties,
small samples) are removed, so a column may use fewer than ``n_bins`` tokens: its
``effective_bins`` is reported, never silently padded with empty or repeated bins.
"""

from __future__ import annotations

from typing import Any

import attrs
import numpy as np


@attrs.frozen(eq=False)
class BinTable:
    """Fitted bins of one column.

    ``edges`` (effective_bins - 1,) increasing float64; ``centers`` (effective_bins,) the
    median training value of each bin; ``widths`` (effective_bins,) each bin's extent (the
    outer bins end at the sample's minimum / maximum); ``counts`` training values per bin.
    """

    edges: np.ndarray
    centers: np.ndarray
    widths: np.ndarray
    counts: np.ndarray
    n_samples: int

    @property
    def effective_bins(self) -> int:
        return int(len(self.edges) + 1)

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        return {
            f"{prefix}edges": self.edges,
            f"{prefix}centers": self.centers,
            f"{prefix}widths": self.widths,
            f"{prefix}counts": self.counts,
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, Any], prefix: str, n_samples: int) -> BinTable:
        return cls(
            edges=np.asarray(arrays[f"{prefix}edges"], dtype=np.float64),
            centers=np.asarray(arrays[f"{prefix}centers"], dtype=np.float64),
            widths=np.asarray(arrays[f"{prefix}widths"], dtype=np.float64),
            counts=np.asarray(arrays[f"{prefix}counts"], dtype=np.int64),
            n_samples=int(n_samples),
        )


def _midpoint_edges(s: np.ndarray, n_bins: int) -> np.ndarray:
    n = len(s)
    k = np.arange(1, n_bins, dtype=np.int64)
    idx = np.clip((k * n) // n_bins, 1, n - 1)
    # a midpoint of two equal values is that value; keep edges strictly increasing
    return np.unique(0.5 * (s[idx - 1] + s[idx]))


def quantile_edges(sorted_values: np.ndarray, n_bins: int) -> np.ndarray:
    """Strictly increasing edges splitting a sorted sample into ``<= n_bins`` equal-count bins.

    With at most ``n_bins`` distinct values every value gets its own bin (edges at the
    midpoints between distinct values). Otherwise edge ``k`` is the midpoint of the order
    statistics either side of quantile ``k / n_bins``. A value repeated more often than one
    bin holds (an "atom": a tie, a catalogue default) gets a bin of its own and the other
    bins are spread over the remaining values, so ties cost one bin each instead of
    collapsing many quantiles into one.
    """
    s = np.asarray(sorted_values, dtype=np.float64)
    n = len(s)
    if n < 2:
        return np.empty(0, dtype=np.float64)
    first = np.concatenate([[True], s[1:] != s[:-1]])
    distinct = s[first]
    if len(distinct) <= n_bins:
        return 0.5 * (distinct[:-1] + distinct[1:])
    counts = np.diff(np.concatenate([np.flatnonzero(first), [n]]))
    mid = 0.5 * (distinct[:-1] + distinct[1:])  # midpoint above each distinct value

    def atom_edges(mask: np.ndarray) -> np.ndarray:
        where = np.flatnonzero(mask)
        below = mid[where[where > 0] - 1]
        above = mid[where[where < len(distinct) - 1]]
        return np.unique(np.concatenate([below, above]))

    atoms = np.zeros(len(distinct), dtype=bool)
    fixed = np.empty(0)
    while True:
        budget = n_bins - len(fixed)  # bins left for the other values
        rest = int(counts[~atoms].sum())
        new = (~atoms) & (counts * budget > rest)
        if not new.any():
            break
        trial = atom_edges(atoms | new)
        if n_bins - len(trial) < 2:
            break
        atoms |= new
        fixed = trial
    if not atoms.any():
        return _midpoint_edges(s, n_bins)
    others = s[~np.repeat(atoms, counts)]
    edges = _midpoint_edges(others, n_bins - len(fixed)) if len(others) >= 2 else np.empty(0)
    return _drop_empty(s, np.unique(np.concatenate([edges, fixed])))


def _drop_empty(s: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Remove the lower edge of every bin holding no sample value (the partition is unchanged)."""
    while len(edges):
        bounds = np.concatenate([[0], np.searchsorted(s, edges, side="left"), [len(s)]])
        empty = np.flatnonzero(np.diff(bounds) == 0)
        if not len(empty):
            break
        edges = np.delete(edges, np.unique(np.maximum(empty - 1, 0)))
    return edges


def fit_bins(values: np.ndarray, n_bins: int) -> BinTable:
    """Bins of a sample of finite values (order does not matter)."""
    s = np.sort(np.asarray(values, dtype=np.float64))
    if not len(s):
        raise ValueError("no finite values to fit bins on")
    edges = quantile_edges(s, n_bins)
    bounds = np.concatenate([[0], np.searchsorted(s, edges, side="left"), [len(s)]])
    start, stop = bounds[:-1], bounds[1:]
    counts = (stop - start).astype(np.int64)
    lower = np.concatenate([[s[0]], edges])
    upper = np.concatenate([edges, [s[-1]]])
    nonempty = counts > 0
    lo_mid = np.where(nonempty, (start + stop - 1) // 2, 0)
    hi_mid = np.where(nonempty, (start + stop) // 2, 0)
    lo_mid = np.minimum(lo_mid, len(s) - 1)
    hi_mid = np.minimum(hi_mid, len(s) - 1)
    centers = np.where(nonempty, 0.5 * (s[lo_mid] + s[hi_mid]), 0.5 * (lower + upper))
    widths = np.maximum(upper - lower, 0.0)
    return BinTable(edges=edges, centers=centers, widths=widths, counts=counts, n_samples=len(s))
