"""The light-curve plugin's own tests: the conformance kit, exact tokens, bad input."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from astromodal_lightcurve import LightCurveTokenizer

from astromodal_core import CodecFormatError, ConfigError, DataError
from astromodal_core.blocks import QuantileBins
from astromodal_core.serialize import load_npz, save_npz
from astromodal_core.testing import parametrize_with_checks

LIST = pa.list_(pa.float64())


def write_cube(path: Path, n: int, seed: int, *, first_empty: bool = False) -> Path:
    """Periodic variables: 0-29 epochs each, in random order, a few bad epochs."""
    rng = np.random.default_rng(seed)
    mags, errs, mjds = [], [], []
    for i in range(n):
        k = 0 if first_empty and i == 0 else int(rng.integers(0, 30))
        t = rng.uniform(58000.0, 59000.0, k)
        m = 15 + rng.normal() + 0.5 * np.sin(2 * np.pi * t / rng.uniform(0.3, 10)) + rng.normal(0, 0.02, k)
        e = np.full(k, 0.02)
        m[rng.random(k) < 0.05] = np.nan  # a lost epoch
        e[rng.random(k) < 0.05] = 5.0  # a poor one
        mags.append(m.tolist())
        errs.append(e.tolist())
        mjds.append(t.tolist())
    ids = np.arange(n, dtype=np.int64) + seed * 100_000
    pq.write_table(pa.table({"id": ids, "lc_mag": pa.array(mags, LIST), "lc_magerr": pa.array(errs, LIST),
                             "lc_mjd": pa.array(mjds, LIST)}), path, row_group_size=64)
    return path


def _table(path: Path, rows: dict[str, list]) -> Path:
    cols = {"id": np.arange(len(rows["lc_mag"]), dtype=np.int64)}
    cols.update({k: pa.array(v, LIST) for k, v in rows.items()})
    pq.write_table(pa.table(cols), path)
    return path


# the conformance kit: one pytest id per check (the cubes are written when a check first runs)
_CUBES: dict[str, Path] = {}


class _Cube(os.PathLike):
    def __init__(self, name: str):
        self.name = name

    def __fspath__(self) -> str:
        if not _CUBES:
            d = Path(tempfile.mkdtemp(prefix="lightcurve_kit"))
            _CUBES.update(a=write_cube(d / "a.parquet", 200, 1), b=write_cube(d / "b.parquet", 150, 2),
                          test=write_cube(d / "test.parquet", 100, 3, first_empty=True))
        return str(_CUBES[self.name])


@parametrize_with_checks(lambda: LightCurveTokenizer(n_bins=16, dt_bins=8, max_epochs=24),
                         [_Cube("a"), _Cube("b")], _Cube("test"), missing_file=_Cube("test"))
def test_contract(check):
    check()


def test_exact_tokens_time_order_dropped_epochs_and_truncation(tmp_path):
    train = _table(tmp_path / "train.parquet", {  # magnitudes 10, 11, 12, 13, 13; gaps 1, 2, 4
        "lc_mag": [[10.0, 11.0, 12.0], [13.0, 13.0]], "lc_magerr": [[0.1] * 3, [0.1] * 2],
        "lc_mjd": [[0.0, 1.0, 3.0], [0.0, 4.0]]})
    tok = LightCurveTokenizer(n_bins=4, dt_bins=3, max_epochs=3).train(train)
    np.testing.assert_array_equal(tok.bins["mag"].table().edges, [10.5, 11.5, 12.5])
    np.testing.assert_array_equal(tok.bins["dt"].table().edges, [1.5, 3.0])
    cube = _table(tmp_path / "test.parquet", {  # row 0 out of time order; row 1 has bad epochs only
        "lc_mag": [[12.2, 10.1, np.nan, 13.9, 11.0], [10.0, 11.0], []],
        "lc_magerr": [[0.1, 0.1, 0.1, 0.1, 0.1], [2.0, 0.1], []],
        "lc_mjd": [[2.0, 0.0, 1.0, 9.0, 0.5], [0.0, np.nan], []]})
    out = tok.encode(cube)
    flat, indptr = out["tok_lc_mag"]
    np.testing.assert_array_equal(indptr, [0, 3, 3, 3])  # 4 good epochs in row 0, the first 3 kept
    np.testing.assert_array_equal(flat, [0, 1, 2])  # t = 0, 0.5, 2: mags 10.1, 11.0, 12.2
    dt_flat, dt_ptr = out["tok_lc_dt"]
    np.testing.assert_array_equal(dt_ptr, indptr)
    np.testing.assert_array_equal(dt_flat, [3, 0, 1])  # no gap before the first epoch, 0.5, 1.5
    values = tok.token_values("tok_lc_mag")
    np.testing.assert_array_equal(values[:4], [10.0, 11.0, 12.0, 13.0])
    assert values.shape == (5,) and np.isnan(values[4])
    keys = {k.name: k for k in tok.token_keys}
    assert keys["tok_lc_dt"].layout == "ragged" and keys["tok_lc_dt"].max_length == 3
    assert keys["tok_lc_mag"].ordinal and keys["tok_lc_mag"].mask_token == 4


def test_ragged_tokens_are_the_blocks_tokens(tmp_path):
    cube = write_cube(tmp_path / "a.parquet", 120, 4)
    tok = LightCurveTokenizer(n_bins=32, max_epochs=500).train(cube)
    table = pq.read_table(cube)
    flat, indptr = tok.encode(cube)["tok_lc_mag"]
    for i in (1, 7, 50):
        m, e, t = (np.asarray(table[c][i].as_py(), dtype=float) for c in ("lc_mag", "lc_magerr", "lc_mjd"))
        ok = np.isfinite(m) & (e <= 1.0)
        want = tok.bins["mag"].encode(m[ok][np.argsort(t[ok], kind="stable")])
        np.testing.assert_array_equal(flat[indptr[i]:indptr[i + 1]], want)


def test_configurable_columns_and_prefix(tmp_path):
    path = _table(tmp_path / "a.parquet", {"g": [[1.0, 2.0, 3.0]], "g_err": [[0.1] * 3], "g_t": [[0.0, 1.0, 3.0]],
                                           "lc_mag": [[]]})
    tok = LightCurveTokenizer.from_config({"mag_col": "g", "magerr_col": "g_err", "mjd_col": "g_t",
                                           "prefix": "ztf_g", "n_bins": 4, "dt_bins": 2}).train(path)
    assert [k.name for k in tok.token_keys] == ["tok_ztf_g_mag", "tok_ztf_g_dt"]
    assert tok.encode(path)["tok_ztf_g_mag"][0].tolist() == [0, 1, 2]


def test_train_equals_merged_samples_in_any_order(tmp_path):
    files = [write_cube(tmp_path / f"{i}.parquet", 80, i) for i in range(3)]
    a = LightCurveTokenizer(n_bins=16, max_values=300).train(files)
    b = LightCurveTokenizer(n_bins=16, max_values=300)
    b.fit_from_samples([b.sample_file(f) for f in reversed(files)])
    assert a.fingerprint == b.fingerprint


def test_save_load_and_a_damaged_file(tmp_path):
    tok = LightCurveTokenizer(n_bins=8).train(write_cube(tmp_path / "a.parquet", 60, 0))
    path = tok.save(tmp_path / "lightcurve.npz")
    assert LightCurveTokenizer.load(path).fingerprint == tok.fingerprint
    config, arrays, _ = load_npz(path)
    arrays["dt_c000_edges"] = arrays["dt_c000_edges"][::-1]
    save_npz(tmp_path / "bad.npz", config, arrays, kind=LightCurveTokenizer.kind)
    with pytest.raises(CodecFormatError, match=r"bad\.npz: column 'dt' .*bin edges are not in increasing order"):
        LightCurveTokenizer.load(tmp_path / "bad.npz")


def test_bad_input_and_settings(tmp_path):
    bad = _table(tmp_path / "bad.parquet", {"lc_mag": [[1.0], [1.0, 2.0]], "lc_magerr": [[0.1], [0.1]],
                                            "lc_mjd": [[0.0], [0.0, 1.0]]})
    with pytest.raises(DataError, match=r"bad\.parquet: row id 1: column 'lc_mag' has 2 values but 'lc_magerr' has 1"):
        LightCurveTokenizer().train(bad)
    flat = tmp_path / "flat.parquet"
    pq.write_table(pa.table({"id": [0], "lc_mag": [1.0], "lc_magerr": [0.1], "lc_mjd": [0.0]}), flat)
    with pytest.raises(DataError, match=r"flat\.parquet: column 'lc_mag' has type double, expected a list"):
        LightCurveTokenizer().train(flat)
    with pytest.raises(ConfigError, match=r"tokenizers\.lightcurve: prefix must match"):
        LightCurveTokenizer.from_config({"prefix": "LC-1"})
    with pytest.raises(ConfigError, match=r"tokenizers\.lightcurve\.nbins: unknown setting"):
        LightCurveTokenizer.from_config({"nbins": 3})
    with pytest.raises(ConfigError, match=r"tokenizers\.lightcurve: max_epochs and max_values must be >= 1"):
        LightCurveTokenizer.from_config({"max_epochs": 0})
    assert isinstance(LightCurveTokenizer().bins["mag"], QuantileBins)
