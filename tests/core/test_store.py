"""The token store: every layout round-trips; bad columns fail without leaving a file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from astromodal_core import DataError, TokenKey, TokenKeyError
from astromodal_core.store import (
    iter_token_store,
    read_token_store,
    store_metadata,
    write_token_store,
)

KEYS = [
    TokenKey("tok_mag_r", 1025, mask_token=1024),
    TokenKey("tok_spec", 33, layout="sequence", max_length=5, mask_token=32),
    TokenKey("tok_xp", 17, layout="ragged", max_length=8, mask_token=16),
    TokenKey("tok_img", 70000, layout="grid", max_length=6, shape=(2, 3)),
]


def _columns(n: int) -> dict:
    rng = np.random.default_rng(0)
    lengths = rng.integers(0, 4, n)
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    return {
        "tok_mag_r": rng.integers(0, 1025, n).astype(np.uint16),
        "tok_spec": rng.integers(0, 33, (n, 5)).astype(np.uint16),
        "tok_xp": (rng.integers(0, 16, indptr[-1]).astype(np.uint16), indptr),
        "tok_img": rng.integers(0, 70000, (n, 2, 3)).astype(np.uint32),
    }


def test_round_trip_every_layout(tmp_path: Path) -> None:
    cols = _columns(7)
    ids = np.arange(100, 107)
    path = write_token_store(tmp_path / "s.parquet", ids, cols, KEYS, fingerprints={"scalar": "abc"})
    got_ids, got = read_token_store(path)
    np.testing.assert_array_equal(got_ids, ids)
    np.testing.assert_array_equal(got["tok_mag_r"], cols["tok_mag_r"])
    np.testing.assert_array_equal(got["tok_spec"], cols["tok_spec"])
    np.testing.assert_array_equal(got["tok_xp"][0], cols["tok_xp"][0])
    np.testing.assert_array_equal(got["tok_xp"][1], cols["tok_xp"][1])
    np.testing.assert_array_equal(got["tok_img"], cols["tok_img"])
    assert got["tok_mag_r"].dtype == np.uint16 and got["tok_img"].dtype == np.uint32
    meta = store_metadata(path)
    assert meta["token_keys"]["tok_img"] == KEYS[3]
    assert meta["fingerprints"] == {"scalar": "abc"}
    schema = pq.read_schema(path)
    assert schema.field("tok_spec").type.list_size == 5
    assert str(schema.field("tok_spec").type.value_type) == "uint16"
    assert str(schema.field("tok_xp").type).startswith("list<")


def test_batched_reading_matches(tmp_path: Path) -> None:
    cols = _columns(10)
    path = write_token_store(tmp_path / "s.parquet", np.arange(10), cols, KEYS)
    seen = []
    for ids, batch in iter_token_store(path, ["tok_xp"], batch_size=3):
        flat, indptr = batch["tok_xp"]
        seen += [flat[indptr[i] : indptr[i + 1]].tolist() for i in range(len(ids))]
    flat, indptr = cols["tok_xp"]
    assert seen == [flat[indptr[i] : indptr[i + 1]].tolist() for i in range(10)]
    with pytest.raises(TokenKeyError, match="no key 'tok_nope'"):
        next(iter_token_store(path, ["tok_nope"]))


def test_out_of_range_and_unknown_keys_leave_no_file(tmp_path: Path) -> None:
    cols = _columns(4)
    cols["tok_spec"][0, 0] = 40
    with pytest.raises(DataError, match=r"'tok_spec': tokens outside \[0, 33\)"):
        write_token_store(tmp_path / "s.parquet", np.arange(4), cols, KEYS)
    with pytest.raises(TokenKeyError, match="unknown token key 'tok_other'"):
        write_token_store(tmp_path / "s.parquet", np.arange(4), {"tok_other": np.zeros(4)}, KEYS)
    with pytest.raises(DataError, match="'tok_mag_r': 3 rows, expected 4"):
        write_token_store(tmp_path / "s.parquet", np.arange(4), {"tok_mag_r": np.zeros(3, np.uint16)}, KEYS)
    assert list(tmp_path.iterdir()) == []


def test_not_a_store(tmp_path: Path) -> None:
    import pyarrow as pa

    pq.write_table(pa.table({"id": [1]}), tmp_path / "plain.parquet")
    with pytest.raises(DataError, match="plain.parquet: not an astromodal token store"):
        store_metadata(tmp_path / "plain.parquet")


def test_streaming_writer_matches_one_shot_and_is_atomic(tmp_path: Path) -> None:
    from astromodal_core.store import TokenStoreWriter

    cols = _columns(9)
    one = write_token_store(tmp_path / "one.parquet", np.arange(9), cols, KEYS)
    with TokenStoreWriter(tmp_path / "many.parquet", KEYS, fingerprints={"tok_mag_r": "f"}) as w:
        for lo, hi in [(0, 4), (4, 9)]:
            flat, indptr = cols["tok_xp"]
            part = {k: v[lo:hi] for k, v in cols.items() if k != "tok_xp"}
            part["tok_xp"] = (flat[indptr[lo] : indptr[hi]], indptr[lo : hi + 1] - indptr[lo])
            w.write(np.arange(lo, hi), part)
    a_ids, a = read_token_store(one)
    b_ids, b = read_token_store(tmp_path / "many.parquet")
    np.testing.assert_array_equal(a_ids, b_ids)
    for k in ("tok_mag_r", "tok_spec", "tok_img"):
        np.testing.assert_array_equal(a[k], b[k])
    np.testing.assert_array_equal(a["tok_xp"][0], b["tok_xp"][0])
    assert store_metadata(tmp_path / "many.parquet")["fingerprints"] == {"tok_mag_r": "f"}
    with pytest.raises(DataError, match="lacks token key column"):
        with TokenStoreWriter(tmp_path / "broken.parquet", KEYS) as w:
            w.write(np.arange(2), {"tok_mag_r": np.zeros(2, np.uint16)})
    assert not (tmp_path / "broken.parquet").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["many.parquet", "one.parquet"]
