"""WISETokenizer: trains on parquet datacubes, batch-encodes whole files (the seed's protocol)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from astromodal_core import DataError, TokenKey
from astromodal_core.io import id_column, iter_batches, numeric_column
from astromodal_core.sampling import BottomK, hash_keys
from astromodal_core.serialize import load_npz, save_npz

from .codec import WISECodec
from .modality import BANDS, DEFAULT_N_BINS

PathLike = str | os.PathLike[str]
SECTION = "wise"
KIND = "astromodal_wise.WISETokenizer"
DEFAULT_COLUMNS: tuple[str, ...] = tuple(f"wise_{b}" for b in BANDS)
_OPTIONS = {"n_bins", "columns", "max_values_per_col", "rng_seed", "id_col", "batch_size"}


class WISETokenizer:
    """Quantile-bins the four WISE magnitude columns of a datacube into ``tok_wise``.

    ``columns`` name W1..W4 in the file (default ``wise_w1`` .. ``wise_w4``); null or NaN is
    "not detected" and becomes the mask token. Training samples at most
    ``max_values_per_col`` values per band with a seeded, order-independent reservoir.
    """

    def __init__(self, n_bins: int = DEFAULT_N_BINS, columns: Sequence[str] = DEFAULT_COLUMNS,
                 max_values_per_col: int = 1_000_000, rng_seed: int = 0, id_col: str = "id",
                 batch_size: int = 65_536):
        if len(columns) != len(BANDS):
            raise ValueError(f"columns must name the 4 bands W1..W4, got {list(columns)}")
        self.columns = tuple(str(c) for c in columns)
        self.max_values_per_col = int(max_values_per_col)
        self.rng_seed = int(rng_seed)
        self.id_col = str(id_col)
        self.batch_size = int(batch_size)
        self.codec = WISECodec(n_bins)

    @classmethod
    def from_config(cls, section: Mapping[str, Any]) -> WISETokenizer:
        """Build from the ``tokenizers.wise`` section of a config; unknown keys are an error."""
        unknown = sorted(set(section) - _OPTIONS)
        if unknown:
            raise ValueError(f"tokenizers.{SECTION}: unknown key {unknown[0]!r}; known: {sorted(_OPTIONS)}")
        return cls(**dict(section))

    # reading ------------------------------------------------------------------------------
    def _batches(self, path: PathLike) -> Iterable[tuple[np.ndarray, np.ndarray]]:
        """``(ids, mags (n, 4))`` per record batch; inf or wrong types are a DataError."""
        for batch in iter_batches(path, [self.id_col, *self.columns], batch_size=self.batch_size):
            ids = id_column(batch, self.id_col, path)
            mag = np.stack([numeric_column(batch, c, path) for c in self.columns], axis=1)
            bad = np.isinf(mag)
            if bad.any():
                r, c = np.argwhere(bad)[0]
                raise DataError(f"{path}: column {self.columns[c]!r}, row id {int(ids[r])}: "
                                f"infinite magnitude {mag[r, c]}")
            yield ids, mag

    # training -----------------------------------------------------------------------------
    def sample_file(self, path: PathLike) -> list[BottomK]:
        """One bounded reservoir per band for one file (mergeable across files and workers)."""
        res = [BottomK(self.max_values_per_col) for _ in BANDS]
        for ids, mag in self._batches(path):
            for b, c in enumerate(self.columns):
                ok = np.isfinite(mag[:, b])
                res[b].add(hash_keys(ids[ok], self.rng_seed, salt=c), mag[ok, b])
        return res

    def fit_from_samples(self, states: Iterable[list[BottomK]]) -> WISETokenizer:
        """Merge per-file reservoirs and fit the bins."""
        merged = [BottomK(self.max_values_per_col) for _ in BANDS]
        for state in states:
            for b in range(len(BANDS)):
                merged[b].merge(state[b])
        self.codec.fit_arrays([m.sample() for m in merged])
        return self

    def train(self, parquet_files: Sequence[PathLike] | PathLike) -> WISETokenizer:
        """Fit on one or more parquet datacubes."""
        files = [parquet_files] if isinstance(parquet_files, (str, os.PathLike)) else list(parquet_files)
        return self.fit_from_samples(self.sample_file(f) for f in files)

    # encoding -----------------------------------------------------------------------------
    def encode(self, path: PathLike, *, progress: bool = False) -> dict[str, Any]:
        """``{"wise_tokens": (n, 4) uint16, "wise_cols", "ids", "id_col", "N_BINS"}``."""
        self.codec.check_fitted()
        ids, toks = [], []
        for batch_ids, mag in self._batches(path):
            ids.append(batch_ids)
            toks.append(self.codec.encode_array(mag))
        return {"wise_tokens": np.concatenate(toks), "wise_cols": np.array(self.columns),
                "ids": np.concatenate(ids), "id_col": self.id_col, "N_BINS": self.codec.n_bins}

    def to_token_columns(self, result: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """The encode result as token-store columns."""
        return {self.token_keys[0].name: np.asarray(result["wise_tokens"])}

    # the protocol's properties -----------------------------------------------------------
    @property
    def is_fitted(self) -> bool:
        return self.codec.is_fitted

    @property
    def fingerprint(self) -> str:
        return self.codec.fingerprint

    @property
    def token_keys(self) -> tuple[TokenKey, ...]:
        return self.codec.token_keys

    def codecs(self) -> list[WISECodec]:
        """The fitted codec (for CodecManager)."""
        self.codec.check_fitted()
        return [self.codec]

    # saving -------------------------------------------------------------------------------
    def save(self, path: PathLike) -> None:
        """Write ``wise_tokenizer_config.npz``-style state (no pickle, atomic)."""
        self.codec.check_fitted()
        config = {"tokenizer": SECTION, "n_bins": self.codec.n_bins, "columns": list(self.columns),
                  "max_values_per_col": self.max_values_per_col, "rng_seed": self.rng_seed,
                  "id_col": self.id_col}
        save_npz(path, config, {"edges": self.codec.edges, "centers": self.codec.centers}, kind=KIND)

    @classmethod
    def load(cls, path: PathLike) -> WISETokenizer:
        """Read a file written by :meth:`save`."""
        config, arrays, _ = load_npz(path, kind=KIND)
        config.pop("tokenizer", None)
        tok = cls(**config)
        tok.codec.edges, tok.codec.centers = arrays["edges"], arrays["centers"]
        return tok
