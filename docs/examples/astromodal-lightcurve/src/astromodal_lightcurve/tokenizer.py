"""LightCurveTokenizer: a per-epoch light curve as two ragged token keys."""

from __future__ import annotations

import os
import re
from typing import Any

import numpy as np
import pyarrow as pa

from astromodal_core import Tokenizer, TokenKey
from astromodal_core.blocks import QuantileBins
from astromodal_core.io import check_same_lengths, id_column, iter_batches, list_column
from astromodal_core.sampling import BottomK, hash_keys

PathLike = str | os.PathLike[str]


class LightCurveTokenizer(Tokenizer):
    """Light curves stored as three list<float> columns: magnitude, its error and MJD.

    Epochs are put in time order; an epoch with a null / NaN / infinite value or an error above
    ``max_magerr`` is left out, and a curve keeps its first ``max_epochs`` epochs. Epoch ``i``
    of a row is position ``i`` of both keys: ``tok_<prefix>_mag`` (the quantile bin of its
    magnitude) and ``tok_<prefix>_dt`` (the bin of the days since the epoch before; the mask
    token at the first epoch). A row with no epoch left is an empty row of both keys.
    """

    name = "lightcurve"  # the registered name and the config section: tokenizers.lightcurve
    kind = "astromodal_lightcurve.LightCurveTokenizer"

    def __init__(self, n_bins: int = 64, dt_bins: int = 32, mag_col: str = "lc_mag",
                 magerr_col: str = "lc_magerr", mjd_col: str = "lc_mjd", prefix: str = "lc",
                 max_epochs: int = 200, max_magerr: float = 1.0, max_values: int = 1_000_000,
                 rng_seed: int = 0, id_col: str = "id", batch_size: int = 65_536):
        if max_epochs < 1 or max_values < 1 or not max_magerr > 0:
            raise ValueError("max_epochs and max_values must be >= 1 and max_magerr > 0, got "
                             f"{max_epochs}, {max_values}, {max_magerr}")
        if not re.fullmatch(r"[a-z0-9_]+", str(prefix)):
            raise ValueError(f"prefix must match [a-z0-9_]+ (it names tok_<prefix>_mag), got {prefix!r}")
        self.n_bins, self.dt_bins, self.prefix = int(n_bins), int(dt_bins), str(prefix)
        self.mag_col, self.magerr_col, self.mjd_col = str(mag_col), str(magerr_col), str(mjd_col)
        self.max_epochs, self.max_magerr, self.max_values = int(max_epochs), float(max_magerr), int(max_values)
        self.rng_seed, self.id_col, self.batch_size = int(rng_seed), str(id_col), int(batch_size)
        self.bins = {"mag": QuantileBins(n_bins, ["mag"]), "dt": QuantileBins(dt_bins, ["dt"])}

    @property
    def is_fitted(self) -> bool:
        return all(b.is_fitted for b in self.bins.values())

    @property
    def token_keys(self) -> tuple[TokenKey, ...]:
        return tuple(TokenKey(f"tok_{self.prefix}_{part}", b.vocab_size, "ragged", self.max_epochs,
                              mask_token=b.mask_token, ordinal=True, description=f"light-curve {part} bins")
                     for part, b in self.bins.items())

    def token_values(self, key: str) -> np.ndarray:
        """Bin medians (magnitudes or days) of every id of ``key``; NaN at the mask token."""
        self.check_fitted()
        return self.bins[self.token_key(key).name.rsplit("_", 1)[1]].token_values()

    def input_columns(self, path: PathLike) -> list[str]:
        return [self.id_col, self.mag_col, self.magerr_col, self.mjd_col]

    def _epochs(self, batch: pa.RecordBatch, path: PathLike) -> tuple[np.ndarray, ...]:
        """``(ids, mag, dt, indptr, row, position)`` of the epochs kept, row by row in time order."""
        ids = id_column(batch, self.id_col, path)
        (mag, ptr), (err, ptr_err), (t, ptr_t) = (list_column(batch, c, path) for c in self.input_columns(path)[1:])
        check_same_lengths(ptr, ptr_err, ids, path, self.mag_col, self.magerr_col)
        check_same_lengths(ptr, ptr_t, ids, path, self.mag_col, self.mjd_col)
        row = np.repeat(np.arange(len(ids)), np.diff(ptr))
        keep = np.flatnonzero(np.isfinite(mag) & np.isfinite(t) & (err <= self.max_magerr))
        keep = keep[np.lexsort((t[keep], row[keep]))]  # by row, then by time
        row, mag, t = row[keep], mag[keep], t[keep]
        counts = np.bincount(row, minlength=len(ids))
        pos = np.arange(len(row)) - np.repeat(np.cumsum(counts) - counts, counts)
        dt = np.where(pos == 0, np.nan, np.diff(t, prepend=np.nan))
        cut = pos < self.max_epochs
        indptr = np.concatenate([[0], np.cumsum(np.minimum(counts, self.max_epochs))])
        return ids, mag[cut], dt[cut], indptr, row[cut], pos[cut]

    def sample_file(self, path: PathLike) -> dict[str, BottomK]:
        res = {part: BottomK(self.max_values) for part in self.bins}
        for batch in iter_batches(path, self.input_columns(path), batch_size=self.batch_size):
            ids, mag, dt, _, row, pos = self._epochs(batch, path)
            keys = hash_keys(ids[row], self.rng_seed, "epoch", pos)  # order-independent
            res["mag"].add(keys, mag)
            res["dt"].add(keys[pos > 0], dt[pos > 0])
        return res

    def _fit(self, sample: dict[str, BottomK]) -> None:
        for part, b in self.bins.items():
            b.fit(sample[part].sample())

    def _encode_batch(self, batch: pa.RecordBatch, path: PathLike) -> tuple[np.ndarray, dict[str, Any]]:
        ids, mag, dt, indptr, _, _ = self._epochs(batch, path)
        values = {"mag": mag, "dt": dt}
        return ids, {f"tok_{self.prefix}_{p}": b.encode_ragged(values[p], indptr) for p, b in self.bins.items()}

    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        states = {part: b.state(f"{part}_") for part, b in self.bins.items()}
        return ({"settings": self.settings(), "n_samples": {p: c["n_samples"] for p, (c, _) in states.items()}},
                {k: v for _, arrays in states.values() for k, v in arrays.items()})

    @classmethod
    def _from_state(cls, config: dict[str, Any], arrays: dict[str, np.ndarray],
                    companions: dict[str, Any], **kwargs: Any) -> LightCurveTokenizer:
        tok = cls(**config["settings"])
        for part, b in tok.bins.items():  # validated: shapes, NaN, edge order (CodecFormatError)
            b.load_tables(arrays, config["n_samples"][part], prefix=f"{part}_")
        return tok
