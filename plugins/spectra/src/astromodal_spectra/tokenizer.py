"""SpectrumTokenizer: k-means tokens for DESI spectra, ZTF light curves and Gaia XP spectra."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from astromodal_core.errors import CodecFormatError, ConfigError, DataError, NotFittedError
from astromodal_core.io import id_column, iter_batches, open_parquet, require_columns
from astromodal_core.modality import TokenKey
from astromodal_core.serialize import (
    fingerprint,
    load_npz,
    load_safetensors,
    save_npz,
    save_safetensors,
)

from .group_model import GroupModel
from .groups import (
    DESI_ARMS,
    XP_BANDS,
    ZTF_BANDS,
    check_unique,
    columns_of,
    detect_groups,
    mask_column,
    normalise_group,
)
from .points import Points, read_flux_ivar, read_xp, read_ztf
from .sampler import GroupSample

PathLike = str | os.PathLike[str]
KIND = "spectrum_tokenizer"
_PARAMS = ("codebook_size", "max_features_per_group", "max_rows_per_file", "max_points_per_row",
           "groups", "detect_ztf", "id_col", "norm_bins", "n_iter", "rng_seed", "batch_size",
           "progress", "backend")
MODALITY = {"flux_ivar": "DESISpectrum", "ztf_mag_err": "ZTFLightCurve",
            "gaiaxpy_xp": "GaiaXPSpectrum"}


def _ragged(tok: np.ndarray, present: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    counts = np.where(present, tok.shape[1], 0)
    return (np.ascontiguousarray(tok[present].ravel()),
            np.concatenate([[0], np.cumsum(counts)]).astype(np.int64))


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
                mask_col: str | None, *, training: bool) -> Points:
    """The group's points of one record batch (validated)."""
    spec = model.spec
    length = spec["length"] if training else model.length
    if model.kind == "flux_ivar":
        return read_flux_ivar(batch, spec, mask_col, ids, path, length)
    if model.kind == "ztf_mag_err":
        return read_ztf(batch, spec, ids, path, length)
    assert model.design is not None
    return read_xp(batch, spec, model.design, ids, path, mask_col)


