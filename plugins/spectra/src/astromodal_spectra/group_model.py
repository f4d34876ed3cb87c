"""One group's features, norm binning, codebook, encode and decode (no file handling here).

Features per point: scale kinds (flux_ivar, gaiaxpy_xp) use ``(flux / norm, sigma / norm)``
with ``norm`` the row's median |flux| over valid points; ZTF uses ``(mag - median mag,
magerr, log10(1 + days since the previous valid point))``. The row's ``norm`` is tokenised
on its own key (quantile + uniform bins of log10 norm, or of the median magnitude) and the
features are computed with the *decoded* norm, so decode returns physical units without
norm quantisation error. ``patch_size`` points are concatenated into one vector per token.
A masked point inside a patch is written as a sentinel vector whose error channel is
``ABSENT`` (<0, impossible for real data), so decode restores the mask pixel by pixel; a
patch with no valid point is the mask token.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from astromodal_core.blocks.codebook import KMeansCodebook
from astromodal_core.errors import CodecFormatError

from .points import Points

ABSENT = -20.0
ABSENT_CUT = -10.0
SIGMA_CLIP = 10.0


def n_channels(kind: str) -> int:
    return 3 if kind == "ztf_mag_err" else 2


def row_norm(points: Points, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """``(norm, has_data)``: log10 of the robust flux scale, or the median magnitude."""
    has = points.valid.any(axis=1)
    norm = np.full(len(has), np.nan)
    if not has.any():
        return norm, has
    v = points.value[has]
    valid = points.valid[has]
    if kind == "ztf_mag_err":
        norm[has] = np.nanmedian(np.where(valid, v, np.nan), axis=1)
        return norm, has
    scale = np.nanmedian(np.where(valid, np.abs(v), np.nan), axis=1)
    sig = np.nanmedian(np.where(valid, points.sigma[has], np.nan), axis=1)
    scale = np.where(scale > 0, scale, np.where(sig > 0, sig, 1.0))
    norm[has] = np.log10(scale)
    return norm, has


def point_features(points: Points, norm: np.ndarray, kind: str) -> np.ndarray:
    """(n, W, C) features with masked / absent points set to the ``ABSENT`` sentinel."""
    n, w = points.value.shape
    c = n_channels(kind)
    out = np.zeros((n, w, c), dtype=np.float32)
    valid = points.valid
    nn = norm[:, None]
    if kind == "ztf_mag_err":
        out[..., 0] = np.where(valid, points.value - nn, 0.0)
        out[..., 1] = np.where(valid, np.minimum(points.sigma, SIGMA_CLIP), ABSENT)
        idx = np.where(valid, np.arange(w)[None, :], -1)
        last = np.maximum.accumulate(idx, axis=1)
        prev = np.concatenate([np.full((n, 1), -1), last[:, :-1]], axis=1)
        t = points.time
        prev_t = np.take_along_axis(t, np.maximum(prev, 0), axis=1)
        dt = np.where(prev >= 0, t - prev_t, 0.0)
        out[..., 2] = np.where(valid, np.log10(1.0 + np.maximum(dt, 0.0)), 0.0)
    else:
        scale = 10.0 ** nn
        out[..., 0] = np.where(valid, points.value / scale, 0.0)
        out[..., 1] = np.where(valid, np.minimum(points.sigma / scale, SIGMA_CLIP), ABSENT)
    return out


def patchify(feat: np.ndarray, valid: np.ndarray, p: int) -> tuple[np.ndarray, np.ndarray]:
    """``(vectors (n, T, p*C), any_valid (n, T))`` for patches of ``p`` points."""
    n, w, c = feat.shape
    t = -(-w // p)
    if t * p != w:
        fill = np.zeros((n, t * p - w, c), dtype=feat.dtype)
        fill[..., 1] = ABSENT
        feat = np.concatenate([feat, fill], axis=1)
        valid = np.concatenate([valid, np.zeros((n, t * p - w), dtype=bool)], axis=1)
    return feat.reshape(n, t, p * c), valid.reshape(n, t, p).any(axis=2)


def norm_edges(sample: np.ndarray, n_bins: int, pad: float = 0.5) -> np.ndarray:
    """Bin edges: half from quantiles of ``sample``, half uniform over its range +- ``pad``."""
    sample = np.asarray(sample, dtype=np.float64)
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return np.array([-pad, pad])
    q = np.unique(np.quantile(sample, np.linspace(0.0, 1.0, n_bins // 2 + 1)))
    u = np.linspace(sample.min() - pad, sample.max() + pad, max(2, n_bins + 1 - len(q)))
    return np.unique(np.concatenate([q, u]))


def bin_norm(norm: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin index of each norm value (clipped into the outer bins)."""
    idx = np.searchsorted(edges, norm, side="right") - 1
    return np.clip(idx, 0, len(edges) - 2)


