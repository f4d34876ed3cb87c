"""One group's features, norm binning, codebook, encode and decode (no file handling here).

Features per point: scale kinds (flux_ivar, gaiaxpy_xp) use ``(flux / norm, sigma / norm)``
with ``norm`` the row's median |flux| over valid points; ZTF uses ``(mag - median mag,
magerr, time channel)``. The row's ``norm`` is tokenised on its own key (quantile + uniform
bins of log10 norm, or of the median magnitude) and the features are computed with the
*decoded* norm, so decode returns physical units without norm quantisation error.
``patch_size`` points are concatenated into one vector per token. A masked point inside a
patch is written as a sentinel vector whose error channel is ``ABSENT`` (<0, impossible for
real data), so decode restores the mask pixel by pixel; a patch with no valid point is the
mask token.

ZTF time channel. ``time_encoding: delta`` (the earlier form): ``log10(1 + days since the
previous valid point)``, decoded by a cumulative sum (errors add up along the light curve).
``time_encoding: since_first``: one ordinal time token per patch, the days from the row's first
valid point to the patch's first valid point in bins of ``time_step`` days (error at most
``time_step / 2`` at every point, nothing accumulates) up to ``time_span`` days (default:
twice the longest span in training; later times are clipped, with a warning), and the channel holds
``log10(1 + days since the patch's first valid point)`` (0 for ``patch_size`` 1).

DESI ``encoding: level_shape``: per patch of P pixels a *level* token (the ivar-weighted mean
of ``flux / norm``, ``norm_bins`` bins of its asinh) and a *shape* token (k-means code of the
residual from the decoded level in units of the row's noise, ``c * asinh(r / c)`` with
``c = SHAPE_SOFTENING``: linear up to ~100 sigma, so the k-means distance is close to chi2,
logarithmic beyond, so a few wild pixels do not pull the codebook); the row's
noise (median sigma / norm) is one more ordinal scalar, ``<key>_noise``. Decoded ivar is that
row noise for every pixel of a patch with data (per-pixel ivar and masks inside a patch are
not kept).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

from astromodal_core.blocks.codebook import KMeansCodebook
from astromodal_core.errors import CodecFormatError

from .fused import FluxRows
from .points import Points

ABSENT = -20.0
ABSENT_CUT = -10.0
SIGMA_CLIP = 10.0
#: ZTF since_first without a ``time_span``: time tokens cover twice the longest training span
TIME_SPAN_HEADROOM = 2.0
#: DESI level_shape: residuals (in noise units) are linear below ~c and logarithmic above
#: (measured on the demo's spectra and the real coadds: c = 100 beats 1, 3, 8 and 20)
SHAPE_SOFTENING = 100.0


def n_channels(kind: str) -> int:
    return 3 if kind == "ztf_mag_err" else 2


def is_level_shape(spec: Mapping[str, Any]) -> bool:
    return spec.get("encoding") == "level_shape"


def time_since_first(spec: Mapping[str, Any]) -> bool:
    return spec.get("time_encoding") == "since_first"


def sample_width(spec: Mapping[str, Any]) -> int:
    """The width of one sampled training vector of a group."""
    p = int(spec["patch_size"])
    return p + 2 if is_level_shape(spec) else n_channels(spec["kind"]) * p


def row_norm(points: Points | FluxRows, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """``(norm, has_data)``: log10 of the robust flux scale, or the median magnitude."""
    if isinstance(points, FluxRows):  # computed by the fused reader
        return points.norm.copy(), points.has
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


def _pad_to(a: np.ndarray, width: int, fill: Any) -> np.ndarray:
    if a.shape[1] == width:
        return a
    return np.concatenate([a, np.full((a.shape[0], width - a.shape[1]), fill, dtype=a.dtype)], axis=1)


def patch_anchors(valid: np.ndarray, time: np.ndarray, p: int) -> tuple[np.ndarray, np.ndarray]:
    """``(anchor time (n, T), any valid (n, T))``: the time of each patch's first valid point
    (0 where the patch has none)."""
    n, w = valid.shape
    t = -(-w // p)
    v = _pad_to(valid, t * p, False).reshape(n, t, p)
    tt = _pad_to(time, t * p, 0.0).reshape(n, t, p)
    first = np.argmax(v, axis=2)
    anchor = np.take_along_axis(tt, first[..., None], axis=2)[..., 0]
    any_valid = v.any(axis=2)
    return np.where(any_valid, anchor, 0.0), any_valid


def point_features(points: Points, norm: np.ndarray, kind: str, *, patch: int = 1,
                   time_encoding: str = "delta") -> np.ndarray:
    """(n, W, C) features with masked / absent points set to the ``ABSENT`` sentinel."""
    n, w = points.value.shape
    c = n_channels(kind)
    out = np.zeros((n, w, c), dtype=np.float32)
    valid = points.valid
    nn = norm[:, None]
    if kind == "ztf_mag_err":
        out[..., 0] = np.where(valid, points.value - nn, 0.0)
        out[..., 1] = np.where(valid, np.minimum(points.sigma, SIGMA_CLIP), ABSENT)
        t = points.time
        if time_encoding == "since_first":
            anchor, _ = patch_anchors(valid, t, patch)
            ref = np.repeat(anchor, patch, axis=1)[:, :w]
        else:
            idx = np.where(valid, np.arange(w)[None, :], -1)
            last = np.maximum.accumulate(idx, axis=1)
            prev = np.concatenate([np.full((n, 1), -1), last[:, :-1]], axis=1)
            prev_t = np.take_along_axis(t, np.maximum(prev, 0), axis=1)
            ref = np.where(prev >= 0, prev_t, t)
        dt = t - ref
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


def level_shape_raw(points: Points, norm: np.ndarray, p: int) -> dict[str, np.ndarray]:
    """Per patch: ``z`` (n, T, p) flux / 10**norm (NaN where masked), ``weight`` (n, T, p)
    its inverse variance, ``level`` (n, T) the weighted mean of ``z`` (NaN without data),
    ``any_valid`` (n, T); per row ``noise`` (n,): log10(median sigma / 10**norm)."""
    n, w = points.value.shape
    t = -(-w // p)
    scale = 10.0 ** norm[:, None]
    valid = points.valid
    sig = np.where(valid, points.sigma, 1.0)
    z = np.where(valid, points.value / scale, np.nan)
    weight = np.where(valid, (scale / sig) ** 2, 0.0)
    z = _pad_to(z, t * p, np.nan).reshape(n, t, p)
    weight = _pad_to(weight, t * p, 0.0).reshape(n, t, p)
    any_valid = weight.sum(axis=2) > 0
    tot = np.where(any_valid, weight.sum(axis=2), 1.0)
    level = np.where(any_valid, np.nansum(weight * np.nan_to_num(z), axis=2) / tot, np.nan)
    has = valid.any(axis=1)
    noise = np.full(n, np.nan)
    if has.any():
        med = np.nanmedian(np.where(valid[has], points.sigma[has], np.nan), axis=1)
        noise[has] = np.log10(np.maximum(med / scale[has, 0], 1e-30))
    return {"z": z, "weight": weight, "level": level, "any_valid": any_valid, "noise": noise}


def shape_features(z: np.ndarray, level: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """``c * asinh(r / c)`` of the residual ``r = (z - level) / noise`` (0 where ``z`` is NaN);
    ``level`` (n, T) and ``noise`` (n,) are the decoded (linear) values."""
    c = SHAPE_SOFTENING
    with np.errstate(invalid="ignore"):
        r = (z - level[..., None]) / noise[:, None, None]
    return np.where(np.isfinite(r), c * np.arcsinh(r / c), 0.0).astype(np.float32)


def sample_vectors(points: Points, norm: np.ndarray, spec: Mapping[str, Any]
                   ) -> tuple[np.ndarray, np.ndarray]:
    """``(vectors (n, T, width), any_valid (n, T))`` of the training sample.

    ``level_shape``: the raw patch ``z`` (NaN where masked), its level and the row's noise (the
    shape features need the fitted level bins); otherwise the codebook's own vectors."""
    p = int(spec["patch_size"])
    if is_level_shape(spec):
        raw = level_shape_raw(points, norm, p)
        n, t = raw["level"].shape
        vec = np.concatenate([raw["z"], raw["level"][..., None],
                              np.broadcast_to(raw["noise"][:, None, None], (n, t, 1))], axis=2)
        return vec.astype(np.float32), raw["any_valid"]
    feat = point_features(points, norm, spec["kind"], patch=p,
                          time_encoding=spec.get("time_encoding", "delta"))
    return patchify(feat, points.valid, p)


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


