"""ScalarTokenizer: quantile binning of catalogue scalars (seed 000's ScalarTokenizer).

A :class:`~astromodal_core.Tokenizer` built on the core's quantile block
(:class:`~astromodal_core.blocks.QuantileBins`): this module adds the S-PLUS specifics, i.e. the
training filters, canonical column names and the seed's ``encode`` dict.

Missing values. The seed's dense ``scalar_tokens`` (n_rows, n_cols) uint16 array holds the
reserved id ``N_BINS`` where a value is NaN, +-inf or a sentinel: ``sentinels`` (default 99,
-99) apply to magnitude and magnitude-error columns only, ``column_sentinels={column: [...]}``
sets any column's own list (``[]`` for none). Every column's token key has ``vocab_size =
N_BINS + 1`` and ``mask_token = N_BINS``, the token store stores the same id. ``encode`` also
returns ``scalar_mask`` (True = missing), a convenience equal to ``scalar_tokens == N_BINS``.

Filters. The row filter (``mag_filter_col`` in ``[mag_min, mag_max]``) and the error filter
(``err <= magerr_max`` for columns with an error column) only choose the values the bin edges
are estimated from. ``encode`` encodes every row of a file, whatever its magnitude or error.

Column names. ``scalar_columns``, ``mag_filter_col`` and the keys of ``error_columns`` are
canonical names (the seed's defaults, e.g. ``mag_pstotal_r``); ``column_map`` maps a canonical
name to the file's column (``{"mag_pstotal_r": "r_auto", "err_mag_pstotal_r": "e_r_auto"}``).
Token keys and ``scalar_cols`` are always canonical, so a model trained on tokens of one
catalogue reads tokens of another. ``column_map`` may instead name a map this plugin ships for a
survey catalogue (``"splus-dr4-auto"``, ``{"map": "splus-dr4-auto", "suffix": "_dual"}``, a list
of them: see :mod:`astromodal_splus.columns`): its columns, its "not measured" values (as
sentinels of those columns, unless ``column_sentinels`` says otherwise) and, when
``scalar_columns`` is not given, its scalar columns; when the map has no ``mag_pstotal_r``, the
default row filter is off.

Placeholders. Training counts, in every row read, the values surveys write for "not measured"
(99, -99, 99.99, -999...: :mod:`astromodal_core.placeholders`); one that is frequent in a column
but not a sentinel of it gives a ``RuntimeWarning`` naming the column and the value.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from astromodal_core import CodecFormatError, DataError, Tokenizer, TokenKey
from astromodal_core.blocks.quantile import (
    BinTable,
    PendingTokens,
    QuantileBins,
    missing_mask,
    resolve_backend,
    zero_copy_type,
)
from astromodal_core.io import id_column, iter_batches, num_rows, numeric_column
from astromodal_core.placeholders import PlaceholderCounts, spike_message
from astromodal_core.sampling import BottomK, hash_keys32
from astromodal_core.serialize import fingerprint
from astromodal_core.sources import source_arg

from .codecs import ScalarColumnCodec, codec_for_column
from .columns import (
    DEFAULT_SCALAR_COLUMNS,
    DEFAULT_SENTINELS,
    check_unique_keys,
    column_maps,
    default_error_columns,
    default_sentinels,
    file_column,
    is_map_reference,
    resolve_column_map,
    token_key_name,
)

TOKENIZER_KIND = "scalar_tokenizer"
SAMPLE_FORMAT = 2  # 2: uint32 keys (half the memory of format 1's uint64)
#: settings ``load`` may override: they change how a file is read, never the tokens
RUNTIME_SETTINGS = ("batch_size", "backend", "progress")

PathLike = str | os.PathLike[str]
#: the default row-filter column (``mag_filter_col``)
DEFAULT_FILTER_COLUMN = "mag_pstotal_r"


def _float_column(batch: pa.RecordBatch, name: str, path: Any) -> np.ndarray:
    """A numeric column as float32/float64 numpy (nulls -> NaN), without copying floats twice."""
    col = batch.column(name)
    if pa.types.is_floating(col.type) and not pa.types.is_float16(col.type):
        return col.to_numpy(zero_copy_only=False)
    return numeric_column(batch, name, path)


def _integer(name: str, value: Any, low: int | None = None, high: int | None = None) -> int:
    """An integer setting in ``[low, high]``; a ValueError naming the setting otherwise."""
    ok = not isinstance(value, bool) and (
        isinstance(value, numbers.Integral) or (isinstance(value, float) and value.is_integer()))
    if not ok or (low is not None and value < low) or (high is not None and value > high):
        bounds = "" if low is None else f" >= {low}" if high is None else f" in [{low}, {high}]"
        raise ValueError(f"{name} must be an integer{bounds}, got {value!r}")
    return int(value)


def _number(name: str, value: Any) -> float:
    """A finite real setting; a ValueError naming the setting otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def _names(name: str, value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping) or not all(
            isinstance(k, str) and k and isinstance(v, str) and v for k, v in value.items()):
        raise ValueError(f"{name} must map column names to column names, got {value!r}")
    return dict(value)