class GroupModel:
    """The fitted state of one group and its vectorised encode / decode.

    The codebook is a :class:`~astromodal_core.blocks.KMeansCodebook` of ``codebook_size``
    codes (mask token ``codebook_size``); the norm bins are ``edges`` (``norm_bins`` at most).
    """

    def __init__(self, spec: Mapping[str, Any], codebook_size: int, norm_bins: int):
        self.spec = dict(spec)
        self.codebook_size = int(codebook_size)
        self.norm_bins = int(norm_bins)
        self.book = KMeansCodebook(self.codebook_size, name=str(self.spec["name"]))
        self.edges: np.ndarray | None = None
        self.length: int | None = None
        self.design: np.ndarray | None = None  # XP design matrix (n_coefficients, 600)

    @property
    def kind(self) -> str:
        return str(self.spec["kind"])

    @property
    def patch(self) -> int:
        return int(self.spec["patch_size"])

    @property
    def width(self) -> int:
        """The dimension of one token's feature vector: channels x patch_size."""
        return n_channels(self.kind) * self.patch

    @property
    def codebook(self) -> np.ndarray | None:
        """The fitted centroids ``(k, width)`` float32 (``k <= codebook_size``), or None."""
        return self.book.centroids

    @property
    def n_tokens(self) -> int:
        """Tokens per row (the sequence length L)."""
        assert self.length is not None
        return -(-self.length // self.patch)

    @property
    def centers(self) -> np.ndarray:
        assert self.edges is not None
        return 0.5 * (self.edges[:-1] + self.edges[1:])

    def norm_values(self) -> np.ndarray:
        """The value of every norm token id: float64 ``(norm_bins + 1,)``, the bin centre of
        log10 flux scale (flux kinds) or of the median magnitude (ZTF); NaN at the mask token
        and at ids past the fitted bins."""
        out = np.full(self.norm_bins + 1, np.nan)
        c = self.centers
        out[: len(c)] = c
        return out

    def fit(self, vectors: np.ndarray, norms: np.ndarray, length: int, *, seed: int,
            n_iter: int, backend: str = "auto") -> None:
        """Fit the norm bins and the codebook from sampled vectors and row norms."""
        if len(vectors) == 0:
            raise ValueError(f"group {self.spec['name']!r}: no valid points in the training data")
        self.edges = norm_edges(norms, self.norm_bins)
        self.book = KMeansCodebook(self.codebook_size, seed=seed, n_iter=n_iter, backend=backend,
                                   name=str(self.spec["name"])).fit(vectors)
        self.length = int(self.spec["length"] or length)

    def encode_points(self, points: Points, *, backend: str = "auto"
                      ) -> tuple[np.ndarray, np.ndarray]:
        """``(tokens (n, T) uint16, norm tokens (n,) uint16)``; masks where no data."""
        assert self.edges is not None
        norm, has = row_norm(points, self.kind)
        ntok = np.full(len(norm), self.norm_bins, dtype=np.uint16)
        idx = bin_norm(norm[has], self.edges)
        ntok[has] = idx
        nhat = np.zeros(len(norm))
        nhat[has] = self.centers[idx]
        vec, any_valid = patchify(point_features(points, nhat, self.kind), points.valid, self.patch)
        return self.book.encode(vec, any_valid, backend=backend), ntok

    def decode_tokens(self, tokens: np.ndarray, norm_tokens: np.ndarray
                      ) -> dict[str, np.ndarray]:
        """Physical arrays from tokens: ``value``, ``sigma``, ``valid`` (and ``time``), (n, W)."""
        assert self.edges is not None and self.length is not None
        tokens = np.asarray(tokens).astype(np.int64)
        norm_tokens = np.asarray(norm_tokens).astype(np.int64).reshape(-1)
        n, t = tokens.shape
        c = n_channels(self.kind)
        absent = np.zeros(self.width, np.float32)  # a mask token: every point absent
        absent[1::c] = ABSENT
        vec = self.book.decode(tokens, fill=absent).reshape(n, t * self.patch, c)
        w = min(t * self.patch, self.length)
        vec = vec[:, :w].astype(np.float64)
        has = norm_tokens < len(self.edges) - 1
        nhat = np.where(has, self.centers[np.clip(norm_tokens, 0, len(self.edges) - 2)], np.nan)
        valid = (vec[..., 1] > ABSENT_CUT) & has[:, None]
        out: dict[str, np.ndarray] = {"valid": valid}
        if self.kind == "ztf_mag_err":
            out["value"] = np.where(valid, vec[..., 0] + nhat[:, None], np.nan)
            out["sigma"] = np.where(valid, vec[..., 1], np.nan)
            dt = np.where(valid, 10.0 ** vec[..., 2] - 1.0, 0.0)
            out["time"] = np.where(valid, np.cumsum(dt, axis=1), np.nan)
        else:
            scale = 10.0 ** nhat[:, None]
            out["value"] = np.where(valid, vec[..., 0] * scale, np.nan)
            out["sigma"] = np.where(valid, vec[..., 1] * scale, np.nan)
        return out

    def arrays(self) -> dict[str, np.ndarray]:
        """The fitted arrays: ``codebook``, ``norm_edges`` (and the XP ``design``)."""
        assert self.edges is not None
        out = {**self.book.arrays(), "norm_edges": self.edges}
        if self.design is not None:
            out["design"] = self.design
        return out

    def config(self) -> dict[str, Any]:
        return {"spec": self.spec, "codebook_size": self.codebook_size,
                "norm_bins": self.norm_bins, "length": self.length}

    @classmethod
    def from_state(cls, config: Mapping[str, Any], arrays: Mapping[str, np.ndarray], *,
                   where: str = "spectrum group") -> GroupModel:
        """A fitted group from :meth:`config` and :meth:`arrays`, validated: a missing array,
        a codebook that is not ``(k <= codebook_size, channels x patch_size)`` or holds NaN,
        norm edges that are not finite and increasing, or a bad XP design matrix are a
        :class:`CodecFormatError` starting with ``where``."""
        from astromodal_core.tokenizer import check_edges

        from .groups import XP_N_SAMPLES, normalise_group

        spec = normalise_group(config["spec"])
        m = cls(spec, _positive(config["codebook_size"], "codebook_size", where),
                _positive(config["norm_bins"], "norm_bins", where))
        m.length = _positive(config["length"], "length", where)
        for name in ("codebook", "norm_edges"):
            if name not in arrays:
                raise CodecFormatError(f"{where}: no {name} array")
        m.book.set_centroids(arrays["codebook"], dim=m.width, where=where)
        edges = np.asarray(arrays["norm_edges"])
        if edges.ndim != 1 or not 2 <= len(edges) <= m.norm_bins + 1 or edges.dtype.kind != "f":
            raise CodecFormatError(f"{where}: norm_edges has shape {edges.shape} and dtype "
                                   f"{edges.dtype}, expected 2 to {m.norm_bins + 1} floats")
        m.edges = check_edges(edges.astype(np.float64), where)
        if m.kind == "gaiaxpy_xp":
            design = np.asarray(arrays.get("design", np.empty(0)))
            shape = (int(spec["n_coefficients"]), XP_N_SAMPLES)
            if design.shape != shape or design.dtype.kind != "f" or not np.isfinite(design).all():
                raise CodecFormatError(f"{where}: XP design matrix has shape {design.shape}, "
                                       f"expected finite {shape}")
            m.design = design.astype(np.float64)
        return m


def _positive(value: Any, what: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise CodecFormatError(f"{where}: {what} must be a positive integer, got {value!r}")
    return int(value)
