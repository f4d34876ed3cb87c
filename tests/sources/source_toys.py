"""A small tokenizer for the source tests, registered in-process as a plugin module.

``SrcToy`` bins the float columns it is given (``columns``) into quantile bins of a bottom-k
sample (NaN or null -> the mask token). When ``ASTROMODAL_TEST_KILL=<store dir>:<n>:<marker>``
is set, the process encoding a batch kills itself (SIGKILL) once ``n`` store parts exist in
``<store dir>`` and ``<marker>`` does not (it is created first): a dask worker dying mid-run.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from astromodal_core import CodecFormatError, Tokenizer, TokenKey, hookimpl
from astromodal_core.io import id_column, numeric_column
from astromodal_core.sampling import BottomK, hash_keys

KILL_VAR = "ASTROMODAL_TEST_KILL"


class SrcToy(Tokenizer):
    """Quantile bins of float columns; NaN / null -> the mask token."""

    name = "srctoy"
    kind = "srctoy_tokenizer"

    def __init__(self, columns: list[str] | None = None, n_bins: int = 16, id_col: str = "id",
                 batch_size: int = 500, rng_seed: int = 0):
        self.columns = list(columns or ["mag", "flux"])
        self.n_bins, self.id_col, self.batch_size, self.rng_seed = int(n_bins), id_col, int(batch_size), int(rng_seed)
        self.edges: np.ndarray | None = None

    @property
    def is_fitted(self) -> bool:
        return self.edges is not None

    @property
    def token_keys(self) -> tuple[TokenKey, ...]:
        return tuple(TokenKey(f"tok_src_{c.lower()}", self.n_bins + 1, mask_token=self.n_bins, ordinal=True)
                     for c in self.columns)

    def input_columns(self, path: Any) -> list[str]:
        return [self.id_col, *self.columns]

    def sample_file(self, path: Any) -> list[BottomK]:
        from astromodal_core.io import iter_batches

        res = [BottomK(100_000) for _ in self.columns]
        for batch in iter_batches(path, self.input_columns(path), batch_size=self.batch_size):
            ids = id_column(batch, self.id_col, path)
            for r, c in zip(res, self.columns):
                v = numeric_column(batch, c, path)
                ok = np.isfinite(v)
                r.add(hash_keys(ids[ok], self.rng_seed, c), v[ok])
        return res

    def _fit(self, sample: list[BottomK]) -> None:
        q = np.linspace(0, 1, self.n_bins + 1)[1:-1]
        self.edges = np.stack([np.quantile(s.sample(), q) for s in sample])

    def _encode_batch(self, batch: pa.RecordBatch, path: Any) -> tuple[np.ndarray, dict[str, Any]]:
        _maybe_die()
        assert self.edges is not None
        ids = id_column(batch, self.id_col, path)
        out = {}
        for j, (k, c) in enumerate(zip(self.token_keys, self.columns)):
            v = numeric_column(batch, c, path)
            t = np.full(len(v), self.n_bins, dtype=np.uint16)
            ok = np.isfinite(v)
            t[ok] = np.searchsorted(self.edges[j], v[ok], side="right")
            out[k.name] = t
        return ids, out

    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        assert self.edges is not None
        return self.settings(), {"edges": self.edges}

    @classmethod
    def _from_state(cls, config: dict[str, Any], arrays: dict[str, np.ndarray],
                    companions: dict[str, dict[str, np.ndarray]], **kwargs: Any) -> SrcToy:
        tok = cls(**config)
        edges = np.asarray(arrays["edges"])
        if edges.shape != (len(tok.columns), tok.n_bins - 1):
            raise CodecFormatError(f"srctoy edges have shape {edges.shape}")
        tok.edges = edges
        return tok


def _maybe_die() -> None:
    spec = os.environ.get(KILL_VAR)
    if not spec:
        return
    store, n, marker = spec.rsplit(":", 2)
    if Path(marker).exists() or len(list(Path(store).glob("*.tokens.parquet"))) < int(n):
        return
    Path(marker).touch()
    os.kill(os.getpid(), signal.SIGKILL)


@hookimpl
def astromodal_register_tokenizers(register: Callable[[str, type], None]) -> None:
    register("srctoy", SrcToy)