def _centres(edges: np.ndarray) -> np.ndarray:
    return 0.5 * (edges[:-1] + edges[1:])


def _binned(values: np.ndarray, ok: np.ndarray, edges: np.ndarray, mask: int
            ) -> tuple[np.ndarray, np.ndarray]:
    """``(ids uint16 with ``mask`` where not ok, decoded bin centres (NaN where not ok))``."""
    ids = np.full(values.shape, mask, dtype=np.uint16)
    dec = np.full(values.shape, np.nan)
    idx = bin_norm(values[ok], edges)
    ids[ok] = idx
    dec[ok] = _centres(edges)[idx]
    return ids, dec


def _values_of(ids: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin centres of ids (NaN at the mask token and past the fitted bins)."""
    ids = np.asarray(ids).astype(np.int64)
    ok = (ids >= 0) & (ids < len(edges) - 1)
    return np.where(ok, _centres(edges)[np.clip(ids, 0, len(edges) - 2)], np.nan)


class GroupModel:
    """The fitted state of one group and its vectorised encode / decode.

    The codebook is a :class:`~astromodal_core.blocks.KMeansCodebook` of ``codebook_size``
    codes (mask token ``codebook_size``); the norm bins are ``edges`` (``norm_bins`` at most).
    Token arrays are keyed by the suffix of their token key (:attr:`suffixes`): ``""`` the
    codebook ids, ``"_norm"`` the row norm, and per encoding ``"_time"`` (ZTF since_first),
    ``"_level"`` and ``"_noise"`` (DESI level_shape).
    """

    def __init__(self, spec: Mapping[str, Any], codebook_size: int, norm_bins: int):
        self.spec = dict(spec)
        self.codebook_size = int(codebook_size)
        self.norm_bins = int(norm_bins)
        self.book = KMeansCodebook(self.codebook_size, name=str(self.spec["name"]))
        self.edges: np.ndarray | None = None
        self.level_edges: np.ndarray | None = None  # level_shape: bins of asinh(level)
        self.noise_edges: np.ndarray | None = None  # level_shape: bins of log10(noise)
        self.time_bins: int | None = None  # ZTF since_first: time ids 0 .. time_bins - 1
        self.length: int | None = None
        self.design: np.ndarray | None = None  # XP design matrix (n_coefficients, 600)

    @property
    def kind(self) -> str:
        return str(self.spec["kind"])

    @property
    def patch(self) -> int:
        return int(self.spec["patch_size"])

    @property
    def level_shape(self) -> bool:
        return is_level_shape(self.spec)

    @property
    def since_first(self) -> bool:
        return time_since_first(self.spec)

    @property
    def ragged(self) -> bool:
        """Token rows of varying length (Gaia XP, ZTF ``layout: ragged``)."""
        return self.kind == "gaiaxpy_xp" or self.spec.get("layout") == "ragged"

    @property
    def suffixes(self) -> tuple[str, ...]:
        """The token-key suffixes this group writes, the codebook ids first."""
        if self.level_shape:
            return ("", "_level", "_norm", "_noise")
        if self.since_first:
            return ("", "_time", "_norm")
        return ("", "_norm")

    @property
    def width(self) -> int:
        """The dimension of one token's feature vector: channels x patch_size (level_shape:
        patch_size)."""
        return self.patch if self.level_shape else n_channels(self.kind) * self.patch

    @property
    def codebook(self) -> np.ndarray | None:
        """The fitted centroids ``(k, width)`` float32 (``k <= codebook_size``), or None."""
        return self.book.centroids

    @property
    def n_tokens(self) -> int:
        """Tokens per row (the sequence length L; a ragged row's most)."""
        assert self.length is not None
        return -(-self.length // self.patch)

    @property
    def centers(self) -> np.ndarray:
        assert self.edges is not None
        return _centres(self.edges)

    def vocab(self, suffix: str) -> int:
        """The vocabulary size of one token key (its mask token is ``vocab - 1``)."""
        if suffix == "":
            return self.codebook_size + 1
        if suffix == "_time":
            assert self.time_bins is not None
            return self.time_bins + 1
        return self.norm_bins + 1

    def norm_values(self) -> np.ndarray:
        """The value of every norm token id: float64 ``(norm_bins + 1,)``, the bin centre of
        log10 flux scale (flux kinds) or of the median magnitude (ZTF); NaN at the mask token
        and at ids past the fitted bins."""
        return self.values("_norm")

    def values(self, suffix: str) -> np.ndarray:
        """The value of every id of an ordinal key: ``_norm`` (log10 flux scale, or median
        magnitude), ``_level`` (flux / flux scale), ``_noise`` (log10 median sigma / flux
        scale), ``_time`` (days since the first valid point); NaN at the mask token and at ids
        past the fitted bins."""
        ids = np.arange(self.vocab(suffix))
        if suffix == "_time":
            assert self.time_bins is not None
            return np.where(ids < self.time_bins, ids * float(self.spec["time_step"]), np.nan)
        edges = {"_norm": self.edges, "_level": self.level_edges, "_noise": self.noise_edges}[suffix]
        assert edges is not None
        out = _values_of(ids, edges)
        return np.sinh(out) if suffix == "_level" else out

    def fit(self, vectors: np.ndarray, norms: np.ndarray, length: int, *, seed: int,
            n_iter: int, backend: str = "auto", max_span: float = 0.0) -> None:
        """Fit the norm bins and the codebook from sampled vectors and row norms
        (``max_span``: the longest time span of a training row, for ZTF since_first)."""
        if len(vectors) == 0:
            raise ValueError(f"group {self.spec['name']!r}: no valid points in the training data")
        self.edges = norm_edges(norms, self.norm_bins)
        book = KMeansCodebook(self.codebook_size, seed=seed, n_iter=n_iter, backend=backend,
                              name=str(self.spec["name"]))
        if self.level_shape:
            p = self.patch
            vectors = np.asarray(vectors, dtype=np.float64)
            z, level, noise = vectors[:, :p], vectors[:, p], vectors[:, p + 1]
            self.level_edges = norm_edges(np.arcsinh(level), self.norm_bins)
            self.noise_edges = norm_edges(noise, self.norm_bins)
            lhat = np.sinh(_values_of(bin_norm(np.arcsinh(level), self.level_edges), self.level_edges))
            nhat = 10.0 ** _values_of(bin_norm(noise, self.noise_edges), self.noise_edges)
            self.book = book.fit(shape_features(z[:, None, :], lhat[:, None], nhat)[:, 0])
        else:
            self.book = book.fit(vectors)
        if self.since_first:
            span = self.spec.get("time_span") or TIME_SPAN_HEADROOM * max_span
            self.time_bins = int(np.ceil(float(span) / float(self.spec["time_step"]))) + 1
            if self.time_bins > 65535:
                raise ValueError(f"group {self.spec['name']!r}: {span:g} days in "
                                 f"{self.spec['time_step']:g}-day bins need {self.time_bins} "
                                 "time tokens, more than 65535 (raise time_step)")
        self.length = int(self.spec["length"] or length)

    # encode -------------------------------------------------------------------------------
    def encode_points(self, points: Points | FluxRows, *, backend: str = "auto"
                      ) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
        """``({suffix: tokens}, counts)``: ``(n, T)`` uint16 per sequence key, ``(n,)`` per
        scalar key, masks where no data; ``counts`` the tokens of each row of a ragged group
        (0 without data), else None."""
        assert self.edges is not None
        if isinstance(points, FluxRows):
            return self.encode_pixels(points, backend=backend), None
        norm, has = row_norm(points, self.kind)
        ntok, nhat = _binned(norm, has, self.edges, self.norm_bins)
        if self.level_shape:
            out = self._encode_level_shape(points, np.where(has, nhat, 0.0), has, backend)
            out["_norm"] = ntok
            return out, None
        feat = point_features(points, np.where(has, nhat, 0.0), self.kind, patch=self.patch,
                              time_encoding=self.spec.get("time_encoding", "delta"))
        vec, any_valid = patchify(feat, points.valid, self.patch)
        out = {"": self.book.encode(vec, any_valid, backend=backend), "_norm": ntok}
        if self.since_first:
            out["_time"] = self._time_tokens(points, any_valid)
        counts = None
        if self.ragged and self.kind == "ztf_mag_err":
            width = points.value.shape[1]
            counts = np.where(has, -(-np.minimum(points.lengths, width) // self.patch), 0)
        return out, counts

    def encode_pixels(self, rows: FluxRows, *, backend: str = "auto") -> dict[str, np.ndarray]:
        """:meth:`encode_points` of a flux_ivar group read by the fused reader: the features
        of the valid patches only, their nearest codes written into the mask-filled tokens."""
        assert self.edges is not None
        ntok, nhat = _binned(rows.norm, rows.has, self.edges, self.norm_bins)
        scale = (10.0 ** np.where(rows.has, nhat, 0.0)[:, None])[:, 0]  # as point_features
        every = np.arange(len(rows.has))
        valid = rows.patch_valid(every, self.patch)
        tok = np.full(valid.shape, self.book.mask_token, dtype=self.book.dtype)
        if valid.any():
            tok[valid] = self.book.encode(rows.features(every, scale, valid, self.patch),
                                          backend=backend)
        return {"": tok, "_norm": ntok}

    def _time_tokens(self, points: Points, any_valid: np.ndarray) -> np.ndarray:
        assert self.time_bins is not None and points.time is not None
        anchor, _ = patch_anchors(points.valid, points.time, self.patch)
        has = points.valid.any(axis=1)
        first = np.take_along_axis(points.time, np.argmax(points.valid, axis=1)[:, None], axis=1)
        steps = np.where(any_valid, (anchor - np.where(has[:, None], first, 0.0))
                         / float(self.spec["time_step"]), 0.0)
        ids = np.rint(steps)
        over = any_valid & (ids > self.time_bins - 1)
        if over.any():
            warnings.warn(
                f"group {self.spec['name']!r}: {int(over.any(axis=1).sum())} light curve(s) span "
                f"more than the {(self.time_bins - 1) * float(self.spec['time_step']):g} days "
                "the time tokens were fitted for; later times are clipped (set the group's "
                "'time_span')", RuntimeWarning, stacklevel=3)
        tok = np.clip(ids, 0, self.time_bins - 1).astype(np.uint16)
        return np.where(any_valid, tok, np.uint16(self.time_bins)).astype(np.uint16)

    def _encode_level_shape(self, points: Points, nhat: np.ndarray, has: np.ndarray,
                            backend: str) -> dict[str, np.ndarray]:
        assert self.level_edges is not None and self.noise_edges is not None
        raw = level_shape_raw(points, nhat, self.patch)
        ok = raw["any_valid"] & has[:, None]
        ltok, lhat = _binned(np.arcsinh(np.nan_to_num(raw["level"])), ok, self.level_edges,
                             self.norm_bins)
        qtok, qhat = _binned(np.nan_to_num(raw["noise"]), has, self.noise_edges, self.norm_bins)
        feat = shape_features(raw["z"], np.sinh(np.nan_to_num(lhat)),
                              np.where(has, 10.0 ** np.nan_to_num(qhat), 1.0))
        return {"": self.book.encode(feat, ok, backend=backend), "_level": ltok, "_noise": qtok}

    # decode -------------------------------------------------------------------------------
    def decode_tokens(self, tokens: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Physical arrays from ``{suffix: tokens}`` (rectangular ``(n, T)`` for sequence keys):
        ``value``, ``sigma``, ``valid`` (and ``time``), ``(n, W)``."""
        assert self.edges is not None and self.length is not None
        main = np.asarray(tokens[""]).astype(np.int64)
        norm_tokens = np.asarray(tokens["_norm"]).astype(np.int64).reshape(-1)
        n, t = main.shape
        w = min(t * self.patch, self.length)
        has = norm_tokens < len(self.edges) - 1
        nhat = _values_of(norm_tokens, self.edges)
        if self.level_shape:
            return self._decode_level_shape(main, tokens, nhat, has, w)
        c = n_channels(self.kind)
        absent = np.zeros(self.width, np.float32)  # a mask token: every point absent
        absent[1::c] = ABSENT
        vec = self.book.decode(main, fill=absent).reshape(n, t * self.patch, c)
        vec = vec[:, :w].astype(np.float64)
        valid = (vec[..., 1] > ABSENT_CUT) & has[:, None]
        out: dict[str, np.ndarray] = {"valid": valid}
        if self.kind == "ztf_mag_err":
            out["value"] = np.where(valid, vec[..., 0] + nhat[:, None], np.nan)
            out["sigma"] = np.where(valid, vec[..., 1], np.nan)
            dt = np.where(valid, 10.0 ** vec[..., 2] - 1.0, 0.0)
            if self.since_first:
                anchor = self.values("_time")[np.clip(np.asarray(tokens["_time"]).astype(np.int64),
                                                      0, self.vocab("_time") - 1)]
                start = np.repeat(anchor, self.patch, axis=1)[:, :w]
                out["time"] = np.where(valid, start + dt, np.nan)
                out["valid"] = valid = valid & np.isfinite(out["time"])
            else:
                out["time"] = np.where(valid, np.cumsum(dt, axis=1), np.nan)
        else:
            scale = 10.0 ** nhat[:, None]
            out["value"] = np.where(valid, vec[..., 0] * scale, np.nan)
            out["sigma"] = np.where(valid, vec[..., 1] * scale, np.nan)
        return out

    def _decode_level_shape(self, main: np.ndarray, tokens: Mapping[str, np.ndarray],
                            nhat: np.ndarray, has: np.ndarray, w: int) -> dict[str, np.ndarray]:
        n, t = main.shape
        p = self.patch
        level = self.values("_level")[np.clip(np.asarray(tokens["_level"]).astype(np.int64),
                                              0, self.norm_bins)]
        noise = 10.0 ** self.values("_noise")[np.clip(np.asarray(tokens["_noise"]).astype(np.int64)
                                                      .reshape(-1), 0, self.norm_bins)]
        c = SHAPE_SOFTENING
        shape = c * np.sinh(self.book.decode(main).astype(np.float64) / c)  # NaN at the mask token
        ok = has[:, None] & np.isfinite(level) & np.isfinite(shape).all(axis=2)
        ok &= np.isfinite(noise)[:, None]
        scale = (10.0 ** nhat)[:, None]
        z = level[..., None] + noise[:, None, None] * shape
        valid = np.repeat(ok, p, axis=1)[:, :w]
        value = z.reshape(n, t * p)[:, :w] * scale
        sigma = np.broadcast_to((noise[:, None] * scale), (n, w))
        return {"valid": valid, "value": np.where(valid, value, np.nan),
                "sigma": np.where(valid, sigma, np.nan)}

    # state --------------------------------------------------------------------------------
    def arrays(self) -> dict[str, np.ndarray]:
        """The fitted arrays: ``codebook``, ``norm_edges`` (``level_edges`` and ``noise_edges``
        for level_shape, the XP ``design``)."""
        assert self.edges is not None
        out = {**self.book.arrays(), "norm_edges": self.edges}
        if self.level_shape:
            assert self.level_edges is not None and self.noise_edges is not None
            out["level_edges"] = self.level_edges
            out["noise_edges"] = self.noise_edges
        if self.design is not None:
            out["design"] = self.design
        return out

    def config(self) -> dict[str, Any]:
        out = {"spec": self.spec, "codebook_size": self.codebook_size,
               "norm_bins": self.norm_bins, "length": self.length}
        if self.since_first:
            out["time_bins"] = self.time_bins
        return out

    @classmethod
    def from_state(cls, config: Mapping[str, Any], arrays: Mapping[str, np.ndarray], *,
                   where: str = "spectrum group") -> GroupModel:
        """A fitted group from :meth:`config` and :meth:`arrays`, validated: a missing array,
        a codebook that is not ``(k <= codebook_size, width)`` or holds NaN, bin edges that
        are not finite and increasing, a bad time-bin count or a bad XP design matrix are a
        :class:`CodecFormatError` starting with ``where``."""
        from .groups import XP_N_SAMPLES, normalise_group

        try:
            spec = normalise_group(config["spec"], saved=True)
        except (TypeError, ValueError) as e:
            raise CodecFormatError(f"{where}: bad group spec: {e}") from None
        m = cls(spec, _positive(config["codebook_size"], "codebook_size", where),
                _positive(config["norm_bins"], "norm_bins", where))
        m.length = _positive(config["length"], "length", where)
        for name in ("codebook", "norm_edges"):
            if name not in arrays:
                raise CodecFormatError(f"{where}: no {name} array")
        m.book.set_centroids(arrays["codebook"], dim=m.width, where=where)
        m.edges = _edges(arrays, "norm_edges", m.norm_bins, where)
        if m.level_shape:
            m.level_edges = _edges(arrays, "level_edges", m.norm_bins, where)
            m.noise_edges = _edges(arrays, "noise_edges", m.norm_bins, where)
        if m.since_first:
            m.time_bins = _positive(config.get("time_bins"), "time_bins", where)
            if m.time_bins > 65535:
                raise CodecFormatError(f"{where}: time_bins {m.time_bins} do not fit uint16 tokens")
        if m.kind == "gaiaxpy_xp":
            design = np.asarray(arrays.get("design", np.empty(0)))
            shape = (int(spec["n_coefficients"]), XP_N_SAMPLES)
            if design.shape != shape or design.dtype.kind != "f" or not np.isfinite(design).all():
                raise CodecFormatError(f"{where}: XP design matrix has shape {design.shape}, "
                                       f"expected finite {shape}")
            m.design = design.astype(np.float64)
        return m


def _edges(arrays: Mapping[str, np.ndarray], name: str, n_bins: int, where: str) -> np.ndarray:
    from astromodal_core.tokenizer import check_edges

    if name not in arrays:
        raise CodecFormatError(f"{where}: no {name} array")
    edges = np.asarray(arrays[name])
    if edges.ndim != 1 or not 2 <= len(edges) <= n_bins + 1 or edges.dtype.kind != "f":
        raise CodecFormatError(f"{where}: {name} has shape {edges.shape} and dtype "
                               f"{edges.dtype}, expected 2 to {n_bins + 1} floats")
    return check_edges(edges.astype(np.float64), where)


def _positive(value: Any, what: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise CodecFormatError(f"{where}: {what} must be a positive integer, got {value!r}")
    return int(value)
