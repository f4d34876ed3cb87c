"""Tokens stay bit-identical for the same fitted state, whatever the encoder's internals.

``data/token_identity`` holds fitted tokenizers and the tokens the encoder gave before the
zero-copy Arrow path (see its ``make_fixture.py``): every encode path (``encode``,
``iter_token_batches``, ``encode_to_store``, ``encode_arrays``, both backends, several batch
sizes, sliced in-memory tables whose validity bitmaps start mid-byte) must reproduce them on
the synthetic edge cases, on the vendored real Gaia XP rows and, where ``shared/data`` is
present, on real BOSS DR10 photometry and DESI FIBERMAP rows.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest
from astromodal_splus import ScalarTokenizer
from astromodal_splus.columns import token_key_name

from astromodal_core.io import numeric_column
from astromodal_core.store import read_token_store

DATA = Path(__file__).parent / "data" / "token_identity"
REPO = Path(__file__).resolve().parents[3]
SHARED = REPO.parent / "shared" / "data"
XP = REPO / "plugins" / "spectra" / "tests" / "data" / "gaia_xp_real.parquet"
EXPECTED = np.load(DATA / "expected.npz", allow_pickle=False)
DIGESTS = json.loads((DATA / "expected.json").read_text())["samples"]


def digest(a: np.ndarray) -> str:
    """sha256 of an array's shape, dtype and C-order bytes (as make_fixture.py computes it)."""
    a = np.ascontiguousarray(a)
    h = hashlib.sha256(f"{a.shape}{a.dtype.str}".encode())
    h.update(a.tobytes())
    return h.hexdigest()


def load(name: str, **kw) -> ScalarTokenizer:
    return ScalarTokenizer.load(DATA / name, progress=False, **kw)


def encode(tok: ScalarTokenizer, source, **kw) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # columns without a valid value
        return tok.encode(source, progress=False, **kw)


@pytest.mark.parametrize("backend", ["auto", "numpy"])
@pytest.mark.parametrize("batch_size", [None, 777, 4096])
def test_edge_cases_identical(backend: str, batch_size: int | None) -> None:
    tok = load("tok_edge.npz", backend=backend)
    out = encode(tok, DATA / "edge.parquet", batch_size=batch_size)
    np.testing.assert_array_equal(out["ids"], EXPECTED["edge_ids"])
    assert out["scalar_tokens"].dtype == np.uint16
    np.testing.assert_array_equal(out["scalar_tokens"], EXPECTED["edge_tokens"])
    np.testing.assert_array_equal(out["scalar_mask"], EXPECTED["edge_tokens"] == tok.n_bins)
    np.testing.assert_array_equal(out["n_missing"], (EXPECTED["edge_tokens"] == tok.n_bins).sum(axis=0))


def test_edge_cases_streamed_and_stored(tmp_path: Path) -> None:
    tok = load("tok_edge.npz")
    keys = [token_key_name(c) for c in tok.scalar_columns]
    parts = list(tok.iter_token_batches(DATA / "edge.parquet", batch_size=1000))
    assert [len(ids) for ids, _ in parts] == [1000] * 6
    streamed = np.stack([np.concatenate([cols[k] for _, cols in parts]) for k in keys], axis=1)
    np.testing.assert_array_equal(streamed, EXPECTED["edge_tokens"])
    store = tok.encode_to_store(DATA / "edge.parquet", tmp_path / "edge.tokens.parquet", batch_size=1500)
    table = pq.read_table(store)
    np.testing.assert_array_equal(table.column("id").to_numpy(), EXPECTED["edge_ids"])
    for j, k in enumerate(keys):
        assert table.schema.field(k).type == pa.uint16()
        np.testing.assert_array_equal(table.column(k).to_numpy(), EXPECTED["edge_tokens"][:, j])
    ids, cols = read_token_store(store)
    np.testing.assert_array_equal(ids, EXPECTED["edge_ids"])
    np.testing.assert_array_equal(np.stack([cols[k] for k in keys], axis=1), EXPECTED["edge_tokens"])


def test_edge_cases_sliced_arrow_table() -> None:
    """Chunks that start mid-byte of their validity bitmap (offsets 1001, 3004...)."""
    tok = load("tok_edge.npz")
    table = pq.read_table(DATA / "edge.parquet").combine_chunks()
    cuts = [0, 1001, 1002, 3004, 3011, 6000]
    sliced = pa.concat_tables([table.slice(a, b - a) for a, b in zip(cuts[:-1], cuts[1:])])
    assert [c.offset for c in sliced.column("mag_pstotal_r").chunks] == cuts[:-1]
    out = encode(tok, sliced, batch_size=2000)
    np.testing.assert_array_equal(out["ids"], EXPECTED["edge_ids"])
    np.testing.assert_array_equal(out["scalar_tokens"], EXPECTED["edge_tokens"])


def test_edge_cases_in_memory_arrays() -> None:
    """encode_arrays of the same values (nulls as NaN, every dtype as float64) gives the tokens."""
    tok = load("tok_edge.npz")
    batch = pq.read_table(DATA / "edge.parquet").combine_chunks().to_batches()[0]
    values = {c: numeric_column(batch, tok._file_col(c), "edge.parquet") for c in tok.scalar_columns}
    np.testing.assert_array_equal(tok.encode_arrays(values), EXPECTED["edge_tokens"])
    for j, c in enumerate(tok.scalar_columns):
        np.testing.assert_array_equal(tok.quantiles.encode(values[c], c), EXPECTED["edge_tokens"][:, j])


@pytest.mark.parametrize("backend", ["auto", "numpy"])
def test_real_gaia_xp_identical(backend: str) -> None:
    out = encode(load("tok_xp.npz", backend=backend), XP)
    np.testing.assert_array_equal(out["ids"], EXPECTED["xp_ids"])
    np.testing.assert_array_equal(out["scalar_tokens"], EXPECTED["xp_tokens"])


@pytest.mark.skipif(not (SHARED / "photoz").is_dir(), reason="shared/data/photoz (real BOSS DR10 rows) absent")
@pytest.mark.parametrize("name", sorted(n for n in DIGESTS if n.startswith("photoz/")))
def test_real_boss_photometry_identical(name: str, tmp_path: Path) -> None:
    expected = DIGESTS[name]
    table = pcsv.read_csv(SHARED / name)
    table = table.add_column(0, "id", pa.array(np.arange(table.num_rows, dtype=np.int64)))
    path = tmp_path / "boss.parquet"
    pq.write_table(table, path, row_group_size=2048)
    tok = load(expected["tokenizer"])
    for batch_size in (None, 1000):
        out = encode(tok, path, batch_size=batch_size)
        assert len(out["ids"]) == expected["rows"]
        assert digest(out["ids"]) == expected["ids"]
        assert out["n_missing"].tolist() == expected["n_missing"]
        assert digest(out["scalar_tokens"]) == expected["tokens"]


DESI = sorted((SHARED / "desi").glob("coadd-*.fits"))


@pytest.mark.skipif(not DESI, reason="shared/data/desi (real DESI coadds) absent")
@pytest.mark.parametrize("path", DESI, ids=lambda p: p.stem)
def test_real_desi_fibermap_identical(path: Path) -> None:
    out = encode(load("tok_desi.npz"), f"{path}[FIBERMAP]")
    np.testing.assert_array_equal(out["ids"], EXPECTED[f"desi_{path.stem}_ids"])
    np.testing.assert_array_equal(out["scalar_tokens"], EXPECTED[f"desi_{path.stem}_tokens"])
