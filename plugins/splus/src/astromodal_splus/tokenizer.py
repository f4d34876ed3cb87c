"""ScalarTokenizer: quantile binning of catalogue scalars (seed 000's ScalarTokenizer).

Missing values. The seed's dense ``scalar_tokens`` (n_rows, n_cols) uint16 array holds the
reserved id ``N_BINS`` where a value is NaN, +-inf or a sentinel: ``sentinels`` (default 99,
-99) apply to magnitude and magnitude-error columns only, ``column_sentinels={column: [...]}``
sets any column's own list (``[]`` for none). Every column's token key has ``vocab_size = N_BINS + 1`` and ``mask_token = N_BINS``, the
token store stores the same id. ``encode`` also returns ``scalar_mask`` (True = missing), a
convenience equal to ``scalar_tokens == N_BINS``.

Filters. The row filter (``mag_filter_col`` in ``[mag_min, mag_max]``) and the error filter
(``err <= magerr_max`` for columns with an error column) only choose the values the bin edges
are estimated from. ``encode`` encodes every row of a file, whatever its magnitude or error.

Column names. ``scalar_columns``, ``mag_filter_col`` and the keys of ``error_columns`` are
canonical names (the seed's defaults, e.g. ``mag_pstotal_r``); ``column_map`` maps a canonical
name to the file's column (``{"mag_pstotal_r": "r_auto", "err_mag_pstotal_r": "e_r_auto"}``).
Token keys and ``scalar_cols`` are always canonical, so a model trained on tokens of one
catalogue reads tokens of another.
"""

from __future__ import annotations

import inspect
import os
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from astromodal_core import CodecFormatError, ConfigError, DataError, NotFittedError, TokenKey
from astromodal_core.io import id_column, iter_batches, num_rows, numeric_column
from astromodal_core.sampling import BottomK, hash_keys
from astromodal_core.serialize import fingerprint, load_npz, save_npz

from .binning import BinTable, fit_bins
from .codecs import ScalarColumnCodec, codec_for_column, missing_mask
from .columns import (
    DEFAULT_SCALAR_COLUMNS,
    DEFAULT_SENTINELS,
    check_unique_keys,
    default_error_columns,
    default_sentinels,
    file_column,
    token_key_name,
)
from .kernels import build_lookup, encode_many, resolve_backend, submit_many

TOKENIZER_KIND = "scalar_tokenizer"
SAMPLE_FORMAT = 1


def _float_column(batch: pa.RecordBatch, name: str, path: Any) -> np.ndarray:
    """A numeric column as float32/float64 numpy (nulls -> NaN), without copying floats twice."""
    col = batch.column(name)
    if pa.types.is_floating(col.type) and not pa.types.is_float16(col.type):
        return col.to_numpy(zero_copy_only=False)
    return numeric_column(batch, name, path)


