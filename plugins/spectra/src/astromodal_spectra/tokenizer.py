"""SpectrumTokenizer: k-means tokens for DESI spectra, ZTF light curves and Gaia XP spectra.

A :class:`astromodal_core.Tokenizer`: the base gives ``from_config``, ``train`` (one bounded
sample folded across files), ``encode_to_store`` (streamed), ``save`` / ``load`` (the ``.npz``
plus one content-addressed companion ``<stem>.codebooks.<fingerprint>.safetensors`` holding
the codebooks) and ``fingerprint``. Files written before the base (a
``<stem>.codebooks.safetensors`` companion) still load.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from astromodal_core.errors import CodecFormatError, DataError, TokenKeyError
from astromodal_core.io import id_column, iter_batches, open_parquet, require_columns
from astromodal_core.modality import TokenKey
from astromodal_core.tokenizer import Tokenizer

from . import fused
from .group_model import GroupModel, is_level_shape
from .groups import (
    DESI_ARMS,
    XP_BANDS,
    ZTF_BANDS,
    check_unique,
    columns_of,
    detect_groups,
    explicit_group,
    mask_column,
    normalise_group,
)
from .points import Points, read_flux_ivar, read_xp, read_ztf
from .sampler import GroupSample

PathLike = str | os.PathLike[str]
KIND = "spectrum_tokenizer"
#: the settings saved with a fitted tokenizer (the groups are saved with their state)
_SAVED = ("codebook_size", "max_features_per_group", "max_rows_per_file", "max_points_per_row",
          "id_col", "norm_bins", "n_iter", "rng_seed", "batch_size")
MODALITY = {"flux_ivar": "DESISpectrum", "ztf_mag_err": "ZTFLightCurve",
            "gaiaxpy_xp": "GaiaXPSpectrum"}
_PART = "codebooks"
#: rows whose points are processed together (bounds the per-point temporaries of a batch)
CHUNK_ROWS = 256


def _ragged(tok: np.ndarray, present: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    counts = np.where(present, tok.shape[1], 0)
    return (np.ascontiguousarray(tok[present].ravel()),
            np.concatenate([[0], np.cumsum(counts)]).astype(np.int64))


def ragged_rows(tok: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(flat, indptr)``: the first ``counts[i]`` tokens of each row of ``tok`` (n, T)."""
    keep = np.arange(tok.shape[1])[None, :] < counts[:, None]
    return (np.ascontiguousarray(tok[keep]),
            np.concatenate([[0], np.cumsum(counts)]).astype(np.int64))


def rect_rows(flat: np.ndarray, indptr: np.ndarray, width: int, fill: int, where: str
              ) -> np.ndarray:
    """A ragged ``(flat, indptr)`` as an ``(n, width)`` int64 array padded with ``fill``."""
    flat, indptr = np.asarray(flat).astype(np.int64), np.asarray(indptr).astype(np.int64)
    counts = np.diff(indptr)
    if counts.size and (counts.min() < 0 or counts.max() > width or indptr[0] != 0
                        or indptr[-1] != len(flat)):
        raise DataError(f"{where}: ragged rows of {counts.min()} to {counts.max()} tokens "
                        f"(indptr to {indptr[-1]}, {len(flat)} tokens); at most {width} a row")
    out = np.full((len(counts), width), fill, dtype=np.int64)
    out[np.arange(width)[None, :] < counts[:, None]] = flat
    return out


def _chunks(batch: pa.RecordBatch) -> Iterator[pa.RecordBatch]:
    """Zero-copy slices of at most ``CHUNK_ROWS`` rows: the per-point arrays of one slice are
    what the features and assignment hold at a time, whatever the batch size."""
    for start in range(0, max(batch.num_rows, 1), CHUNK_ROWS):
        yield batch.slice(start, CHUNK_ROWS)