def _sentinel_list(name: str, value: Any) -> tuple[float, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ValueError(f"{name} must be a list of numbers, got {value!r}")
    return tuple(_number(f"{name}[{i}]", s) for i, s in enumerate(value))


def _label(path: Any) -> str:
    """A short label of a source for progress bars: a file's name, another source's name."""
    return Path(path).name if isinstance(path, (str, os.PathLike)) else str(path)


def _widened(reservoir: BottomK) -> BottomK:
    """The same reservoir holding float64 values (a later file has a float64 column)."""
    keys, values = reservoir.arrays()
    wide = BottomK(reservoir.k, key_dtype=np.uint32)
    wide.add(keys, values.astype(np.float64))
    wide.seen = reservoir.seen
    return wide


class ScalarTokenizer(Tokenizer):
    """Quantile binning of catalogue scalars into ``n_bins`` tokens per column (+ a mask token).

    Train with :meth:`train` (or :meth:`sample_file` per file + :meth:`fit_from_samples`),
    encode parquet files with :meth:`encode` (the seed's dict) or :meth:`encode_to_store`
    (streamed), persist with :meth:`save` / :meth:`load`.
    """

    name = "scalar"
    kind = TOKENIZER_KIND

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
        column_map: Mapping[str, Any] | str | Sequence[Any] | None = None,
        error_columns: Mapping[str, str] | None = None,
        sentinels: Sequence[float] = DEFAULT_SENTINELS,
        column_sentinels: Mapping[str, Sequence[float]] | None = None,
        batch_size: int = 262_144,
        backend: str = "auto",
        progress: bool = True,
    ):
        if isinstance(scalar_columns, str):
            raise ValueError(f"scalar_columns must be a list of column names, got the string {scalar_columns!r}")
        named = None
        if column_map is not None and is_map_reference(column_map):
            named = resolve_column_map(column_map)  # a survey's shipped map (column_maps/*.yaml)
            if scalar_columns is None:
                scalar_columns = list(named.scalar_columns)
            if mag_filter_col == DEFAULT_FILTER_COLUMN and mag_filter_col not in named.columns:
                mag_filter_col = None  # the map has no such column: no default row filter
        cols = list(DEFAULT_SCALAR_COLUMNS if scalar_columns is None else scalar_columns)
        if not cols or not all(isinstance(c, str) and c for c in cols):
            raise ValueError(f"scalar_columns must be a non-empty list of column names, got {cols!r}")
        if len(set(cols)) != len(cols):
            raise ValueError(f"scalar_columns lists a column twice: {cols}")
        check_unique_keys(cols)
        self.n_bins = _integer("n_bins", n_bins, 2, 65535)
        if mag_filter_col is not None and not (isinstance(mag_filter_col, str) and mag_filter_col):
            raise ValueError(f"mag_filter_col must be a column name or None, got {mag_filter_col!r}")
        self.mag_min = _number("mag_min", mag_min)
        self.mag_max = _number("mag_max", mag_max)
        if self.mag_min > self.mag_max:
            raise ValueError(f"mag_min {mag_min} is above mag_max {mag_max}")
        self.magerr_max = _number("magerr_max", magerr_max)
        if self.magerr_max <= 0:
            raise ValueError(f"magerr_max must be positive, got {magerr_max!r}")
        self.max_values_per_col = _integer("max_values_per_col", max_values_per_col, 1)
        self.max_values_per_file_per_col = (
            None if max_values_per_file_per_col is None
            else _integer("max_values_per_file_per_col", max_values_per_file_per_col, 1)
        )
        self.rng_seed = _integer("rng_seed", rng_seed)
        if not isinstance(id_col, str) or not id_col:
            raise ValueError(f"id_col must be a column name, got {id_col!r}")
        self.scalar_columns = cols
        self.mag_filter_col = mag_filter_col
        self.apply_row_filter = bool(apply_row_filter) and mag_filter_col is not None
        self.apply_magerr_filter = bool(apply_magerr_filter)
        self.id_col = id_col
        if named is None:
            self.column_map: Any = _names("column_map", column_map or {})
            self._file_names = self.column_map
        else:
            self.column_map = json.loads(json.dumps(column_map))  # the reference, as given
            self._file_names = dict(named.columns)
        self.error_columns = (default_error_columns(cols) if error_columns is None
                              else _names("error_columns", error_columns))
        unknown = [c for c in self.error_columns if c not in cols]
        if unknown:
            raise ValueError(f"error_columns names {unknown}, which are not in scalar_columns")
        self.sentinels = list(_sentinel_list("sentinels", sentinels))
        if not isinstance(column_sentinels or {}, Mapping):
            raise ValueError(f"column_sentinels must map column names to lists of numbers, got {column_sentinels!r}")
        self.column_sentinels = {
            str(k): list(_sentinel_list(f"column_sentinels[{k!r}]", v))
            for k, v in dict(column_sentinels or {}).items()
        }
        known = {*cols, *self.error_columns.values(), *([mag_filter_col] if mag_filter_col else [])}
        unknown = [c for c in self.column_sentinels if c not in known]
        if unknown:
            raise ValueError(
                f"column_sentinels names {unknown}, which are not scalar, error or row-filter columns"
            )
        # what the named map declares "not measured", where the settings do not say otherwise
        self._map_sentinels = {c: list(v) for c, v in (named.sentinels if named else {}).items()
                               if c in known and c not in self.column_sentinels}
        self.batch_size = _integer("batch_size", batch_size, 1)
        resolve_backend(backend)
        self.progress = bool(progress)
        self.quantiles = QuantileBins(self.n_bins, cols, sentinels={c: self.sentinels_of(c) for c in cols},
                                      backend=backend)
        self.report_: dict[str, Any] = {}

    def _saved_settings(self) -> dict[str, Any]:
        """The settings a saved file records (the runtime ones are left out)."""
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
            "column_map": dict(self._file_names),
            "error_columns": dict(self.error_columns),
            "sentinels": list(self.sentinels),
            "column_sentinels": {k: list(v) for k, v in {**self._map_sentinels, **self.column_sentinels}.items()},
        }

    # ------------------------------------------------------------------ properties
    @property
    def backend(self) -> str:
        """The encoding backend: ``auto`` (numba when installed), ``numba`` or ``numpy``."""
        return self.quantiles.backend

    @backend.setter
    def backend(self, value: str) -> None:
        resolve_backend(value)
        self.quantiles.backend = value

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
        return self.quantiles.is_fitted

    @property
    def bins(self) -> dict[str, BinTable] | None:
        """The fitted bins of every column (None until trained or loaded)."""
        tables = self.quantiles.tables
        return None if tables is None else dict(zip(self.scalar_columns, tables))

    def sentinels_of(self, column: str) -> tuple[float, ...]:
        """Values that mean "missing" in a canonical column: its ``column_sentinels`` entry, else
        ``sentinels`` for magnitude and magnitude-error columns, else none."""
        if column in self.column_sentinels:
            return tuple(self.column_sentinels[column])
        if column in self._map_sentinels:
            return tuple(self._map_sentinels[column])
        return default_sentinels(column, self.sentinels)

    @property
    def token_keys(self) -> tuple[TokenKey, ...]:
        """One ordinal scalar key per column: ``tok_<column>``, vocab N_BINS + 1, mask N_BINS."""
        return tuple(codec_for_column(c, self.n_bins).token_keys[0] for c in self.scalar_columns)

    @property
    def effective_bins(self) -> dict[str, int]:
        """Distinct bins each column uses (fewer than n_bins when the sample has ties)."""
        self.check_fitted()
        return self.quantiles.effective_bins

    def token_values(self, key: str) -> np.ndarray:
        """The bin median of every token id of ``key`` (NaN at the mask and at unused ids)."""
        self.check_fitted()
        k = self.token_key(key)
        column = {token_key_name(c): c for c in self.scalar_columns}[k.name]
        return self.quantiles.token_values(column)

    # ------------------------------------------------------------------ state
    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        config = {
            "tokenizer": "scalar",
            "class": "ScalarTokenizer",
            "settings": self._saved_settings(),
            "n_samples": dict(zip(self.scalar_columns, self.quantiles.config()["n_samples"])),
        }
        return config, self.quantiles.arrays()

    @classmethod
    def _from_state(cls, config: dict[str, Any], arrays: dict[str, np.ndarray],
                    companions: dict[str, dict[str, np.ndarray]], **kwargs: Any) -> ScalarTokenizer:
        if config.get("tokenizer") != "scalar":
            raise CodecFormatError(f"not a scalar tokenizer file (it records tokenizer {config.get('tokenizer')!r})")
        other = sorted(set(kwargs) - set(RUNTIME_SETTINGS))
        if other:
            raise TypeError(f"load() takes only the runtime settings {list(RUNTIME_SETTINGS)}, got {other}")
        settings = config.get("settings")
        if not isinstance(settings, Mapping):
            raise CodecFormatError("scalar tokenizer file: 'settings' is missing or not a mapping")
        settings = dict(settings)
        if "column_sentinels" not in settings:
            # saved before per-column sentinels: every column treated the sentinels as missing
            sent = list(settings.get("sentinels", DEFAULT_SENTINELS))
            settings["column_sentinels"] = dict.fromkeys(settings.get("scalar_columns") or DEFAULT_SCALAR_COLUMNS, sent)
        tok = cls(**settings, **kwargs)
        n_samples = config.get("n_samples")
        if not isinstance(n_samples, Mapping) or any(c not in n_samples for c in tok.scalar_columns):
            raise CodecFormatError("scalar tokenizer file: 'n_samples' must give a count for every column")
        tok.quantiles.load_tables(arrays, [n_samples[c] for c in tok.scalar_columns])
        tok.report_ = {c: {"effective_bins": b.effective_bins, "n_samples": b.n_samples}
                       for c, b in zip(tok.scalar_columns, tok.quantiles.tables or ())}
        return tok

    # ------------------------------------------------------------------ training
    def _file_col(self, name: str) -> str:
        return file_column(name, self._file_names)

    def _training_columns(self) -> list[str]:
        names = [self.id_col]
        if self.apply_row_filter:
            names.append(self._file_col(str(self.mag_filter_col)))
        for c in self.scalar_columns:
            names.append(self._file_col(c))
            if self.apply_magerr_filter and c in self.error_columns:
                names.append(self._file_col(self.error_columns[c]))
        return list(dict.fromkeys(names))

    def sample_file(self, path: PathLike) -> dict[str, Any]:
        """Bounded per-column samples of one file, after the filters (a plain dict of arrays).

        ``train(files)`` equals ``fit_from_samples([sample_file(f) for f in files])``; the state
        holds only numpy arrays, numbers and strings, so it can travel between processes. It
        also counts, over every row read, the survey placeholders (99, -99, 99.99...) in each
        column, so that training warns about one not declared a sentinel.
        """
        path = source_arg(path)
        placeholders = PlaceholderCounts()
        k_file = self.max_values_per_file_per_col or self.max_values_per_col
        k_file = min(k_file, self.max_values_per_col)
        # values keep the file's float width (a float32 column stays float32: exact, half the
        # memory); the quantiles are computed in float64 either way
        reservoirs: dict[str, BottomK] = {}
        n_valid = dict.fromkeys(self.scalar_columns, 0)
        n_rows = n_pass = 0
        for batch in iter_batches(path, self._training_columns(), batch_size=self.batch_size):
            ids = id_column(batch, self.id_col, path)
            n_rows += len(ids)
            keep = np.ones(len(ids), dtype=bool)
            if self.apply_row_filter:
                f = numeric_column(batch, self._file_col(str(self.mag_filter_col)), path)
                if self.mag_filter_col not in self.scalar_columns:
                    placeholders.add(str(self.mag_filter_col), f)
                with np.errstate(invalid="ignore"):
                    keep = (f >= self.mag_min) & (f <= self.mag_max)
                keep &= ~missing_mask(f, self.sentinels_of(str(self.mag_filter_col)))
            n_pass += int(keep.sum())
            for c in self.scalar_columns:
                v = _float_column(batch, self._file_col(c), path)
                placeholders.add(c, v)
                ok = keep & ~missing_mask(v, self.sentinels_of(c))
                if self.apply_magerr_filter and c in self.error_columns:
                    ec = self.error_columns[c]
                    e = _float_column(batch, self._file_col(ec), path)
                    if ec not in self.scalar_columns:
                        placeholders.add(ec, e)
                    with np.errstate(invalid="ignore"):
                        ok &= (e <= self.magerr_max) & ~missing_mask(e, self.sentinels_of(ec))
                n_valid[c] += int(ok.sum())
                if c not in reservoirs:
                    reservoirs[c] = BottomK(k_file, dtype=np.float32 if v.dtype == np.float32 else np.float64,
                                            key_dtype=np.uint32)
                elif reservoirs[c].values.dtype != v.dtype and v.dtype != np.float32:
                    reservoirs[c] = _widened(reservoirs[c])
                reservoirs[c].add(hash_keys32(ids[ok], self.rng_seed, salt=c), v[ok])
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
            keys, values = reservoirs.get(c, BottomK(k_file, key_dtype=np.uint32)).arrays()
            columns[c] = {"keys": keys, "values": values, "n_valid": n_valid[c]}
        return {
            "format": SAMPLE_FORMAT,
            "file": str(path),
            "settings": fingerprint(self._saved_settings()),
            "n_rows": n_rows,
            "n_pass": n_pass,
            "columns": columns,
            "placeholders": placeholders.as_dict(),
        }

    def _merged_form(self, state: Mapping[str, Any]) -> dict[str, Any]:
        """A sample (of one file, or already merged) in the merged form, after checking it was
        made with these settings."""
        where = state.get("file", "<merged samples>")
        if state.get("format") != SAMPLE_FORMAT or state.get("settings") != fingerprint(self._saved_settings()):
            raise DataError(
                f"{where}: sample state made with other tokenizer settings (or format); "
                "sample every file with this tokenizer"
            )
        cols = state.get("columns")
        if not isinstance(cols, Mapping) or any(c not in cols for c in self.scalar_columns):
            raise DataError(f"{where}: sample state lacks columns of {self.scalar_columns}")
        if "files" in state:
            return dict(state)
        file = str(state["file"])
        return {
            "format": SAMPLE_FORMAT,
            "settings": state["settings"],
            "files": [file],
            "placeholders": dict(state.get("placeholders") or {}),
            "columns": {
                c: {"keys": np.asarray(cols[c]["keys"], dtype=np.uint32), "values": np.asarray(cols[c]["values"]),
                    "n_valid": int(cols[c]["n_valid"]),
                    "empty_in": [file] if int(cols[c]["n_valid"]) == 0 else []}
                for c in self.scalar_columns
            },
        }

    def merge_samples(self, a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
        """Fold sample ``b`` into ``a``: per column the ``max_values_per_col`` smallest keys of
        both (so any grouping and order of files gives the same sample). A merged ``a`` is
        consumed (its arrays are released column by column, bounding memory); ``b`` is kept."""
        a, b = self._merged_form(a), self._merged_form(b)
        columns = {}
        for c in self.scalar_columns:
            ca, cb = a["columns"][c], b["columns"][c]
            dtype = np.result_type(ca["values"].dtype, cb["values"].dtype)
            reservoir = BottomK(self.max_values_per_col, dtype=dtype, key_dtype=np.uint32)
            reservoir.add(ca.pop("keys"), ca.pop("values"))  # released as soon as merged:
            reservoir.add(cb["keys"], cb["values"])          # memory holds one column twice, not all
            keys, values = reservoir.arrays()
            del reservoir
            columns[c] = {"keys": keys, "values": values, "n_valid": ca["n_valid"] + cb["n_valid"],
                          "empty_in": ca["empty_in"] + cb["empty_in"]}
        counts = PlaceholderCounts.from_dict(a.get("placeholders")).merge(
            PlaceholderCounts.from_dict(b.get("placeholders")))
        return {"format": SAMPLE_FORMAT, "settings": a["settings"], "files": a["files"] + b["files"],
                "columns": columns, "placeholders": counts.as_dict()}

    def _fit(self, sample: Mapping[str, Any]) -> None:
        merged = self._merged_form(sample)
        files = merged["files"]
        if not files:
            raise DataError("no training files given")
        samples = []
        for c in self.scalar_columns:
            values = merged["columns"][c]["values"]
            if not len(values):
                raise DataError(
                    f"column {c!r} (file column {self._file_col(c)!r}) has no valid value after the "
                    f"filters in any training file: {files[:5]}"
                )
            samples.append(values)
        self.quantiles.fit(samples)
        self._warn_placeholders(merged)
        eff = self.quantiles.effective_bins
        for c, t in zip(self.scalar_columns, self.quantiles.tables or ()):
            if t.effective_bins < self.n_bins:
                warnings.warn(
                    f"column {c!r} uses {t.effective_bins} of {self.n_bins} bins: its training "
                    f"sample of {t.n_samples} values has ties or too few distinct values",
                    RuntimeWarning, stacklevel=3,
                )
        for c in self.scalar_columns:
            where = merged["columns"][c]["empty_in"]
            if where:
                warnings.warn(
                    f"column {c!r} has no valid value in {len(where)} training file(s): {where[:3]}",
                    RuntimeWarning, stacklevel=3,
                )
        self.report_ = {
            c: {
                "effective_bins": eff[c],
                "n_samples": t.n_samples,
                "n_valid_seen": merged["columns"][c]["n_valid"],
                "files_without_values": merged["columns"][c]["empty_in"],
            }
            for c, t in zip(self.scalar_columns, self.quantiles.tables or ())
        }

    def _warn_placeholders(self, merged: Mapping[str, Any]) -> None:
        """Warn, naming the columns and values, when a survey placeholder (99, -99, 99.99...)
        is frequent in the training rows of a column but not declared a sentinel there (a
        column with its own ``column_sentinels`` entry is the user's decision: never warned)."""
        counts = PlaceholderCounts.from_dict(merged.get("placeholders"))
        spikes = counts.spikes(self.sentinels_of, skip=self.column_sentinels)
        if not spikes:
            return
        names = {s.column: (repr(self._file_col(s.column)) if self._file_col(s.column) == s.column
                            else f"{s.column!r} (file column {self._file_col(s.column)!r})")
                 for s in spikes}
        declare = {}
        for s in spikes:
            declare.setdefault(s.column, []).append(s.value)
        hint = (f"Declare them (column_sentinels: {declare}) or read the catalogue through a column "
                f"map that declares them (column_map: NAME; shipped: {sorted(column_maps())})")
        warnings.warn(spike_message(spikes, names=names, hint=hint), RuntimeWarning, stacklevel=4)

    def train(self, sources: PathLike | Sequence[PathLike], *,
              progress: bool | None = None) -> ScalarTokenizer:
        """Fit the bins on parquet datacubes (bounded memory, order-independent); return self."""
        return super().train(sources, progress=self.progress if progress is None else progress)

    def summary(self) -> dict[str, dict[str, Any]]:
        """Per column: effective bins, sample size, valid values seen, files without values."""
        self.check_fitted()
        return {c: dict(v) for c, v in self.report_.items()}

    # ------------------------------------------------------------------ encoding
    def _token_inputs(self, batch: pa.RecordBatch, path: Any) -> list[Any]:
        """Each scalar column of a batch as the kernel reads it: the Arrow array itself for
        ints, float32 and float64 (read in place, nulls through the validity bitmap), a float
        numpy copy for other numeric types (float16, decimals); a DataError for the rest."""
        out = []
        for c in self.scalar_columns:
            name = self._file_col(c)
            col = batch.column(name)
            out.append(col if zero_copy_type(col.type) else numeric_column(batch, name, path))
        return out

    def _encode_batches(self, path: PathLike, batch_size: int | None, progress: bool | None,
                        out: np.ndarray | None = None, missing: np.ndarray | None = None
                        ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """``(ids, tokens (n, n_cols) uint16, mask tokens per column)`` per record batch; the
        kernels of one batch run while the next is read. With ``out`` (rows of the whole
        source) the tokens are written straight into its rows, in order, and ``missing`` (bool,
        shaped like ``out``) gets ``tokens == N_BINS`` from the same worker tasks; otherwise
        each batch gets its own column-major array (each column contiguous)."""
        from tqdm.auto import tqdm

        self.check_fitted()
        path = source_arg(path)
        names = [self.id_col, *(self._file_col(c) for c in self.scalar_columns)]
        k = len(self.scalar_columns)
        total = num_rows(path) if out is None else len(out)
        show = self.progress if progress is None else progress
        size = int(batch_size or self.batch_size)
        start = 0
        with tqdm(total=total, desc=f"scalar: {_label(path)}", unit="row", disable=not show) as bar:
            pending: tuple[np.ndarray, PendingTokens] | None = None
            try:
                for batch in iter_batches(path, list(dict.fromkeys(names)), batch_size=size):
                    ids = id_column(batch, self.id_col, path)
                    n = len(ids)
                    if out is None:
                        tokens = np.empty((k, n), dtype=np.uint16).T
                    elif start + n > len(out):
                        raise DataError(f"{path}: more rows than the {len(out)} the source declares")
                    else:
                        tokens = out[start : start + n]
                    start += n
                    rows = None if missing is None else missing[start - n : start]
                    work = self.quantiles.start_encode(self._token_inputs(batch, path), tokens, missing=rows)
                    if pending is not None:
                        yield self._finish(pending, bar)
                    pending = (ids, work)
                if pending is not None:
                    yield self._finish(pending, bar)
                    pending = None
            finally:
                if pending is not None:
                    pending[1].cancel()

    @staticmethod
    def _finish(pending: tuple[np.ndarray, PendingTokens], bar: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ids, work = pending
        missing = work.result()
        bar.update(len(ids))
        return ids, work.out, missing

    def iter_token_batches(self, path: PathLike, *, batch_size: int | None = None,
                           progress: bool = False) -> Iterator[tuple[np.ndarray, dict[str, Any]]]:
        """``(ids, {tok_<column>: tokens (n,)})`` per record batch (memory bounded by the batch)."""
        keys = [token_key_name(c) for c in self.scalar_columns]
        for ids, tokens, _ in self._encode_batches(path, batch_size, progress):
            yield ids, {k: tokens[:, j] for j, k in enumerate(keys)}

    def encode(self, parquet_path: PathLike, *, batch_size: int | None = None,
               progress: bool | None = None, return_mask: bool = True) -> dict[str, Any]:
        """Tokens of every row of a parquet file (the seed's dict, plus ``scalar_mask``).

        Returns ``scalar_tokens`` (n_rows, n_cols) uint16 (``N_BINS`` = missing; stored column
        by column, each column contiguous, as the kernels write it: ``np.ascontiguousarray``
        gives the row-major copy),
        ``scalar_cols`` (canonical names), ``ids`` int64, ``id_col``, ``N_BINS``,
        ``scalar_mask`` (n_rows, n_cols) bool, True where missing (left out when
        ``return_mask=False``), and ``n_missing`` per column. A column with no valid value in
        the file gives a RuntimeWarning naming it. The whole result is in memory (2 bytes per
        value, 1 more for the mask); :meth:`encode_to_store` streams files larger than that.
        The kernels write each batch's tokens straight into ``scalar_tokens``.
        """
        self.check_fitted()
        path = source_arg(parquet_path)
        n = num_rows(path)
        k = len(self.scalar_columns)
        tokens = np.empty((k, n), dtype=np.uint16).T  # (n, k), each column contiguous
        ids = np.empty(n, dtype=np.int64)
        n_missing = np.zeros(len(self.scalar_columns), dtype=np.int64)
        mask = np.empty((k, n), dtype=bool).T if return_mask else None
        start = 0
        for batch_ids, _, missing in self._encode_batches(path, batch_size, progress, out=tokens, missing=mask):
            stop = start + len(batch_ids)
            ids[start:stop] = batch_ids
            n_missing += missing
            start = stop
        if start != n:
            raise DataError(f"{path}: {start} rows read, but the source declares {n}")
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
        if mask is not None:
            result["scalar_mask"] = mask
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
        return self.quantiles.encode_columns(arrays)

    def to_token_columns(self, result: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """``{tok_<column>: tokens (n,)}`` from an :meth:`encode` result, row order kept."""
        cols = [str(c) for c in result["scalar_cols"]]
        tokens = np.asarray(result["scalar_tokens"])
        return {token_key_name(c): np.ascontiguousarray(tokens[:, j]) for j, c in enumerate(cols)}

    # ------------------------------------------------------------------ codecs, decoding
    def codecs(self) -> list[ScalarColumnCodec]:
        """One fitted codec per column (MagnitudeCodec, AstrometryCodec, RedshiftCodec, ...)."""
        self.check_fitted()
        out = []
        for c, table in zip(self.scalar_columns, self.quantiles.tables or ()):
            codec = codec_for_column(
                c, self.n_bins, sentinels=self.sentinels_of(c), max_values=self.max_values_per_col,
                rng_seed=self.rng_seed, backend=self.backend,
            )
            out.append(codec.set_bins(table))
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
        return self.quantiles.decode(tokens), self.quantiles.widths(tokens)

    def __repr__(self) -> str:
        state = "fitted" if self.is_fitted else "unfitted"
        return f"ScalarTokenizer(n_bins={self.n_bins}, columns={len(self.scalar_columns)}, {state})"
