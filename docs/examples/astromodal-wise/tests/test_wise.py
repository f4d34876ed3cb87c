"""The tutorial plugin's own tests: conformance, exact tokens, missing values, bad input."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from astromodal_wise import WISECodec, WISEPhotometry, WISETokenizer

from astromodal_core import CodecFormatError, ConfigError, DataError
from astromodal_core.serialize import load_npz, save_npz
from astromodal_core.testing import check_codec, check_tokenizer


def _cube(path, n=200, seed=0, **override):
    rng = np.random.default_rng(seed)
    cols = {"id": np.arange(n, dtype=np.int64) + 10 * seed * n}
    for k, b in enumerate(("w1", "w2", "w3", "w4")):
        cols[f"wise_{b}"] = rng.normal(14 - 2 * k, 1.0, n)
    cols.update(override)
    pq.write_table(pa.table(cols), path)
    return path


def test_codec_conforms():
    rng = np.random.default_rng(1)
    train = rng.normal(14, 1, (500, 4))
    sample = WISEPhotometry(mag=rng.normal(14, 1, (6, 4)))
    missing = WISEPhotometry(mag=np.full((2, 4), np.nan))
    done = check_codec(WISECodec(n_bins=16), train, sample, missing=missing)
    assert "check_missing_masked" in done and "check_save_load" in done


def test_tokenizer_conforms(tmp_path):
    train = [_cube(tmp_path / f"{i}.parquet", seed=i) for i in range(2)]
    missing = _cube(tmp_path / "missing.parquet", seed=5, **{f"wise_w{k}": np.r_[np.nan, np.ones(199)]
                                                             for k in range(1, 5)})
    done = check_tokenizer(lambda: WISETokenizer(n_bins=16), train, train[0], missing_file=missing,
                           tmp_dir=tmp_path)
    assert "check_save_is_atomic" in done and "check_encode_to_store" in done


def test_exact_tokens_and_decode():
    codec = WISECodec(n_bins=4).train(np.tile(np.arange(1.0, 9.0)[:, None], (1, 4)))
    # equal-count bins of 1..8: edges at the midpoints 2.5, 4.5, 6.5
    np.testing.assert_array_equal(codec.bins.table("w1").edges, [2.5, 4.5, 6.5])
    tokens = codec.encode(WISEPhotometry(mag=[[1.0, 3.0, 5.0, np.nan], [8.0, 4.5, 2.0, 7.0]]))
    np.testing.assert_array_equal(tokens["tok_wise"], [[0, 1, 2, 4], [3, 2, 0, 3]])
    back = codec.decode(tokens).mag
    np.testing.assert_array_equal(back[0, :3], [1.5, 3.5, 5.5])  # bin medians
    assert np.isnan(back[0, 3])


def test_tokenizer_train_encode_and_missing(tmp_path):
    path = _cube(tmp_path / "a.parquet", wise_w4=pa.array([None] + [5.0] * 199, pa.float64()))
    tok = WISETokenizer(n_bins=8).train([path])
    res = tok.encode(path)
    assert res["wise_tokens"].dtype == np.uint16 and res["wise_tokens"].shape == (200, 4)
    assert res["wise_tokens"][0, 3] == 8  # null W4 -> mask token
    np.testing.assert_array_equal(res["ids"], np.arange(200))
    batches = list(tok.iter_token_batches(path, batch_size=64))  # what `astromodal encode` streams
    assert [len(ids) for ids, _ in batches] == [64, 64, 64, 8]
    np.testing.assert_array_equal(np.concatenate([b["tok_wise"] for _, b in batches]), res["wise_tokens"])


def test_train_equals_merged_samples(tmp_path):
    files = [_cube(tmp_path / f"{i}.parquet", seed=i) for i in range(3)]
    a = WISETokenizer(n_bins=16, max_values_per_col=150).train(files)
    b = WISETokenizer(n_bins=16, max_values_per_col=150)
    b.fit_from_samples([b.sample_file(f) for f in reversed(files)])
    assert a.fingerprint == b.fingerprint


def test_save_load_and_damaged_files(tmp_path):
    path = _cube(tmp_path / "a.parquet")
    tok = WISETokenizer(n_bins=8).train(path)
    tok.save(tmp_path / "wise_tokenizer_config.npz")
    again = WISETokenizer.load(tmp_path / "wise_tokenizer_config.npz")
    assert again.fingerprint == tok.fingerprint
    with np.load(tmp_path / "wise_tokenizer_config.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["__format_version__"] = np.array(99)
    np.savez(tmp_path / "newer.npz", **arrays)
    with pytest.raises(CodecFormatError, match="newer"):
        WISETokenizer.load(tmp_path / "newer.npz")
    config, arrays, _ = load_npz(tmp_path / "wise_tokenizer_config.npz")
    arrays["c002_edges"] = arrays["c002_edges"][::-1]  # W3's edges in decreasing order
    save_npz(tmp_path / "bad.npz", config, arrays, kind=WISETokenizer.kind)
    with pytest.raises(CodecFormatError, match="column 'w3' .*bin edges are not in increasing order"):
        WISETokenizer.load(tmp_path / "bad.npz")


def test_bad_input_names_file_column_row(tmp_path):
    bad = _cube(tmp_path / "inf.parquet", wise_w2=np.r_[np.full(5, 12.0), np.inf, np.full(194, 12.0)])
    with pytest.raises(DataError, match=r"inf\.parquet: column 'wise_w2', row id 5"):
        WISETokenizer().train(bad)
    missing = tmp_path / "missing.parquet"
    pq.write_table(pa.table({"id": np.arange(3), "wise_w1": np.ones(3)}), missing)
    with pytest.raises(DataError, match="missing column 'wise_w2'"):
        WISETokenizer().train(missing)
    with pytest.raises(ConfigError, match=r"tokenizers\.wise\.nbins: unknown setting"):
        WISETokenizer.from_config({"nbins": 3})
    with pytest.raises(ConfigError, match=r"tokenizers\.wise: n_bins must be an integer in \[2, 65535\]"):
        WISETokenizer.from_config({"n_bins": 1})
