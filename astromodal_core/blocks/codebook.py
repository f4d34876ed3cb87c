"""The k-means codebook building block: feature vectors -> nearest code ids, and back.

A tokenizer that quantises vectors (spectrum pixels or patches, autoencoder latents) is mostly
configuration of :class:`KMeansCodebook`: it fits ``size`` centroids with the project's one
exact k-means (:mod:`astromodal_core.kmeans`) on a bounded, seeded sample of feature vectors,
encodes vectors to the id of their nearest centroid (uint16 while the vocabulary fits, else
uint32; rows marked invalid get the mask token ``size``), decodes ids to centroids, and saves
as a JSON config plus one ``(k, d)`` float32 array (a safetensors companion of a
:class:`~astromodal_core.Tokenizer`, through ``_companions()``)::

    from astromodal_core.blocks import KMeansCodebook

    book = KMeansCodebook(256, seed=0, max_samples=200_000)
    book.fit(vectors)                       # (n, d) float; at most max_samples rows, drawn with seed
    ids = book.encode(x, valid=ok)          # (..., d) -> (...) uint16; rows with ok False -> 256
    centroids = book.decode(ids)            # (..., d) float32; NaN at the mask token
    config, arrays = book.config(), book.arrays("desi_b/")   # JSON-able settings, {"desi_b/codebook": ...}
    again = KMeansCodebook.from_state(config, arrays, prefix="desi_b/")  # CodecFormatError if damaged

Fewer codes. When the sample holds fewer than ``size`` distinct vectors, every distinct vector
becomes a code (``n_codes < size``, with a ``RuntimeWarning``); ids ``n_codes .. size - 1``
are then never produced and decode like the mask token. The mask token stays ``size`` and the
vocabulary ``size + 1`` whatever ``n_codes`` is, so token keys do not depend on the data.

Determinism. The fitted codebook depends only on the sample and ``seed``; encoding is an exact
nearest-centroid search (float64 distances, ties to the lowest id) on every backend but faiss.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import CodecFormatError, DataError, NotFittedError
from ..kmeans import NearestCentroid, fit_kmeans

#: the largest codebook: its mask token must fit a uint32 token
MAX_SIZE = 2**32 - 2
BACKENDS = ("auto", "numba", "numpy", "faiss")

__all__ = ["BACKENDS", "MAX_SIZE", "KMeansCodebook", "check_codebook"]


def check_codebook(codebook: Any, *, size: int | None = None, dim: int | None = None,
                   where: str = "codebook") -> np.ndarray:
    """A loaded codebook as a C-contiguous float32 ``(k, d)`` array, validated.

    Not 2-D, no rows, more than ``size`` rows, a dimension other than ``dim``, a non-numeric
    dtype, NaN or infinite values: a :class:`CodecFormatError` starting with ``where``.
    """
    arr = np.asarray(codebook)
    if arr.dtype.kind not in "fiu":
        raise CodecFormatError(f"{where}: codebook has dtype {arr.dtype}, expected floats")
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise CodecFormatError(f"{where}: codebook has shape {arr.shape}, expected (k, d) with k, d >= 1")
    if size is not None and arr.shape[0] > size:
        raise CodecFormatError(f"{where}: codebook has {arr.shape[0]} codes, more than its size {size}")
    if dim is not None and arr.shape[1] != dim:
        raise CodecFormatError(f"{where}: codebook has shape {arr.shape}, expected (k, {dim})")
    if not np.all(np.isfinite(arr)):
        raise CodecFormatError(f"{where}: codebook holds NaN or infinite values")
    return np.ascontiguousarray(arr, dtype=np.float32)


def _as_int(value: Any, what: str, lo: int, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{what} must be an integer, got {value!r}")
    if value < lo or (hi is not None and value > hi):
        raise ValueError(f"{what} must be in [{lo}, {hi if hi is not None else 'inf'}], got {value}")
    return int(value)


class KMeansCodebook:
    """A k-means codebook of ``size`` codes (see the module docstring).

    ``seed`` drives the sample draw and the k-means++ initialisation; ``n_iter`` bounds the
    Lloyd iterations; ``max_samples`` (None: no limit) bounds the rows :meth:`fit` uses;
    ``backend`` is the assignment path of :func:`astromodal_core.kmeans.assign`; ``name``
    labels warnings and errors.
    """

    def __init__(self, size: int, *, seed: int = 0, n_iter: int = 20, max_samples: int | None = None,
                 backend: str = "auto", name: str = "") -> None:
        self.size = _as_int(size, "size", 1, MAX_SIZE)
        self.seed = _as_int(seed, "seed", -(2**63))
        self.n_iter = _as_int(n_iter, "n_iter", 0)
        self.max_samples = None if max_samples is None else _as_int(max_samples, "max_samples", 1)
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        self.backend = backend
        self.name = str(name)
        self.centroids: np.ndarray | None = None
        self._search: NearestCentroid | None = None  # reused across encode calls

    # -- properties ------------------------------------------------------------------------
    @property
    def mask_token(self) -> int:
        """The id of a row with no data: ``size``."""
        return self.size

    @property
    def vocab_size(self) -> int:
        """``size + 1`` (the codes and the mask token)."""
        return self.size + 1

    @property
    def dtype(self) -> type:
        """The token dtype: uint16 while ``vocab_size <= 65536``, else uint32."""
        return np.uint16 if self.vocab_size <= 65536 else np.uint32

    @property
    def is_fitted(self) -> bool:
        """True once fitted or loaded."""
        return self.centroids is not None

    def check_fitted(self) -> None:
        """Raise :class:`NotFittedError` unless fitted."""
        if self.centroids is None:
            raise NotFittedError(f"KMeansCodebook{self._label()} is not fitted: call fit(...) or from_state(...) first")

    @property
    def n_codes(self) -> int:
        """Codes actually fitted (``<= size``)."""
        self.check_fitted()
        assert self.centroids is not None
        return len(self.centroids)

    @property
    def dim(self) -> int:
        """The feature dimension ``d``."""
        self.check_fitted()
        assert self.centroids is not None
        return int(self.centroids.shape[1])

    def _label(self) -> str:
        return f" {self.name!r}" if self.name else ""

    # -- fitting ---------------------------------------------------------------------------
    def fit(self, features: Any) -> KMeansCodebook:
        """Fit the codes on ``(n, d)`` feature vectors (or a reservoir with ``sample()``,
        such as :class:`~astromodal_core.sampling.BottomK`); return self.

        At most ``max_samples`` rows are used, drawn without replacement with ``seed`` (kept
        in their order). No rows, or non-finite values, are a :class:`DataError`.
        """
        if hasattr(features, "sample") and callable(features.sample):
            features = features.sample()
        x = np.asarray(features)
        if x.ndim != 2 or x.shape[1] < 1:
            raise DataError(f"k-means{self._label()}: features must be (n, d), got shape {x.shape}")
        if len(x) == 0:
            raise DataError(f"k-means{self._label()}: no training vectors")
        if x.dtype.kind not in "fiu":
            raise DataError(f"k-means{self._label()}: features have dtype {x.dtype}, expected numbers")
        if not np.all(np.isfinite(x)):
            raise DataError(f"k-means{self._label()}: training vectors hold NaN or infinite values")
        if self.max_samples is not None and len(x) > self.max_samples:
            rng = np.random.default_rng(self.seed)
            x = x[np.sort(rng.choice(len(x), size=self.max_samples, replace=False))]
        self.centroids = np.ascontiguousarray(fit_kmeans(
            x, self.size, seed=self.seed, n_iter=self.n_iter, backend=self.backend, name=self.name,
        ), dtype=np.float32)
        return self

    def set_centroids(self, centroids: Any, *, dim: int | None = None,
                      where: str | None = None) -> KMeansCodebook:
        """Install fitted centroids ``(k, d)`` (``d == dim`` if given), validated by
        :func:`check_codebook`; return self."""
        self.centroids = check_codebook(centroids, size=self.size, dim=dim,
                                        where=where or f"codebook{self._label()}")
        return self

    # -- encoding --------------------------------------------------------------------------
    def _assign(self, x: np.ndarray, backend: str | None) -> np.ndarray:
        """Nearest code of every row of ``x`` (n, d), reusing the search structure of the
        previous calls while the centroids and the backend stay the same."""
        assert self.centroids is not None
        backend = backend or self.backend
        s = self._search
        if s is None or s.source is not self.centroids or s.backend != backend:
            s = self._search = NearestCentroid(self.centroids, backend=backend)
        return s(x)

    def encode(self, features: Any, valid: Any = None, *, backend: str | None = None) -> np.ndarray:
        """The id of the nearest code of every vector: ``(..., d)`` -> ``(...)`` in
        :attr:`dtype`; where ``valid`` (shape ``(...)``) is False, the mask token."""
        self.check_fitted()
        assert self.centroids is not None
        x = np.asarray(features)
        if x.ndim < 1 or x.shape[-1] != self.dim:
            raise DataError(f"codebook{self._label()}: features have shape {x.shape}, "
                            f"expected (..., {self.dim})")
        shape = x.shape[:-1]
        out = np.full(shape, self.mask_token, dtype=self.dtype)
        if valid is None:
            rows = x.reshape(-1, self.dim)
            if rows.size and not np.all(np.isfinite(rows)):
                raise DataError(f"codebook{self._label()}: features hold NaN or infinite values; "
                                "pass valid= to mark rows without data")
            out.reshape(-1)[:] = self._assign(rows, backend)
            return out
        keep = np.asarray(valid, dtype=bool)
        if keep.shape != shape:
            raise DataError(f"codebook{self._label()}: valid has shape {keep.shape}, expected {shape}")
        if keep.any():
            out[keep] = self._assign(x[keep], backend)
        return out

    def decode(self, ids: Any, fill: float | np.ndarray = np.nan) -> np.ndarray:
        """The code of every id: ``(...)`` -> ``(..., d)`` float32; the mask token and ids
        with no code (``>= n_codes``) give ``fill`` (a number or a ``(d,)`` vector)."""
        self.check_fitted()
        assert self.centroids is not None
        idx = np.asarray(ids)
        if idx.dtype.kind not in "iu":
            raise DataError(f"codebook{self._label()}: ids have dtype {idx.dtype}, expected integers")
        idx = idx.astype(np.int64)
        if idx.size and (idx.min() < 0 or idx.max() > self.mask_token):
            raise DataError(f"codebook{self._label()}: ids outside [0, {self.mask_token}] "
                            f"(min {idx.min()}, max {idx.max()})")
        book = np.empty((self.n_codes + 1, self.dim), dtype=np.float32)
        book[:-1] = self.centroids
        book[-1] = fill
        return book[np.minimum(idx, self.n_codes)]

    # -- saving ----------------------------------------------------------------------------
    def arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
        """``{prefix + "codebook": (k, d) float32}``: the fitted state besides :meth:`config`."""
        self.check_fitted()
        assert self.centroids is not None
        return {f"{prefix}codebook": self.centroids}

    def config(self) -> dict[str, Any]:
        """The JSON-able settings (with :meth:`arrays`, the whole state)."""
        return {"size": self.size, "seed": self.seed, "n_iter": self.n_iter,
                "max_samples": self.max_samples, "backend": self.backend, "name": self.name}

    def state(self, prefix: str = "") -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """``(config, arrays)`` to save; :meth:`from_state` reads them back."""
        return self.config(), self.arrays(prefix)

    @classmethod
    def from_state(cls, config: Mapping[str, Any], arrays: Mapping[str, Any], *, prefix: str = "",
                   dim: int | None = None, where: str | None = None) -> KMeansCodebook:
        """A fitted codebook from :meth:`state` (``dim``: the expected feature dimension);
        a damaged state is a :class:`CodecFormatError` starting with ``where``."""
        label = where or "codebook"
        if not isinstance(config, Mapping):
            raise CodecFormatError(f"{label}: config is a {type(config).__name__}, not a mapping")
        try:
            book = cls(config["size"], seed=config.get("seed", 0), n_iter=config.get("n_iter", 20),
                       max_samples=config.get("max_samples"), backend=config.get("backend", "auto"),
                       name=config.get("name", ""))
        except (KeyError, TypeError, ValueError) as exc:
            raise CodecFormatError(f"{label}: bad codebook config ({type(exc).__name__}: {exc})") from exc
        key = f"{prefix}codebook"
        if key not in arrays:
            raise CodecFormatError(f"{label}: no array {key!r}")
        book.centroids = check_codebook(arrays[key], size=book.size, dim=dim, where=label)
        return book

    def __repr__(self) -> str:
        state = f"{self.n_codes} codes of d={self.dim}" if self.is_fitted else "not fitted"
        return f"KMeansCodebook(size={self.size}{', name=' + repr(self.name) if self.name else ''}, {state})"