def _join(parts: list[np.ndarray]) -> np.ndarray:
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def group_from_name(name: str) -> dict[str, Any]:
    """The default group dict of a known name (``desi_b``, ``ztf_g``, ``gaiaxp_bp``, ...)."""
    for arm in DESI_ARMS:
        if name == f"desi_{arm}":
            return {"name": name, "kind": "flux_ivar"}
    for band in ZTF_BANDS:
        if name == f"ztf_{band}":
            return {"name": name, "kind": "ztf_mag_err"}
    for band in XP_BANDS:
        if name in (f"gaiaxp_{band.lower()}", f"xp_{band.lower()}"):
            return {"name": name, "kind": "gaiaxpy_xp", "xp_band": band}
    raise ValueError(f"unknown group name {name!r}: give a dict with 'name' and 'kind'")


def read_points(model: GroupModel, batch: Any, ids: np.ndarray, path: PathLike,
                mask_col: str | None, *, training: bool) -> Points | fused.FluxRows:
    """The group's points of one record batch (validated): a per-pixel flux_ivar group as
    flat Arrow buffers for the fused kernels (with numba), every other group padded."""
    spec = model.spec
    length = spec["length"] if training else model.length
    if model.kind == "flux_ivar" and fused.HAVE_NUMBA and not is_level_shape(spec):
        return fused.read_flux_rows(batch, spec, mask_col, ids, path, length)
    if model.kind == "flux_ivar":
        return read_flux_ivar(batch, spec, mask_col, ids, path, length)
    if model.kind == "ztf_mag_err":
        return read_ztf(batch, spec, ids, path, length)
    assert model.design is not None
    return read_xp(batch, spec, model.design, ids, path, mask_col)


