"""A small tokenizer on the core base, used by the base's and the conformance kit's tests.

``ToyTokenizer`` writes two keys from a datacube with ``id``, ``x`` (float) and ``xs``
(list<float>): ``tok_toy_x`` (scalar quantile bins) and ``tok_toy_xs`` (ragged, one token per
element, same kind of bins). Its edges are saved as a safetensors companion, so saves are a
file + companion pair.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from astromodal_core import CodecFormatError, DataError, Tokenizer, TokenKey
from astromodal_core.io import id_column, numeric_column
from astromodal_core.sampling import BottomK, hash_keys
from astromodal_core.tokenizer import check_edges


class ToyTokenizer(Tokenizer):
    """Quantile bins of ``x`` and of every element of ``xs``; NaN / empty -> masked."""

    name = "toy"
    kind = "toy_tokenizer"

    def __init__(self, n_bins: int = 8, max_values: int = 10_000, rng_seed: int = 0, id_col: str = "id",
                 batch_size: int = 64):
        if not 2 <= int(n_bins) <= 1000:
            raise ValueError(f"n_bins must be in [2, 1000], got {n_bins}")
        self.n_bins, self.max_values, self.rng_seed = int(n_bins), int(max_values), int(rng_seed)
        self.id_col, self.batch_size = id_col, int(batch_size)
        self.edges: np.ndarray | None = None  # (2, n_bins - 1): x, xs

    @property
    def is_fitted(self) -> bool:
        return self.edges is not None

    @property
    def token_keys(self) -> tuple[TokenKey, ...]:
        n = self.n_bins
        return (TokenKey("tok_toy_x", n + 1, mask_token=n, ordinal=True),
                TokenKey("tok_toy_xs", n + 1, layout="ragged", max_length=16, mask_token=n, ordinal=True))

    def _read(self, batch: pa.RecordBatch, path: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        ids = id_column(batch, self.id_col, path)
        x = numeric_column(batch, "x", path)
        xs = batch.column("xs")
        offsets = xs.offsets.to_numpy().astype(np.int64)
        flat = xs.values.to_numpy(zero_copy_only=False).astype(np.float64)[offsets[0]:offsets[-1]]
        return ids, x, flat, offsets - offsets[0]

    def input_columns(self, path: Any) -> list[str]:
        return [self.id_col, "x", "xs"]

    def sample_file(self, path: Any) -> list[BottomK]:
        from astromodal_core.io import iter_batches

        res = [BottomK(self.max_values), BottomK(self.max_values)]
        for batch in iter_batches(path, self.input_columns(path), batch_size=self.batch_size):
            ids, x, flat, indptr = self._read(batch, path)
            ok = np.isfinite(x)
            res[0].add(hash_keys(ids[ok], self.rng_seed, "x"), x[ok])
            rows = np.repeat(ids, np.diff(indptr))
            pos = np.arange(len(flat)) - np.repeat(indptr[:-1], np.diff(indptr))
            ok = np.isfinite(flat)
            res[1].add(hash_keys(rows[ok], self.rng_seed, "xs", pos[ok]), flat[ok])
        return res

    def _fit(self, sample: list[BottomK]) -> None:
        q = np.linspace(0, 1, self.n_bins + 1)[1:-1]
        values = [s.sample() for s in sample]
        if any(v.size == 0 for v in values):
            raise DataError("toy: no finite value to fit on")
        self.edges = np.stack([np.quantile(v, q) for v in values])

    def _bins(self, values: np.ndarray, row: int) -> np.ndarray:
        assert self.edges is not None
        out = np.full(values.shape, self.n_bins, dtype=np.uint16)
        ok = np.isfinite(values)
        out[ok] = np.searchsorted(self.edges[row], values[ok], side="right")
        return out

    def _encode_batch(self, batch: pa.RecordBatch, path: Any) -> tuple[np.ndarray, dict[str, Any]]:
        ids, x, flat, indptr = self._read(batch, path)
        return ids, {"tok_toy_x": self._bins(x, 0), "tok_toy_xs": (self._bins(flat, 1), indptr)}

    def token_values(self, key: str) -> np.ndarray:
        self.token_key(key)
        assert self.edges is not None
        e = self.edges[0 if key == "tok_toy_x" else 1]
        centers = np.concatenate([[e[0]], (e[:-1] + e[1:]) / 2, [e[-1]], [np.nan]])
        return centers

    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return self.settings(), {}

    def _companions(self) -> dict[str, tuple[dict[str, np.ndarray], dict[str, Any]]]:
        assert self.edges is not None
        return {"edges": ({"edges": self.edges}, {"n_bins": self.n_bins})}

    @classmethod
    def _from_state(cls, config: dict[str, Any], arrays: dict[str, np.ndarray],
                    companions: dict[str, dict[str, np.ndarray]], **kwargs: Any) -> ToyTokenizer:
        tok = cls(**config)
        edges = check_edges(companions["edges"]["edges"], "toy edges")
        if edges.shape != (2, tok.n_bins - 1):
            raise CodecFormatError(f"toy edges have shape {edges.shape}, expected {(2, tok.n_bins - 1)}")
        tok.edges = edges
        return tok


def write_toy_cube(path: Path, n: int, seed: int, *, first_missing: bool = False) -> Path:
    """A datacube for ToyTokenizer: ``x`` ~ N(0, 1) (a few NaN), ``xs`` lists of 0-15 values."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    x[rng.random(n) < 0.05] = np.nan
    xs = [rng.normal(size=int(k)).tolist() for k in rng.integers(0, 16, n)]
    if first_missing:
        x[0] = np.nan
        xs[0] = []
    table = pa.table({"id": np.arange(seed * 100_000, seed * 100_000 + n, dtype=np.int64), "x": x,
                      "xs": pa.array(xs, type=pa.list_(pa.float32()))})
    pq.write_table(table, path, row_group_size=100)
    return path