class SpectrumTokenizer:
    """Tokenise spectra and light curves with one k-means codebook per group.

    ``groups`` is a list of dicts (``name``, ``kind`` in ``flux_ivar`` / ``ztf_mag_err`` /
    ``gaiaxpy_xp`` and their column keys, optional ``patch_size``, ``length``,
    ``token_key``) or known names (``"desi_b"``). ``groups=None`` detects every default group
    (desi_<arm>, ztf_<band>, gaiaxp_bp/rp) from the first training file's columns;
    ``detect_ztf=True`` adds the ZTF bands found to explicit groups. Token id
    ``codebook_size`` is the mask token; each group also writes its per-row normalisation
    (log10 flux scale or median magnitude) on a scalar key ``<token_key>_norm`` with
    ``norm_bins`` bins (id ``norm_bins`` = no data).

    Rectangular groups (flux_ivar, ztf_mag_err) have ``L = ceil(length / patch_size)`` tokens
    per row: ``length`` is the group's ``length`` if given, else the longest row seen in
    training (for ZTF at least ``max_points_per_row``); shorter rows are padded with the mask
    token, longer rows are a DataError. Gaia XP groups are ragged: 600 / patch_size tokens for
    a source with that band, an empty row for a source without.
    """

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

    # construction -------------------------------------------------------------------------
    @classmethod
    def from_config(cls, section: Mapping[str, Any]) -> SpectrumTokenizer:
        """Build from the ``tokenizers.spectrum`` config section; unknown keys are an error."""
        section = dict(section)
        unknown = sorted(set(section) - set(_PARAMS))
        if unknown:
            raise ConfigError(f"tokenizers.spectrum: unknown key {unknown[0]!r}; allowed: {_PARAMS}")
        return cls(**section)

    @property
    def is_fitted(self) -> bool:
        return bool(self.models)

    def check_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError("SpectrumTokenizer is not fitted: call train(...) or load(...)")

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

    def sample_file(self, path: PathLike) -> dict[str, GroupSample]:
        """The bounded training sample of one file (mergeable with :meth:`fit_from_samples`)."""
        groups = self._resolve_groups(path)
        models = self._new_models(groups)
        pf = open_parquet(path)
        names = pf.schema_arrow.names
        masks = {g["name"]: mask_column(g, names) for g in groups}
        cols = [self.id_col] + [c for g in groups for c in columns_of(g)]
        cols += [m for m in masks.values() if m]
        require_columns(pf, path, cols)
        samples = {g["name"]: GroupSample(
            g, seed=self.rng_seed, max_features=self.max_features_per_group,
            max_rows_per_file=self.max_rows_per_file, max_points_per_row=self.max_points_per_row,
        ) for g in groups}
        for batch in iter_batches(path, list(dict.fromkeys(cols)), batch_size=self.batch_size):
            ids = id_column(batch, self.id_col, path)
            for g in groups:
                pts = read_points(models[g["name"]], batch, ids, path, masks[g["name"]],
                                  training=True)
                samples[g["name"]].add(pts, ids)
        for s in samples.values():
            s.end_file()
        return samples

    def fit_from_samples(self, states: Sequence[Mapping[str, GroupSample]]) -> SpectrumTokenizer:
        """Fit every group from merged per-file samples; return self."""
        if not states:
            raise ValueError("no training samples")
        merged: dict[str, GroupSample] = {}
        for st in states:
            for name, s in st.items():
                merged[name] = s if name not in merged else merged[name].merge(s)
        groups = [s.spec for s in merged.values()]
        models = self._new_models(groups)
        for name, s in merged.items():
            s.end_file()
            if len(s.vectors) == 0:
                raise DataError(f"group {name!r}: no valid points in the training files "
                                f"(columns {columns_of(s.spec)})")
            length = s.max_len
            if s.spec["kind"] == "ztf_mag_err":  # later light curves may be longer
                length = max(length, self.max_points_per_row)
            models[name].fit(s.vectors.sample(), s.norms.sample(), length,
                             seed=self.rng_seed, n_iter=self.n_iter, backend=self.backend)
        self.groups = groups
        self.models = models
        return self

    def train(self, parquet_files: Sequence[PathLike] | PathLike) -> SpectrumTokenizer:
        """Sample every file with bounded memory, then fit the codebooks; return self."""
        files = [parquet_files] if isinstance(parquet_files, (str, os.PathLike)) else list(parquet_files)
        if not files:
            raise ValueError("train() needs at least one parquet file")
        states = [self.sample_file(f) for f in tqdm(files, desc="spectrum: sampling", unit="file",
                                                    disable=not self.progress)]
        return self.fit_from_samples(states)

    # encoding -----------------------------------------------------------------------------
    def iter_encode(self, path: PathLike, *, batch_size: int | None = None,
                    progress: bool | None = None) -> Iterator[tuple[np.ndarray, dict[str, Any]]]:
        """Yield ``(ids, {group: (tokens (n, T), norm tokens (n,), present (n,))})`` per batch.

        Memory is bounded by ``batch_size``: use this (or :meth:`encode_to_store`) for files
        whose tokens do not fit in memory.
        """
        self.check_fitted()
        pf = open_parquet(path)
        names = pf.schema_arrow.names
        masks = {n: mask_column(m.spec, names) for n, m in self.models.items()}
        cols = [self.id_col] + [c for m in self.models.values() for c in columns_of(m.spec)]
        cols += [m for m in masks.values() if m]
        require_columns(pf, path, cols)
        size = batch_size or self.batch_size
        show = self.progress if progress is None else progress
        batches = iter_batches(path, list(dict.fromkeys(cols)), batch_size=size)
        for batch in tqdm(batches, desc="spectrum: encoding", unit="batch", disable=not show,
                          total=-(-pf.metadata.num_rows // size)):
            ids = id_column(batch, self.id_col, path)
            out = {}
            for name, m in self.models.items():
                pts = read_points(m, batch, ids, path, masks[name], training=False)
                tok, ntok = m.encode_points(pts, backend=self.backend)
                out[name] = (tok, ntok, pts.lengths > 0)
            yield ids, out

    def encode(self, path: PathLike, *, batch_size: int | None = None,
               progress: bool | None = None) -> dict[str, Any]:
        """Tokens of every group for one parquet file (the seed's output dict)."""
        parts: dict[str, list[Any]] = {n: [] for n in self.models}
        all_ids = []
        for ids, groups in self.iter_encode(path, batch_size=batch_size, progress=progress):
            all_ids.append(ids)
            for name, value in groups.items():
                parts[name].append(value)
        out: dict[str, Any] = {}
        for name, m in self.models.items():
            tok = np.concatenate([p[0] for p in parts[name]])
            ntok = np.concatenate([p[1] for p in parts[name]])
            if m.kind == "gaiaxpy_xp":
                present = np.concatenate([p[2] for p in parts[name]])
                out[f"tokens_{name}_flat"], out[f"tokens_{name}_indptr"] = _ragged(tok, present)
            else:
                out[f"tokens_{name}"] = tok
            out[f"tokens_{name}_norm"] = ntok
        out["ids"] = np.concatenate(all_ids).astype(np.int64)
        out["id_col"] = self.id_col
        return out

    def encode_to_store(self, path: PathLike, out_path: PathLike, *,
                        batch_size: int | None = None, progress: bool | None = None) -> Path:
        """Stream the tokens of ``path`` into a token store (parquet) batch by batch.

        The store has the id column and one column per token key, with the same metadata as
        :func:`astromodal_core.store.write_token_store`; nothing is left at ``out_path`` if
        anything fails.
        """
        import json

        import pyarrow as pa
        import pyarrow.parquet as pq

        from astromodal_core.serialize import atomic_path
        from astromodal_core.store import STORE_META_KEY

        keys = {k.name: k for k in self.token_keys}
        meta = {"id_col": self.id_col, "token_keys": {n: k.as_dict() for n, k in keys.items()},
                "fingerprints": dict.fromkeys(keys, self.fingerprint)}
        writer = None
        with atomic_path(out_path, suffix=".parquet") as tmp:
            try:
                for ids, groups in self.iter_encode(path, batch_size=batch_size, progress=progress):
                    arrays = {self.id_col: pa.array(ids, pa.int64())}
                    for name, (tok, ntok, present) in groups.items():
                        m = self.models[name]
                        key = m.spec["token_key"]
                        if m.kind == "gaiaxpy_xp":
                            flat, indptr = _ragged(tok, present)
                            arrays[key] = pa.ListArray.from_arrays(
                                pa.array(indptr.astype(np.int32)), pa.array(flat, pa.uint16()))
                        else:
                            arrays[key] = pa.FixedSizeListArray.from_arrays(
                                pa.array(tok.ravel(), pa.uint16()), tok.shape[1])
                        arrays[f"{key}_norm"] = pa.array(ntok, pa.uint16())
                    table = pa.table(arrays)
                    if writer is None:
                        schema = table.schema.with_metadata({STORE_META_KEY: json.dumps(meta)})
                        writer = pq.ParquetWriter(tmp, schema)
                    writer.write_table(table.replace_schema_metadata(writer.schema.metadata))
            finally:
                if writer is not None:
                    writer.close()
        return Path(out_path)

    def to_token_columns(self, result: Mapping[str, Any]) -> dict[str, Any]:
        """The seed dict as token-store columns ``{token_key: array or (flat, indptr)}``."""
        self.check_fitted()
        cols: dict[str, Any] = {}
        for name, m in self.models.items():
            key = m.spec["token_key"]
            if m.kind == "gaiaxpy_xp":
                cols[key] = (result[f"tokens_{name}_flat"], result[f"tokens_{name}_indptr"])
            else:
                cols[key] = result[f"tokens_{name}"]
            cols[f"{key}_norm"] = result[f"tokens_{name}_norm"]
        return cols

    def decode(self, result: Mapping[str, Any], group: str) -> Any:
        """Decode one group of an :meth:`encode` result back to its modality (physical units)."""
        return self.codec(group).decode(self.codec(group).tokens_from_result(result))

    # codecs and keys ----------------------------------------------------------------------
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

    @property
    def n_centroids(self) -> dict[str, int]:
        """Centroids actually fitted per group (fewer than codebook_size on small data)."""
        return {n: len(m.codebook) for n, m in self.models.items() if m.codebook is not None}

    # persistence --------------------------------------------------------------------------
    def _params(self) -> dict[str, Any]:
        return {"codebook_size": self.codebook_size,
                "max_features_per_group": self.max_features_per_group,
                "max_rows_per_file": self.max_rows_per_file,
                "max_points_per_row": self.max_points_per_row, "id_col": self.id_col,
                "norm_bins": self.norm_bins, "n_iter": self.n_iter, "rng_seed": self.rng_seed,
                "batch_size": self.batch_size}

    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        config = {"tokenizer": "spectrum", "params": self._params(),
                  "groups": [m.config() for m in self.models.values()]}
        arrays = {f"{n}/{k}": v for n, m in self.models.items() for k, v in m.arrays().items()}
        return config, arrays

    @property
    def fingerprint(self) -> str:
        self.check_fitted()
        return fingerprint(*self._state())

    def save(self, path: PathLike) -> None:
        """Write ``path`` (.npz: JSON config) and the codebooks to safetensors beside it."""
        self.check_fitted()
        path = Path(path)
        config, arrays = self._state()
        companion = path.with_name(path.name.removesuffix(".npz") + ".codebooks.safetensors")
        fp = save_safetensors(companion, arrays, {"tokenizer": "spectrum"})
        config["companion"] = companion.name
        config["companion_fingerprint"] = fp
        save_npz(path, config, {}, kind=KIND)

    @classmethod
    def load(cls, path: PathLike, **kwargs: Any) -> SpectrumTokenizer:
        """Read a tokenizer written by :meth:`save` (never unpickles)."""
        path = Path(path)
        config, _, _ = load_npz(path, kind=KIND)
        try:
            params = dict(config["params"])
            groups = list(config["groups"])
            companion = path.with_name(config["companion"])
            expected = config["companion_fingerprint"]
        except (KeyError, TypeError) as exc:
            raise CodecFormatError(f"{path}: not a spectrum tokenizer config ({exc})") from exc
        arrays, _ = load_safetensors(companion, expected_fingerprint=expected)
        params.update(kwargs)
        tok = cls(groups=[g["spec"] for g in groups], **params)
        for g in groups:
            name = g["spec"]["name"]
            sub = {k.split("/", 1)[1]: v for k, v in arrays.items() if k.split("/", 1)[0] == name}
            if "codebook" not in sub:
                raise CodecFormatError(f"{companion}: no codebook for group {name!r}")
            tok.models[name] = GroupModel.from_state(g, sub)
        return tok
