"""WISETokenizer: trains on parquet datacubes and encodes them into ``tok_wise``."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from astromodal_core import DataError, Tokenizer, TokenKey
from astromodal_core.io import id_column, iter_batches, numeric_column
from astromodal_core.sampling import BottomK, hash_keys

from .codec import WISECodec
from .modality import BANDS, DEFAULT_N_BINS, TOKEN_KEY

PathLike = str | os.PathLike[str]
DEFAULT_COLUMNS: tuple[str, ...] = tuple(f"wise_{b}" for b in BANDS)


class WISETokenizer(Tokenizer):
    """Quantile-bins the four WISE magnitude columns of a datacube into ``tok_wise``.

    ``columns`` name W1..W4 in the file (default ``wise_w1`` .. ``wise_w4``); null or NaN is
    "not detected" and becomes the mask token. Training samples at most
    ``max_values_per_col`` values per band with a seeded, order-independent reservoir.
    The base class gives ``from_config``, ``train``, ``encode_to_store``, ``save``/``load``
    and ``fingerprint``.
    """

    name = "wise"  # the registered name and the config section: tokenizers.wise
    kind = "astromodal_wise.WISETokenizer"  # recorded in saved files

    def __init__(self, n_bins: int = DEFAULT_N_BINS, columns: Sequence[str] = DEFAULT_COLUMNS,
                 max_values_per_col: int = 1_000_000, rng_seed: int = 0, id_col: str = "id",
                 batch_size: int = 65_536):
        if isinstance(columns, str) or len(columns) != len(BANDS):
            raise ValueError(f"columns must name the 4 bands W1..W4, got {columns!r}")
        if max_values_per_col < 1:
            raise ValueError(f"max_values_per_col must be >= 1, got {max_values_per_col}")
        self.columns = [str(c) for c in columns]
        self.max_values_per_col = int(max_values_per_col)
        self.rng_seed = int(rng_seed)
        self.id_col = str(id_col)
        self.batch_size = int(batch_size)
        self.codec = WISECodec(n_bins)

    @property
    def n_bins(self) -> int:
        return self.codec.n_bins

    @property
    def is_fitted(self) -> bool:
        return self.codec.is_fitted

    @property
    def token_keys(self) -> tuple[TokenKey, ...]:
        return self.codec.token_keys

    def codecs(self) -> list[WISECodec]:
        """The fitted codec (for CodecManager)."""
        self.check_fitted()
        return [self.codec]

    # reading ------------------------------------------------------------------------------
    def input_columns(self, path: PathLike) -> list[str]:
        return [self.id_col, *self.columns]

    def _read(self, batch: pa.RecordBatch, path: PathLike) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, mags (n, 4))`` of a record batch; inf or wrong types are a DataError."""
        ids = id_column(batch, self.id_col, path)
        mag = np.stack([numeric_column(batch, c, path) for c in self.columns], axis=1)
        if np.isinf(mag).any():
            r, c = np.argwhere(np.isinf(mag))[0]
            raise DataError(f"{path}: column {self.columns[c]!r}, row id {int(ids[r])}: "
                            f"infinite magnitude {mag[r, c]}")
        return ids, mag

    # training: a bounded, mergeable sample per file, then one fit ------------------------
    def sample_file(self, path: PathLike) -> list[BottomK]:
        res = [BottomK(self.max_values_per_col) for _ in BANDS]
        for batch in iter_batches(path, self.input_columns(path), batch_size=self.batch_size):
            ids, mag = self._read(batch, path)
            for b, c in enumerate(self.columns):
                ok = np.isfinite(mag[:, b])
                res[b].add(hash_keys(ids[ok], self.rng_seed, salt=c), mag[ok, b])
        return res

    def _fit(self, sample: list[BottomK]) -> None:
        self.codec.bins.fit([r.sample() for r in sample])

    # encoding -----------------------------------------------------------------------------
    def _encode_batch(self, batch: pa.RecordBatch, path: PathLike) -> tuple[np.ndarray, dict[str, Any]]:
        ids, mag = self._read(batch, path)
        return ids, {TOKEN_KEY: self.codec.bins.encode(mag)}

    def encode(self, path: PathLike, **kwargs: Any) -> dict[str, Any]:
        """``{"wise_tokens": (n, 4) uint16, "wise_cols", "ids", "id_col", "N_BINS"}``."""
        res = super().encode(path, **kwargs)
        return {"wise_tokens": res.pop(TOKEN_KEY), "wise_cols": np.array(self.columns),
                "N_BINS": self.n_bins, **res}

    # saving: settings and sample sizes as JSON, the bins as small arrays ---------------------
    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        config, arrays = self.codec.bins.state()
        return {"settings": self.settings(), "n_samples": config["n_samples"]}, arrays

    @classmethod
    def _from_state(cls, config: dict[str, Any], arrays: dict[str, np.ndarray],
                    companions: dict[str, Any], **kwargs: Any) -> WISETokenizer:
        tok = cls(**config["settings"])
        tok.codec.bins.load_tables(arrays, config["n_samples"])  # checks shapes, NaN, order
        return tok