class ScalarTokenizer:
    """Quantile binning of catalogue scalars into ``n_bins`` tokens per column (+ a mask token).

    Train with :meth:`train` (or :meth:`sample_file` per file + :meth:`fit_from_samples`),
    encode parquet files with :meth:`encode`, persist with :meth:`save` / :meth:`load`.
    """

    def __init__(
        self,
        n_bins: int = 1024,
        scalar_columns: Sequence[str] | None = None,
        mag_filter_col: str | None = "mag_pstotal_r",
        mag_min: float = 14.0,
        mag_max: float = 22.0,
        apply_row_filter: bool = True,
        magerr_max: float = 2.0,
        apply_magerr_filter: bool = True,
        max_values_per_col: int = 2_000_000,
        rng_seed: int = 0,
        *,
        max_values_per_file_per_col: int | None = 100_000,
        id_col: str = "id",
        column_map: Mapping[str, str] | None = None,
        error_columns: Mapping[str, str] | None = None,
        sentinels: Sequence[float] = DEFAULT_SENTINELS,
        column_sentinels: Mapping[str, Sequence[float]] | None = None,
        batch_size: int = 131_072,
        backend: str = "auto",
        progress: bool = True,
    ):
        cols = list(DEFAULT_SCALAR_COLUMNS if scalar_columns is None else scalar_columns)
        if not cols or not all(isinstance(c, str) and c for c in cols):
            raise ValueError(f"scalar_columns must be a non-empty list of column names, got {cols!r}")
        if len(set(cols)) != len(cols):
            raise ValueError(f"scalar_columns lists a column twice: {cols}")
        check_unique_keys(cols)
        if not 2 <= int(n_bins) <= 65535:
            raise ValueError(f"n_bins must be in [2, 65535] (uint16 tokens + mask), got {n_bins}")
        if float(mag_min) > float(mag_max):
            raise ValueError(f"mag_min {mag_min} is above mag_max {mag_max}")
        if int(max_values_per_col) < 1:
            raise ValueError(f"max_values_per_col must be >= 1, got {max_values_per_col}")
        if max_values_per_file_per_col is not None and int(max_values_per_file_per_col) < 1:
            raise ValueError(f"max_values_per_file_per_col must be >= 1, got {max_values_per_file_per_col}")
        resolve_backend(backend)
        self.n_bins = int(n_bins)
        self.scalar_columns = cols
        self.mag_filter_col = mag_filter_col
        self.mag_min = float(mag_min)
        self.mag_max = float(mag_max)
        self.apply_row_filter = bool(apply_row_filter) and mag_filter_col is not None
        self.magerr_max = float(magerr_max)
        self.apply_magerr_filter = bool(apply_magerr_filter)
        self.max_values_per_col = int(max_values_per_col)
        self.max_values_per_file_per_col = (
            None if max_values_per_file_per_col is None else int(max_values_per_file_per_col)
        )
        self.rng_seed = int(rng_seed)
        self.id_col = str(id_col)
        self.column_map = {str(k): str(v) for k, v in dict(column_map or {}).items()}
        self.error_columns = (
            default_error_columns(cols) if error_columns is None
            else {str(k): str(v) for k, v in dict(error_columns).items()}
        )
        unknown = [c for c in self.error_columns if c not in cols]
        if unknown:
            raise ValueError(f"error_columns names {unknown}, which are not in scalar_columns")
        self.sentinels = tuple(float(s) for s in sentinels)
        self.column_sentinels = {
            str(k): [float(x) for x in v] for k, v in dict(column_sentinels or {}).items()
        }
        known = {*cols, *self.error_columns.values(), *([mag_filter_col] if mag_filter_col else [])}
        unknown = [c for c in self.column_sentinels if c not in known]
        if unknown:
            raise ValueError(
                f"column_sentinels names {unknown}, which are not scalar, error or row-filter columns"
            )
        self.batch_size = int(batch_size)
        self.backend = backend
        self.progress = bool(progress)
        self.bins: dict[str, BinTable] | None = None
        self.report_: dict[str, Any] = {}
        self._lookups: dict[str, Any] = {}

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_config(cls, section: Mapping[str, Any]) -> ScalarTokenizer:
        """Build from the ``tokenizers.scalar`` section of config.yaml; unknown keys are errors."""
        params = set(inspect.signature(cls.__init__).parameters) - {"self"}
        data = section.to_dict() if hasattr(section, "to_dict") else dict(section)
        for key in data:
            if key not in params:
                raise ConfigError(f"tokenizers.scalar: unknown key {key!r}; known: {sorted(params)}")
        return cls(**data)

    def _settings(self) -> dict[str, Any]:
        return {
            "n_bins": self.n_bins,
            "scalar_columns": list(self.scalar_columns),
            "mag_filter_col": self.mag_filter_col,
            "mag_min": self.mag_min,
            "mag_max": self.mag_max,
            "apply_row_filter": self.apply_row_filter,
            "magerr_max": self.magerr_max,
            "apply_magerr_filter": self.apply_magerr_filter,
            "max_values_per_col": self.max_values_per_col,
            "max_values_per_file_per_col": self.max_values_per_file_per_col,
            "rng_seed": self.rng_seed,
            "id_col": self.id_col,
            "column_map": dict(self.column_map),
            "error_columns": dict(self.error_columns),
            "sentinels": list(self.sentinels),
            "column_sentinels": {k: list(v) for k, v in self.column_sentinels.items()},
        }

    # ------------------------------------------------------------------ properties
    @property
    def N_BINS(self) -> int:  # noqa: N802 - the seed's name
        """Bins per column; also the mask token id."""
        return self.n_bins

    @property
    def mask_token(self) -> int:
        return self.n_bins

    @property
    def vocab_size(self) -> int:
        return self.n_bins + 1

    @property
    def scalar_cols(self) -> list[str]:
        return list(self.scalar_columns)

    @property
    def is_fitted(self) -> bool:
        return self.bins is not None

    def sentinels_of(self, column: str) -> tuple[float, ...]:
        """Values that mean "missing" in a canonical column: its ``column_sentinels`` entry, else
        ``sentinels`` for magnitude and magnitude-error columns, else none."""
        if column in self.column_sentinels:
            return tuple(self.column_sentinels[column])
        return default_sentinels(column, self.sentinels)

    def _sentinel_array(self, column: str) -> np.ndarray:
        return np.asarray(self.sentinels_of(column), dtype=np.float64)

    def check_fitted(self) -> None:
        if self.bins is None:
            raise NotFittedError("ScalarTokenizer is not fitted: call train(...) or ScalarTokenizer.load(...)")

    @property
    def token_keys(self) -> tuple[TokenKey, ...]:
        """One scalar key per column: ``tok_<column>``, vocab N_BINS + 1, mask token N_BINS."""
        return tuple(
            codec_for_column(c, self.n_bins).token_keys[0] for c in self.scalar_columns
        )

    @property
    def effective_bins(self) -> dict[str, int]:
        """Distinct bins each column uses (fewer than n_bins when the sample has ties)."""
        self.check_fitted()
        assert self.bins is not None
        return {c: self.bins[c].effective_bins for c in self.scalar_columns}

    @property
    def fingerprint(self) -> str:
        self.check_fitted()
        config, arrays = self._state()
        return fingerprint(config, arrays)

    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        assert self.bins is not None
        arrays: dict[str, np.ndarray] = {}
        for i, c in enumerate(self.scalar_columns):
            arrays.update(self.bins[c].arrays(f"c{i:03d}_"))
        config = {
            "tokenizer": "scalar",
            "class": "ScalarTokenizer",
            "settings": self._settings(),
            "n_samples": {c: self.bins[c].n_samples for c in self.scalar_columns},
        }
        return config, arrays

    # ------------------------------------------------------------------ training
    def _file_col(self, name: str) -> str:
        return file_column(name, self.column_map)

    def _training_columns(self) -> list[str]:
        names = [self.id_col]
        if self.apply_row_filter:
            names.append(self._file_col(str(self.mag_filter_col)))
        for c in self.scalar_columns:
            names.append(self._file_col(c))
            if self.apply_magerr_filter and c in self.error_columns:
                names.append(self._file_col(self.error_columns[c]))
        return list(dict.fromkeys(names))

    def sample_file(self, path: str | os.PathLike[str]) -> dict[str, Any]:
        """Bounded per-column samples of one file, after the filters (a plain dict of arrays).

        ``train(files)`` equals ``fit_from_samples([sample_file(f) for f in files])``; the state
        holds only numpy arrays, numbers and strings, so it can travel between processes.
        """
        k_file = self.max_values_per_file_per_col or self.max_values_per_col
        k_file = min(k_file, self.max_values_per_col)
        reservoirs = {c: BottomK(k_file) for c in self.scalar_columns}
        n_valid = dict.fromkeys(self.scalar_columns, 0)
        n_rows = n_pass = 0
        for batch in iter_batches(path, self._training_columns(), batch_size=self.batch_size):
            ids = id_column(batch, self.id_col, path)
            n_rows += len(ids)
            keep = np.ones(len(ids), dtype=bool)
            if self.apply_row_filter:
                f = numeric_column(batch, self._file_col(str(self.mag_filter_col)), path)
                with np.errstate(invalid="ignore"):
                    keep = (f >= self.mag_min) & (f <= self.mag_max)
                keep &= ~missing_mask(f, self.sentinels_of(str(self.mag_filter_col)))
            n_pass += int(keep.sum())
            for c in self.scalar_columns:
                v = _float_column(batch, self._file_col(c), path)
                ok = keep & ~missing_mask(v, self.sentinels_of(c))
                if self.apply_magerr_filter and c in self.error_columns:
                    ec = self.error_columns[c]
                    e = _float_column(batch, self._file_col(ec), path)
                    with np.errstate(invalid="ignore"):
                        ok &= (e <= self.magerr_max) & ~missing_mask(e, self.sentinels_of(ec))
                n_valid[c] += int(ok.sum())
                reservoirs[c].add(hash_keys(ids[ok], self.rng_seed, salt=c), v[ok])
        if n_pass == 0 and not self.apply_row_filter:
            raise DataError(f"{path}: the file has no rows to train on ({n_rows} rows read)")
        if n_pass == 0:
            fc = self._file_col(str(self.mag_filter_col))
            raise DataError(
                f"{path}: no rows pass the row filter: column {fc!r} in "
                f"[{self.mag_min}, {self.mag_max}] ({n_rows} rows read)"
            )
        columns = {}
        for c in self.scalar_columns:
            keys, values = reservoirs[c].arrays()
            columns[c] = {"keys": keys, "values": values, "n_valid": n_valid[c]}
        return {
            "format": SAMPLE_FORMAT,
            "file": str(path),
            "settings": fingerprint(self._settings()),
            "n_rows": n_rows,
            "n_pass": n_pass,
            "columns": columns,
        }

    def fit_from_samples(self, states: Iterable[Mapping[str, Any]]) -> ScalarTokenizer:
        """Merge per-file samples (any order) and fit every column's bins; return self."""
        expected = fingerprint(self._settings())
        merged = {c: BottomK(self.max_values_per_col) for c in self.scalar_columns}
        n_valid = dict.fromkeys(self.scalar_columns, 0)
        empty_in: dict[str, list[str]] = {c: [] for c in self.scalar_columns}
        files: list[str] = []
        for st in states:
            if st.get("format") != SAMPLE_FORMAT or st.get("settings") != expected:
                raise DataError(
                    f"{st.get('file', '<sample>')}: sample state made with other tokenizer "
                    "settings (or format); sample every file with this tokenizer"
                )
            files.append(str(st["file"]))
            for c in self.scalar_columns:
                col = st["columns"][c]
                merged[c].add(np.asarray(col["keys"], dtype=np.uint64), np.asarray(col["values"]))
                n_valid[c] += int(col["n_valid"])
                if int(col["n_valid"]) == 0:
                    empty_in[c].append(str(st["file"]))
        if not files:
            raise DataError("no training files given")
        bins: dict[str, BinTable] = {}
        for c in self.scalar_columns:
            sample = merged[c].arrays()[1]
            if not len(sample):
                raise DataError(
                    f"column {c!r} (file column {self._file_col(c)!r}) has no valid value after the "
                    f"filters in any training file: {files[:5]}"
                )
            bins[c] = fit_bins(sample, self.n_bins)
        for c, b in bins.items():
            if b.effective_bins < self.n_bins:
                warnings.warn(
                    f"column {c!r} uses {b.effective_bins} of {self.n_bins} bins: its training "
                    f"sample of {b.n_samples} values has ties or too few distinct values",
                    RuntimeWarning, stacklevel=2,
                )
        for c, where in empty_in.items():
            if where:
                warnings.warn(
                    f"column {c!r} has no valid value in {len(where)} training file(s): {where[:3]}",
                    RuntimeWarning, stacklevel=2,
                )
        self.bins = bins
        self._lookups = {c: build_lookup(b.edges) for c, b in bins.items()}
        self.report_ = {
            c: {
                "effective_bins": bins[c].effective_bins,
                "n_samples": bins[c].n_samples,
                "n_valid_seen": n_valid[c],
                "files_without_values": empty_in[c],
            }
            for c in self.scalar_columns
        }
        return self

    def train(self, parquet_files: Sequence[str | os.PathLike[str]] | str | os.PathLike[str],
              *, progress: bool | None = None) -> ScalarTokenizer:
        """Fit the bins on parquet datacubes (bounded memory, order-independent); return self."""
        from tqdm.auto import tqdm

        if isinstance(parquet_files, (str, os.PathLike)):
            parquet_files = [parquet_files]
        files = list(parquet_files)
        show = self.progress if progress is None else progress
        states = (self.sample_file(f) for f in tqdm(files, desc="scalar: sampling", unit="file", disable=not show))
        return self.fit_from_samples(states)

    def summary(self) -> dict[str, dict[str, Any]]:
        """Per column: effective bins, sample size, valid values seen, files without values."""
        self.check_fitted()
        return {c: dict(v) for c, v in self.report_.items()}

    # ------------------------------------------------------------------ encoding
    def _encode_batches(self, path: str | os.PathLike[str], progress: bool | None
                        ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        from tqdm.auto import tqdm

        self.check_fitted()
        names = [self.id_col, *(self._file_col(c) for c in self.scalar_columns)]
        total = num_rows(path)
        show = self.progress if progress is None else progress
        sentinels = [self._sentinel_array(c) for c in self.scalar_columns]
        with tqdm(total=total, desc=f"scalar: {Path(path).name}", unit="row", disable=not show) as bar:
            pending: tuple[np.ndarray, np.ndarray, list[Any]] | None = None
            try:
                for batch in iter_batches(path, list(dict.fromkeys(names)), batch_size=self.batch_size):
                    ids = id_column(batch, self.id_col, path)
                    tokens = np.empty((len(ids), len(self.scalar_columns)), dtype=np.uint16)
                    jobs = [
                        (_float_column(batch, self._file_col(c), path), self._lookups[c], tokens[:, j],
                         sentinels[j])
                        for j, c in enumerate(self.scalar_columns)
                    ]
                    # kernels of this batch run while the next batch is read
                    futures = submit_many(jobs, self.n_bins, np.empty(0), backend=self.backend)
                    if pending is not None:
                        yield self._finish(pending, bar)
                    pending = (ids, tokens, futures)
                if pending is not None:
                    yield self._finish(pending, bar)
                    pending = None
            finally:
                for future in pending[2] if pending is not None else ():
                    future.cancel()

    @staticmethod
    def _finish(pending: tuple[np.ndarray, np.ndarray, list[Any]], bar: Any) -> tuple[np.ndarray, np.ndarray]:
        ids, tokens, futures = pending
        for future in futures:
            future.result()
        bar.update(len(ids))
        return ids, tokens

    def encode(
        self, parquet_path: str | os.PathLike[str], *, progress: bool | None = None, return_mask: bool = True
    ) -> dict[str, Any]:
        """Tokens of every row of a parquet file (the seed's dict, plus ``scalar_mask``).

        Returns ``scalar_tokens`` (n_rows, n_cols) uint16 (``N_BINS`` = missing),
        ``scalar_cols`` (canonical names), ``ids`` int64, ``id_col``, ``N_BINS``,
        ``scalar_mask`` (n_rows, n_cols) bool, True where missing (left out when
        ``return_mask=False``), and ``n_missing`` per column. A column with no valid value in
        the file gives a RuntimeWarning naming it. The whole result is in memory (2 bytes per
        value, 1 more for the mask); :meth:`encode_to_store` streams files larger than that.
        """
        self.check_fitted()
        path = parquet_path
        n = num_rows(path)
        tokens = np.empty((n, len(self.scalar_columns)), dtype=np.uint16)
        ids = np.empty(n, dtype=np.int64)
        n_missing = np.zeros(len(self.scalar_columns), dtype=np.int64)
        start = 0
        for batch_ids, batch_tokens in self._encode_batches(path, progress):
            stop = start + len(batch_ids)
            ids[start:stop] = batch_ids
            tokens[start:stop] = batch_tokens
            n_missing += (batch_tokens == self.n_bins).sum(axis=0)
            start = stop
        for c, m in zip(self.scalar_columns, n_missing):
            if n and m == n:
                warnings.warn(
                    f"{path}: column {c!r} (file column {self._file_col(c)!r}) has no valid value "
                    f"in its {n} rows; every token is the mask token {self.n_bins}",
                    RuntimeWarning, stacklevel=2,
                )
        result = {
            "scalar_tokens": tokens,
            "scalar_cols": np.array(self.scalar_columns, dtype=object),
            "ids": ids,
            "id_col": self.id_col,
            "N_BINS": self.n_bins,
            "n_missing": n_missing,
        }
        if return_mask:
            result["scalar_mask"] = tokens == self.n_bins
        return result

    def encode_arrays(self, columns: Mapping[str, Any] | np.ndarray) -> np.ndarray:
        """Tokens (n_rows, n_cols) uint16 of in-memory values: a 2-D array whose columns follow
        ``scalar_cols``, or a mapping ``{canonical column: 1-D values}``."""
        self.check_fitted()
        if isinstance(columns, Mapping):
            absent = [c for c in self.scalar_columns if c not in columns]
            if absent:
                raise DataError(f"encode_arrays: missing column {absent[0]!r}; got {sorted(columns)}")
            arrays = [np.asarray(columns[c]) for c in self.scalar_columns]
        else:
            table = np.asarray(columns)
            if table.ndim != 2 or table.shape[1] != len(self.scalar_columns):
                raise DataError(
                    f"encode_arrays: expected shape (n_rows, {len(self.scalar_columns)}), got {table.shape}"
                )
            arrays = [table[:, j] for j in range(table.shape[1])]
        n = len(arrays[0]) if arrays else 0
        tokens = np.empty((n, len(self.scalar_columns)), dtype=np.uint16)
        for c, x in zip(self.scalar_columns, arrays):
            if x.ndim != 1 or len(x) != n:
                raise DataError(f"encode_arrays: column {c!r} has shape {x.shape}, expected ({n},)")
            if not np.issubdtype(x.dtype, np.number):
                raise DataError(f"encode_arrays: column {c!r} has dtype {x.dtype}, expected numbers")
        jobs = [
            (x, self._lookups[c], tokens[:, j], self._sentinel_array(c))
            for j, (c, x) in enumerate(zip(self.scalar_columns, arrays))
        ]
        encode_many(jobs, self.n_bins, np.empty(0), backend=self.backend)
        return tokens

    def to_token_columns(self, result: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """``{tok_<column>: tokens (n,)}`` from an :meth:`encode` result, row order kept."""
        cols = [str(c) for c in result["scalar_cols"]]
        tokens = np.asarray(result["scalar_tokens"])
        return {token_key_name(c): np.ascontiguousarray(tokens[:, j]) for j, c in enumerate(cols)}

    def encode_to_store(self, parquet_path: str | os.PathLike[str], store_path: str | os.PathLike[str],
                        *, progress: bool | None = None) -> Path:
        """Stream a file's tokens into a token store (memory bounded by ``batch_size``).

        The store has the id column and one uint16 column per token key, with the core's
        store metadata; it appears at ``store_path`` only once every batch is written.
        """
        import json

        import pyarrow.parquet as pq

        from astromodal_core.serialize import atomic_path
        from astromodal_core.store import STORE_META_KEY

        self.check_fitted()
        keys = self.token_keys
        meta = {
            "id_col": self.id_col,
            "token_keys": {k.name: k.as_dict() for k in keys},
            "fingerprints": dict.fromkeys((k.name for k in keys), self.fingerprint),
        }
        schema = pa.schema(
            [pa.field(self.id_col, pa.int64()), *(pa.field(k.name, pa.uint16()) for k in keys)],
            metadata={STORE_META_KEY: json.dumps(meta)},
        )
        with atomic_path(store_path, suffix=".parquet") as tmp:
            with pq.ParquetWriter(tmp, schema) as writer:
                for ids, tokens in self._encode_batches(parquet_path, progress):
                    arrays = [pa.array(ids, type=pa.int64())]
                    arrays += [pa.array(np.ascontiguousarray(tokens[:, j]), type=pa.uint16())
                               for j in range(tokens.shape[1])]
                    writer.write_batch(pa.RecordBatch.from_arrays(arrays, schema=schema))
        return Path(store_path)

    # ------------------------------------------------------------------ codecs, decoding
    def codecs(self) -> list[ScalarColumnCodec]:
        """One fitted codec per column (MagnitudeCodec, AstrometryCodec, RedshiftCodec, ...)."""
        self.check_fitted()
        assert self.bins is not None
        out = []
        for c in self.scalar_columns:
            codec = codec_for_column(
                c, self.n_bins, sentinels=self.sentinels_of(c), max_values=self.max_values_per_col,
                rng_seed=self.rng_seed, backend=self.backend,
            )
            out.append(codec.set_bins(self.bins[c]))
        return out

    def decode(self, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(values, widths)`` (n_rows, n_cols) float64 from ``scalar_tokens``: bin medians and
        bin widths in physical units, NaN where the token is ``N_BINS``."""
        self.check_fitted()
        tokens = np.asarray(tokens)
        if tokens.ndim != 2 or tokens.shape[1] != len(self.scalar_columns):
            raise DataError(
                f"scalar_tokens must have shape (n_rows, {len(self.scalar_columns)}), got {tokens.shape}"
            )
        values = np.empty(tokens.shape, dtype=np.float64)
        widths = np.empty(tokens.shape, dtype=np.float64)
        for j, codec in enumerate(self.codecs()):
            values[:, j], widths[:, j] = codec.decode_array(tokens[:, j])
        return values, widths

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write ``path`` (e.g. ``scalar_tokenizer_config.npz``): JSON settings + bin arrays."""
        self.check_fitted()
        config, arrays = self._state()
        save_npz(path, config, arrays, kind=TOKENIZER_KIND)

    @classmethod
    def load(cls, path: str | os.PathLike[str], **kwargs: Any) -> ScalarTokenizer:
        """Read a file written by :meth:`save` (never unpickles); ``progress``/``backend`` may be given."""
        config, arrays, _ = load_npz(path, kind=TOKENIZER_KIND)
        if config.get("tokenizer") != "scalar":
            raise CodecFormatError(f"{path}: not a scalar tokenizer file")
        try:
            settings = dict(config["settings"])
            if "column_sentinels" not in settings:
                # saved before per-column sentinels: every column treated the sentinels as missing
                sent = list(settings.get("sentinels", DEFAULT_SENTINELS))
                settings["column_sentinels"] = dict.fromkeys(settings["scalar_columns"], sent)
            tok = cls(**settings, **kwargs)
            tok.bins = {
                c: BinTable.from_arrays(arrays, f"c{i:03d}_", config["n_samples"][c])
                for i, c in enumerate(tok.scalar_columns)
            }
        except (KeyError, TypeError, ValueError) as exc:
            raise CodecFormatError(f"{path}: incomplete scalar tokenizer state ({exc})") from exc
        tok._lookups = {c: build_lookup(b.edges) for c, b in tok.bins.items()}
        tok.report_ = {
            c: {"effective_bins": b.effective_bins, "n_samples": b.n_samples}
            for c, b in tok.bins.items()
        }
        return tok

    def __repr__(self) -> str:
        state = "fitted" if self.is_fitted else "unfitted"
        return f"ScalarTokenizer(n_bins={self.n_bins}, columns={len(self.scalar_columns)}, {state})"