class SpectrumTokenizer(Tokenizer):
    """Tokenise spectra and light curves with one k-means codebook per group.

    ``groups`` is a list of dicts (``name``, ``kind`` in ``flux_ivar`` / ``ztf_mag_err`` /
    ``gaiaxpy_xp`` and their column keys, optional ``patch_size``, ``length``,
    ``token_key``) or known names (``"desi_b"``). ``groups=None`` detects every default group
    (desi_<arm>, ztf_<band>, gaiaxp_bp/rp) from the first training file's columns;
    ``detect_ztf=True`` adds the ZTF bands found to explicit groups. Token id
    ``codebook_size`` is the mask token; each group also writes its per-row normalisation
    (log10 flux scale or median magnitude) on an ordinal scalar key ``<token_key>_norm`` with
    ``norm_bins`` bins (id ``norm_bins`` = no data; :meth:`token_values` gives the bin centres).

    DESI groups have ``L = ceil(length / patch_size)`` tokens per row: ``length`` is the
    group's ``length`` if given, else the longest row seen in training; shorter rows are padded
    with the mask token, longer rows are a DataError. ``encoding: level_shape`` gives two
    tokens per patch (``<key>_level``, ``<key>``) and a ``<key>_noise`` scalar. ZTF groups are
    ragged (``layout: ragged``, the default: a light curve's tokens end at its last point, at
    most the longest training light curve) with a ``<key>_time`` token per patch (days since the
    first valid point, ``time_encoding: since_first``); ``layout: padded`` / ``time_encoding:
    delta`` is the earlier form (rows padded to at least ``max_points_per_row``). Gaia XP
    groups are ragged: 600 / patch_size tokens for a source with that band, an empty row for a
    source without.

    Memory. Training holds one reservoir of at most ``max_features_per_group`` vectors per
    group across all files plus one record batch of ``batch_size`` rows (a file with more than
    ``max_rows_per_file`` rows is read twice: once to choose its rows, once for their
    features); encoding holds one batch.
    """

    name = "spectrum"
    kind = KIND

    def __init__(
        self,
        codebook_size: int = 2048,
        max_features_per_group: int = 2_000_000,
        max_rows_per_file: int = 5000,
        max_points_per_row: int = 2000,
        groups: Sequence[Mapping[str, Any] | str] | None = None,
        *,
        detect_ztf: bool | None = None,
        id_col: str = "id",
        norm_bins: int = 1024,
        n_iter: int = 20,
        rng_seed: int = 0,
        batch_size: int = 1024,
        progress: bool = True,
        backend: str = "auto",
    ):
        if not 1 <= int(codebook_size) <= 65535:
            raise ValueError(f"codebook_size must be in [1, 65535], got {codebook_size}")
        if not 2 <= int(norm_bins) <= 65535:
            raise ValueError(f"norm_bins must be in [2, 65535], got {norm_bins}")
        for name, v in (("max_features_per_group", max_features_per_group),
                        ("max_rows_per_file", max_rows_per_file),
                        ("max_points_per_row", max_points_per_row), ("batch_size", batch_size)):
            if int(v) < 1:
                raise ValueError(f"{name} must be >= 1, got {v}")
        if backend not in ("auto", "numba", "numpy", "faiss"):
            raise ValueError(f"backend must be 'auto', 'numba', 'numpy' or 'faiss', got {backend!r}")
        self.codebook_size = int(codebook_size)
        self.max_features_per_group = int(max_features_per_group)
        self.max_rows_per_file = int(max_rows_per_file)
        self.max_points_per_row = int(max_points_per_row)
        self.detect_ztf = detect_ztf
        self.id_col = id_col
        self.norm_bins = int(norm_bins)
        self.n_iter = int(n_iter)
        self.rng_seed = int(rng_seed)
        self.batch_size = int(batch_size)
        self.progress = bool(progress)
        self.backend = backend
        self.groups: list[dict[str, Any]] | None = None
        if groups is not None:
            self.groups = [normalise_group(group_from_name(g) if isinstance(g, str) else g)
                           for g in groups]
            check_unique(self.groups)
        self.models: dict[str, GroupModel] = {}

    @property
    def is_fitted(self) -> bool:
        return bool(self.models)

    def settings(self) -> dict[str, Any]:
        """The constructor settings (what ``from_config`` takes), groups written out in full."""
        out = super().settings()
        if self.groups is not None:
            out["groups"] = [explicit_group(g) for g in self.groups]
        return out

    # training -----------------------------------------------------------------------------
    def _resolve_groups(self, path: PathLike) -> list[dict[str, Any]]:
        if self.groups is not None and not self.detect_ztf:
            return self.groups
        names = open_parquet(path).schema_arrow.names
        if self.groups is None:
            groups = detect_groups(names)
        else:
            have = {g["name"] for g in self.groups}
            groups = self.groups + [g for g in detect_groups(names, ztf_only=True)
                                    if g["name"] not in have]
        if not groups:
            raise DataError(f"{path}: no spectrum, light-curve or XP columns to tokenise "
                            "(pass groups=[...])")
        check_unique(groups)
        self.groups = groups
        return groups

    def _new_models(self, groups: list[dict[str, Any]]) -> dict[str, GroupModel]:
        models = {}
        for g in groups:
            m = GroupModel(g, self.codebook_size, self.norm_bins)
            if g["kind"] == "gaiaxpy_xp":
                from .xp import design_matrix

                m.design = design_matrix(g["xp_band"])
            models[g["name"]] = m
        return models

    def _columns(self, specs: Sequence[Mapping[str, Any]], names: Sequence[str]
                 ) -> tuple[list[str], dict[str, str | None]]:
        masks = {g["name"]: mask_column(g, names) for g in specs}
        cols = [self.id_col] + [c for g in specs for c in columns_of(g)]
        cols += [m for m in masks.values() if m]
        return list(dict.fromkeys(cols)), masks

    def sample_file(self, path: PathLike) -> dict[str, GroupSample]:
        """The bounded training sample of one file: ``{group: GroupSample}``.

        Reads the file in batches; a file with more than ``max_rows_per_file`` rows is read
        twice (choose the rows, then sample their features), so memory never holds the file.
        """
        groups = self._resolve_groups(path)
        models = self._new_models(groups)
        pf = open_parquet(path)
        cols, masks = self._columns(groups, pf.schema_arrow.names)
        require_columns(pf, path, cols)
        samples = {g["name"]: GroupSample(
            g, seed=self.rng_seed, max_features=self.max_features_per_group,
            max_rows_per_file=self.max_rows_per_file, max_points_per_row=self.max_points_per_row,
        ) for g in groups}
        one_pass = pf.metadata.num_rows <= self.max_rows_per_file
        for batch in iter_batches(path, cols, batch_size=self.batch_size):
            for part in _chunks(batch):
                ids = id_column(part, self.id_col, path)
                for name, s in samples.items():
                    pts = read_points(models[name], part, ids, path, masks[name], training=True)
                    norm_has = s.scan(pts, ids)
                    if one_pass:
                        s.add(pts, ids, norm_has)
        if not one_pass:  # second pass: the features of the chosen rows only
            for batch in iter_batches(path, cols, batch_size=self.batch_size):
                ids = id_column(batch, self.id_col, path)
                chosen = np.zeros(len(ids), dtype=bool)
                for s in samples.values():
                    chosen |= s.selected(ids)
                if not chosen.any():
                    continue
                for part in _chunks(batch.filter(pa.array(chosen))):
                    ids = id_column(part, self.id_col, path)
                    for name, s in samples.items():
                        pts = read_points(models[name], part, ids, path, masks[name],
                                          training=True)
                        s.add(pts, ids)
        for s in samples.values():
            s.end_file()
        return samples

    def _fit(self, sample: Mapping[str, GroupSample]) -> None:
        groups = [s.spec for s in sample.values()]
        models = self._new_models(groups)
        for name, s in sample.items():
            if len(s.vectors) == 0:
                raise DataError(f"group {name!r}: no valid points in the training files "
                                f"(columns {columns_of(s.spec)})")
            length = s.max_len
            if s.spec["kind"] == "ztf_mag_err" and not models[name].ragged:
                length = max(length, self.max_points_per_row)  # later light curves may be longer
            models[name].fit(s.vectors.sample(), s.norms.sample(), length,
                             seed=self.rng_seed, n_iter=self.n_iter, backend=self.backend,
                             max_span=s.max_span)
        self.groups = groups
        self.models = models

    def train(self, sources: PathLike | Sequence[PathLike], *,
              progress: bool | None = None) -> SpectrumTokenizer:
        """Sample every file with bounded memory (one reservoir per group, folded file by
        file), then fit the codebooks; return self."""
        return super().train(sources, progress=self.progress if progress is None else progress)

    # encoding -----------------------------------------------------------------------------
    def input_columns(self, path: PathLike) -> list[str]:
        self.check_fitted()
        pf = open_parquet(path)
        cols, _ = self._columns([m.spec for m in self.models.values()], pf.schema_arrow.names)
        require_columns(pf, path, cols)
        return cols

    def _encode_batch(self, batch: Any, path: PathLike) -> tuple[np.ndarray, dict[str, Any]]:
        names = batch.schema.names
        masks = {n: mask_column(m.spec, names) for n, m in self.models.items()}
        parts: dict[str, list[tuple[dict[str, np.ndarray], np.ndarray | None, np.ndarray]]] = {
            n: [] for n in masks}
        for part in _chunks(batch):
            ids = id_column(part, self.id_col, path)
            for name, m in self.models.items():
                pts = read_points(m, part, ids, path, masks[name], training=False)
                toks, counts = m.encode_points(pts, backend=self.backend)
                parts[name].append((toks, counts, pts.lengths > 0))
        out: dict[str, Any] = {}
        for name, m in self.models.items():
            key = m.spec["token_key"]
            for sfx in m.suffixes:
                tok = _join([p[0][sfx] for p in parts[name]])
                if tok.ndim == 1 or not m.ragged:
                    out[f"{key}{sfx}"] = tok
                elif m.kind == "gaiaxpy_xp":
                    out[f"{key}{sfx}"] = _ragged(tok, _join([p[2] for p in parts[name]]))
                else:
                    counts = _join([p[1] for p in parts[name]])  # type: ignore[misc]
                    out[f"{key}{sfx}"] = ragged_rows(tok, counts)
        return id_column(batch, self.id_col, path), out

    def iter_token_batches(self, path: PathLike, *, batch_size: int | None = None,
                           progress: bool | None = None
                           ) -> Iterator[tuple[np.ndarray, dict[str, Any]]]:
        """Yield ``(ids, {token key: tokens})`` per record batch of ``batch_size`` rows (memory
        is bounded by the batch): ``(n, L)`` uint16 per rectangular group, ``(flat, indptr)``
        per XP group, ``(n,)`` for every ``_norm`` key."""
        yield from super().iter_token_batches(
            path, batch_size=batch_size, progress=self.progress if progress is None else progress)

    def encode(self, path: PathLike, *, batch_size: int | None = None,
               progress: bool | None = None) -> dict[str, Any]:
        """Tokens of every group for one parquet file (the seed's output dict):
        ``tokens_<group>`` (n, L) or ``tokens_<group>_flat`` / ``_indptr`` (ragged groups: Gaia
        XP, ZTF with ``layout: ragged``), ``tokens_<group>_norm`` (n,), the same for the extra
        keys of an encoding (``tokens_<group>_time``, ``_level``, ``_noise``), with ``ids`` and
        ``id_col``."""
        generic = super().encode(path, batch_size=batch_size,
                                 progress=self.progress if progress is None else progress)
        out: dict[str, Any] = {}
        for name, m in self.models.items():
            key = m.spec["token_key"]
            for sfx in m.suffixes:
                value = generic[f"{key}{sfx}"]
                if isinstance(value, tuple):
                    out[f"tokens_{name}{sfx}_flat"], out[f"tokens_{name}{sfx}_indptr"] = value
                else:
                    out[f"tokens_{name}{sfx}"] = value
        out["ids"] = generic["ids"]
        out["id_col"] = self.id_col
        return out

    def encode_to_store(self, path: PathLike, out: PathLike, *, batch_size: int | None = None,
                        progress: bool | None = None) -> Path:
        """Stream the tokens of ``path`` into a token store at ``out``, batch by batch
        (nothing is left at ``out`` if anything fails)."""
        return super().encode_to_store(path, out, batch_size=batch_size,
                                       progress=self.progress if progress is None else progress)

    def to_token_columns(self, result: Mapping[str, Any]) -> dict[str, Any]:
        """The seed dict as token-store columns ``{token_key: array or (flat, indptr)}``."""
        self.check_fitted()
        cols: dict[str, Any] = {}
        for name, m in self.models.items():
            key = m.spec["token_key"]
            for sfx in m.suffixes:
                if f"tokens_{name}{sfx}_flat" in result:
                    cols[f"{key}{sfx}"] = (result[f"tokens_{name}{sfx}_flat"],
                                           result[f"tokens_{name}{sfx}_indptr"])
                else:
                    cols[f"{key}{sfx}"] = result[f"tokens_{name}{sfx}"]
        return cols

    def decode(self, result: Mapping[str, Any], group: str) -> Any:
        """Decode one group of an :meth:`encode` result back to its modality (physical units)."""
        return self.codec(group).decode(self.codec(group).tokens_from_result(result))

    # codecs, keys and values --------------------------------------------------------------
    def codec(self, group: str) -> Any:
        """The fitted codec of one group."""
        from .codecs import codec_for_model

        self.check_fitted()
        if group not in self.models:
            raise KeyError(f"unknown group {group!r}; groups: {sorted(self.models)}")
        return codec_for_model(self.models[group])

    def codecs(self) -> list[Any]:
        """One fitted codec per group."""
        return [self.codec(name) for name in self.models]

    @property
    def token_keys(self) -> tuple[TokenKey, ...]:
        self.check_fitted()
        return tuple(k for name in self.models for k in self.codec(name).token_keys)

    def token_values(self, key: str) -> np.ndarray:
        """The value of every id of an ordinal key, float64 ``(vocab_size,)``: ``<key>_norm``
        the bin centre of log10 flux scale (DESI, XP) or of the median magnitude (ZTF);
        ``<key>_time`` days since the light curve's first valid point; ``<key>_level`` flux /
        flux scale; ``<key>_noise`` log10(median sigma / flux scale). NaN at the mask token and
        past the fitted bins. The k-means keys have no values."""
        k = self.token_key(key)
        for m in self.models.values():
            for sfx in m.suffixes[1:]:
                if key == f"{m.spec['token_key']}{sfx}":
                    return m.values(sfx)
        raise TokenKeyError(f"SpectrumTokenizer: token key {k.name!r} has no physical values "
                            "(k-means codebook ids are not ordinal)")

    @property
    def n_centroids(self) -> dict[str, int]:
        """Centroids actually fitted per group (fewer than codebook_size on small data)."""
        return {n: m.book.n_codes for n, m in self.models.items() if m.book.is_fitted}

    # persistence --------------------------------------------------------------------------
    def _params(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in _SAVED}

    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        config = {"params": self._params(), "groups": [m.config() for m in self.models.values()]}
        arrays = {f"{n}/norm_edges": m.arrays()["norm_edges"] for n, m in self.models.items()}
        return config, arrays

    def _companions(self) -> dict[str, tuple[dict[str, np.ndarray], dict[str, Any]]]:
        arrays = {f"{n}/{k}": v for n, m in self.models.items() for k, v in m.arrays().items()
                  if k != "norm_edges"}
        return {_PART: (arrays, {"tokenizer": self.name})}

    @classmethod
    def load(cls, path: PathLike, **kwargs: Any) -> SpectrumTokenizer:
        """Read a tokenizer written by :meth:`save` (never unpickles); ``kwargs`` override
        settings that do not change tokens (``progress``, ``batch_size``, ``backend``)."""
        unknown = sorted(set(kwargs) - set(cls.config_options()))
        if unknown:
            raise TypeError(f"SpectrumTokenizer.load: unknown setting(s) {unknown}")
        return super().load(path, _source=Path(path), **kwargs)

    @classmethod
    def _from_state(cls, config: dict[str, Any], arrays: dict[str, np.ndarray],
                    companions: dict[str, dict[str, np.ndarray]], **kwargs: Any
                    ) -> SpectrumTokenizer:
        source = kwargs.pop("_source", None)
        where = str(source) if source is not None else "spectrum tokenizer"
        if "companion" in config and not companions:  # saved before the Tokenizer base
            companions = {_PART: _legacy_companion(config, source, where)}
        params, groups = config.get("params"), config.get("groups")
        if not isinstance(params, Mapping) or not isinstance(groups, list) or not groups:
            raise CodecFormatError(f"{where}: not a spectrum tokenizer state (no params / groups)")
        if _PART not in companions:
            raise CodecFormatError(f"{where}: no {_PART!r} companion")
        unknown = set(params) - set(cls.config_options())
        if unknown:
            raise CodecFormatError(f"{where}: unknown saved settings {sorted(unknown)}")
        stored = {**arrays, **companions[_PART]}
        models: dict[str, GroupModel] = {}
        for g in groups:
            if not isinstance(g, Mapping) or not isinstance(g.get("spec"), Mapping):
                raise CodecFormatError(f"{where}: a group entry is not a mapping with a 'spec'")
            name = str(g["spec"].get("name"))
            sub = {k.split("/", 1)[1]: v for k, v in stored.items() if k.split("/", 1)[0] == name}
            models[name] = GroupModel.from_state(g, sub, where=f"{where}: group {name!r}")
        tok = cls(groups=[m.spec for m in models.values()], **{**params, **kwargs})
        for m in models.values():
            if (m.codebook_size, m.norm_bins) != (tok.codebook_size, tok.norm_bins):
                raise CodecFormatError(f"{where}: group {m.spec['name']!r} has codebook_size "
                                       f"{m.codebook_size} / norm_bins {m.norm_bins}, the "
                                       f"tokenizer {tok.codebook_size} / {tok.norm_bins}")
        tok.models = models
        tok.groups = [m.spec for m in models.values()]
        return tok


def _legacy_companion(config: Mapping[str, Any], source: Path | None, where: str
                      ) -> dict[str, np.ndarray]:
    """The arrays of a pre-base save: ``<stem>.codebooks.safetensors`` named in the config."""
    from astromodal_core.serialize import load_safetensors

    name, fp = config.get("companion"), config.get("companion_fingerprint")
    if source is None or not isinstance(name, str) or name != Path(name).name or not isinstance(fp, str):
        raise CodecFormatError(f"{where}: bad companion entry {name!r}")
    arrays, _ = load_safetensors(source.with_name(name), expected_fingerprint=fp)
    return arrays
