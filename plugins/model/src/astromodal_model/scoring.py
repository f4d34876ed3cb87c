"""Scores of predicted distributions: PIT, CRPS, PIT-histogram flatness and photo-z figures.

A predicted distribution is a set of atoms (values) with probabilities: the model's bins (one
value per token id, the same for every row: ``atoms`` of shape (V,)) or an ensemble per row
(a random forest's trees, a kNN's neighbours: ``atoms`` of shape (n, V)). NaN atoms or atoms
with zero probability do not count.
"""

from __future__ import annotations

import numpy as np


def _prepare(atoms: np.ndarray, probs: np.ndarray | None, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Atoms sorted per row (n, V) and their probabilities normalised; NaN atoms get weight 0
    and sit at the row's largest finite atom."""
    x = np.asarray(atoms, dtype=np.float64)
    if x.ndim == 1:
        x = np.broadcast_to(x, (n, x.size))
    p = np.full(x.shape, 1.0) if probs is None else np.array(probs, dtype=np.float64)
    if p.shape != x.shape:
        raise ValueError(f"probabilities of shape {p.shape} for atoms of shape {x.shape}")
    bad = ~np.isfinite(x)
    p = np.where(bad, 0.0, p)
    total = p.sum(1, keepdims=True)
    if (total <= 0).any():
        raise ValueError(f"row {int(np.flatnonzero(total[:, 0] <= 0)[0])} has no probability on a finite atom")
    top = np.max(np.where(bad, -np.inf, x), axis=1, keepdims=True)
    x = np.where(bad, top, x)
    order = np.argsort(x, axis=1, kind="stable")
    return np.take_along_axis(x, order, 1), np.take_along_axis(p, order, 1) / total


def crps(atoms: np.ndarray, probs: np.ndarray | None, truth: np.ndarray) -> np.ndarray:
    """Continuous ranked probability score per row, ``E|X - y| - E|X - X'| / 2``, of a
    discrete distribution (``probs`` None: equally weighted atoms, an ensemble). Lower is
    better; for a point prediction it is the absolute error."""
    y = np.asarray(truth, dtype=np.float64)
    x, p = _prepare(atoms, probs, len(y))
    e_abs = (p * np.abs(x - y[:, None])).sum(1)
    cdf = np.cumsum(p, 1)
    e_pair = 2.0 * (p * x * (2.0 * cdf - p - 1.0)).sum(1)
    return e_abs - 0.5 * e_pair


def pit(atoms: np.ndarray, probs: np.ndarray | None, truth: np.ndarray) -> np.ndarray:
    """Probability integral transform ``F(y)`` per row: the predicted CDF at the true value.

    The CDF is interpolated linearly between the atoms, each atom counting half its mass at
    its own value (so a truth between two bin values gets a PIT between their shares, not
    the step of either), falling to 0 one atom spacing below the lowest atom and reaching 1
    one spacing above the highest. Calibrated predictions give uniform PITs.
    """
    y = np.asarray(truth, dtype=np.float64)
    x, p = _prepare(atoms, probs, len(y))
    n, v = x.shape
    mid = np.cumsum(p, 1) - 0.5 * p
    d0 = x[:, 1] - x[:, 0] if v > 1 else np.ones(n)
    d1 = x[:, -1] - x[:, -2] if v > 1 else np.ones(n)
    xs = np.concatenate([(x[:, 0] - d0)[:, None], x, (x[:, -1] + d1)[:, None]], axis=1)
    fs = np.concatenate([np.zeros((n, 1)), mid, np.ones((n, 1))], axis=1)
    j = np.clip((xs < y[:, None]).sum(1), 1, v + 1)
    rows = np.arange(n)
    x0, x1, f0, f1 = xs[rows, j - 1], xs[rows, j], fs[rows, j - 1], fs[rows, j]
    width = x1 - x0
    t = np.clip((y - x0) / np.where(width > 0, width, 1.0), 0.0, 1.0)
    out = np.where(width > 0, f0 + t * (f1 - f0), f1)
    return np.clip(np.where(y > xs[:, -1], 1.0, out), 0.0, 1.0)


def pit_histogram(values: np.ndarray, bins: int = 10) -> np.ndarray:
    """Density of PIT values in ``bins`` equal bins of [0, 1] (1.0 everywhere when calibrated)."""
    counts, _ = np.histogram(np.clip(values, 0.0, 1.0), bins=bins, range=(0.0, 1.0))
    return counts * bins / max(1, len(values))


def pit_flat(values: np.ndarray, tolerance: float = 0.2, bins: int = 10) -> tuple[bool, float]:
    """``(flat, worst)``: whether every bin of the PIT histogram has a density within
    ``1 +- tolerance``, and the largest deviation from 1."""
    worst = float(np.max(np.abs(pit_histogram(values, bins) - 1.0)))
    return worst <= tolerance, worst


def photoz_metrics(pred: np.ndarray, truth: np.ndarray, outlier: float = 0.15) -> dict[str, float]:
    """``sigma_nmad`` (1.4826 x the median absolute deviation of dz = (pred - z) / (1 + z)),
    ``outliers`` (fraction with |dz| > ``outlier``), ``bias`` (median dz) and ``n``."""
    z = np.asarray(truth, dtype=np.float64)
    dz = (np.asarray(pred, dtype=np.float64) - z) / (1.0 + z)
    med = float(np.median(dz))
    return {"sigma_nmad": float(1.4826 * np.median(np.abs(dz - med))),
            "outliers": float(np.mean(np.abs(dz) > outlier)), "bias": med, "n": int(len(dz))}
