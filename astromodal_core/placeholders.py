"""Survey placeholders: values catalogues write for "not measured" (99, -99, 99.99, -999...).

A tokenizer that bins values must know which numbers mean "missing" in each column (its
*sentinels*); a placeholder it does not know is binned as a real, extreme value. These helpers
count exact placeholders in the rows a tokenizer reads for training, and name the columns where
one is frequent but not declared, so a tokenizer can warn::

    counts = PlaceholderCounts()
    counts.add("r_auto", values)                  # per batch, every row read
    spikes = counts.spikes(declared=lambda c: sentinels[c])
    if spikes:
        warnings.warn(spike_message(spikes), RuntimeWarning)

The counts are plain dicts, so they travel with a training sample and merge across files.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs
import numpy as np

#: values surveys write for "not measured" (magnitudes, errors, fluxes), both signs
PLACEHOLDER_VALUES: tuple[float, ...] = tuple(
    v for p in (99.0, 99.99, 999.0, 9999.0, 99999.0, 999999.0, 1e30) for v in (p, -p)
)
#: a placeholder is a *spike* when it is at least this fraction of a column's rows ...
MIN_FRACTION = 0.001
#: ... and at least this many rows
MIN_COUNT = 5


@attrs.frozen
class Spike:
    """One undeclared placeholder in a column: ``count`` of its ``rows`` equal ``value``."""

    column: str
    value: float
    count: int
    rows: int

    @property
    def fraction(self) -> float:
        return self.count / self.rows if self.rows else 0.0


def count_placeholders(values: np.ndarray, candidates: Iterable[float] = PLACEHOLDER_VALUES) -> dict[float, int]:
    """``{placeholder: rows equal to it}`` in ``values`` (compared in the array's own float
    width, so a float32 99.99 counts); only placeholders present are listed."""
    v = np.asarray(values)
    if v.dtype.kind not in "fiu" or not v.size:
        return {}
    low = min(abs(c) for c in candidates)
    with np.errstate(invalid="ignore"):
        big = v[np.abs(v) >= low * (1 - 1e-6)]
    if not big.size:
        return {}
    out = {}
    for c in candidates:
        target = np.asarray(c).astype(v.dtype) if v.dtype.kind == "f" else c
        n = int(np.count_nonzero(big == target))
        if n:
            out[float(c)] = n
    return out


class PlaceholderCounts:
    """Placeholder counts per column and the rows read per column, mergeable across files."""

    def __init__(self, counts: Mapping[str, Mapping[float, int]] | None = None,
                 rows: Mapping[str, int] | None = None):
        self.counts: dict[str, dict[float, int]] = {
            str(c): {float(k): int(n) for k, n in v.items()} for c, v in (counts or {}).items()}
        self.rows: dict[str, int] = {str(c): int(n) for c, n in (rows or {}).items()}

    def add(self, column: str, values: np.ndarray) -> None:
        """Count the placeholders of one batch of ``column``."""
        self.rows[column] = self.rows.get(column, 0) + int(np.asarray(values).shape[0])
        found = count_placeholders(values)
        if found:
            mine = self.counts.setdefault(column, {})
            for k, n in found.items():
                mine[k] = mine.get(k, 0) + n

    def merge(self, other: PlaceholderCounts) -> PlaceholderCounts:
        """A new object holding both counts."""
        out = PlaceholderCounts(self.counts, self.rows)
        for c, n in other.rows.items():
            out.rows[c] = out.rows.get(c, 0) + n
        for c, found in other.counts.items():
            mine = out.counts.setdefault(c, {})
            for k, n in found.items():
                mine[k] = mine.get(k, 0) + n
        return out

    def as_dict(self) -> dict[str, Any]:
        """Plain data (JSON-able after ``str`` keys): ``{"counts": ..., "rows": ...}``."""
        return {"counts": {c: dict(v) for c, v in self.counts.items()}, "rows": dict(self.rows)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> PlaceholderCounts:
        data = data or {}
        return cls(data.get("counts"), data.get("rows"))

    def spikes(self, declared: Callable[[str], Iterable[float]] | None = None, *,
               skip: Iterable[str] = (), min_fraction: float = MIN_FRACTION,
               min_count: int = MIN_COUNT) -> list[Spike]:
        """Frequent placeholders not among ``declared(column)`` (columns in ``skip`` ignored),
        by column then value."""
        skip = set(skip)
        out = []
        for c in sorted(self.counts):
            if c in skip:
                continue
            known = {float(s) for s in (declared(c) if declared is not None else ())}
            rows = self.rows.get(c, 0)
            for value, n in sorted(self.counts[c].items()):
                if value in known or n < min_count or (rows and n < min_fraction * rows):
                    continue
                out.append(Spike(c, value, n, rows))
        return out


def spike_message(spikes: Iterable[Spike], *, where: str = "", hint: str = "",
                  names: Mapping[str, str] | None = None) -> str:
    """One line naming every spike's column and value (``names`` maps a column to how the
    message should call it, e.g. with its file column)."""
    spikes = list(spikes)
    names = names or {}
    items = [f"{names.get(s.column, repr(s.column))} = {s.value:g} ({s.count} of {s.rows} rows)"
             for s in spikes]
    cols = list(dict.fromkeys(s.column for s in spikes))
    head = f"{where}: " if where else ""
    return (f"{head}{len(cols)} column(s) hold a common 'not measured' placeholder that is not "
            f"declared a sentinel, so it is binned as a real value: {'; '.join(items)}"
            + (f". {hint}" if hint else ""))
