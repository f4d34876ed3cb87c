"""ScalarTokenizer: training, encoding, missing values, filters, column mapping, persistence."""

from __future__ import annotations

import warnings

import numpy as np
import pyarrow.parquet as pq
import pytest
from astromodal_splus import BANDS, DEFAULT_SCALAR_COLUMNS, ScalarTokenizer
from astromodal_splus.synthetic import catalogue
from astromodal_splus.synthetic import write_parquet as write

from astromodal_core.config import config_from_dict
from astromodal_core.store import read_token_store

MAGS = [f"mag_pstotal_{b}" for b in BANDS]


def test_defaults_and_token_keys():
    tok = ScalarTokenizer()
    assert tok.N_BINS == 1024 and tok.vocab_size == 1025 and not tok.is_fitted
    keys = {k.name: k for k in tok.token_keys}
    assert list(keys) == ["tok_" + c for c in DEFAULT_SCALAR_COLUMNS]
    assert "tok_mag_pstotal_r" in keys and "tok_gaia_parallax" in keys and "tok_z" in keys
    assert not any(k.startswith("tok_err") for k in keys)
    k = keys["tok_mag_pstotal_r"]
    assert (k.vocab_size, k.mask_token, k.layout, k.modality) == (1025, 1024, "scalar", "SplusMagnitude")
    assert keys["tok_z"].modality == "Redshift" and keys["tok_gaia_pmra"].modality == "GaiaAstrometry"


def test_encode_matches_searchsorted_and_masks_missing(fitted, cubes):
    res = fitted.encode(cubes[0], progress=False)
    table = pq.read_table(cubes[0])
    tokens, cols = res["scalar_tokens"], list(res["scalar_cols"])
    assert tokens.dtype == np.uint16 and tokens.shape == (4000, len(DEFAULT_SCALAR_COLUMNS))
    assert cols == list(DEFAULT_SCALAR_COLUMNS) and res["N_BINS"] == 256 and res["id_col"] == "id"
    np.testing.assert_array_equal(res["ids"], table.column("id").to_numpy())
    for j, c in enumerate(cols):
        x = table.column(c).to_numpy(zero_copy_only=False).astype(np.float64)
        missing = ~np.isfinite(x) | (x == 99) | (x == -99)
        expect = np.searchsorted(fitted.bins[c].edges, x, side="right")
        np.testing.assert_array_equal(tokens[~missing, j], expect[~missing])
        assert np.all(tokens[missing, j] == 256)
        np.testing.assert_array_equal(res["scalar_mask"][:, j], missing)
        assert res["n_missing"][j] == missing.sum()
        assert tokens[~missing, j].max() < fitted.effective_bins[c]
    assert res["scalar_mask"][:, cols.index("mag_pstotal_r")].sum() > 50  # sentinels present


def test_train_is_order_independent_and_equals_sample_merge(cubes):
    kw = dict(n_bins=128, progress=False, max_values_per_file_per_col=500, max_values_per_col=1200)
    a = ScalarTokenizer(**kw).train(cubes)
    b = ScalarTokenizer(**kw).train(cubes[::-1])
    tok = ScalarTokenizer(**kw)
    c = tok.fit_from_samples([tok.sample_file(f) for f in (cubes[1], cubes[2], cubes[0])])
    assert a.fingerprint == b.fingerprint == c.fingerprint
    for col in a.scalar_columns:
        np.testing.assert_array_equal(a.bins[col].edges, c.bins[col].edges)
    assert all(a.bins[col].n_samples <= 1200 for col in a.scalar_columns)
    assert ScalarTokenizer(**{**kw, "rng_seed": 1}).train(cubes).fingerprint != a.fingerprint


def test_per_file_cap_bounds_each_file(cubes):
    tok = ScalarTokenizer(n_bins=64, progress=False, max_values_per_file_per_col=100)
    state = tok.sample_file(cubes[0])
    assert all(len(state["columns"][c]["values"]) == 100 for c in tok.scalar_columns)
    assert all(isinstance(v, np.ndarray) for c in tok.scalar_columns
               for k, v in state["columns"][c].items() if k != "n_valid")
    tok.fit_from_samples([state, tok.sample_file(cubes[1])])
    assert tok.bins["mag_pstotal_r"].n_samples == 200


def test_row_and_error_filters_choose_training_values(tmp_path):
    cols = catalogue(3000, seed=5)
    cols["mag_pstotal_g"][:1000] = 40.0  # bright in g only where r is outside [14, 22]...
    cols["mag_pstotal_r"][:1000] = 25.0  # ...so the row filter drops them
    cols["mag_pstotal_i"][1000:1500] = 35.0
    cols["err_mag_pstotal_i"][1000:1500] = 5.0  # the error filter drops these
    path = write(tmp_path / "f.parquet", cols)
    kw = dict(n_bins=64, progress=False, scalar_columns=["mag_pstotal_g", "mag_pstotal_i"])
    tok = ScalarTokenizer(**kw).train([path])
    assert tok.bins["mag_pstotal_g"].edges.max() < 30 and tok.bins["mag_pstotal_i"].edges.max() < 30
    loose = ScalarTokenizer(**kw, apply_row_filter=False, apply_magerr_filter=False).train([path])
    assert loose.effective_bins == {"mag_pstotal_g": 64, "mag_pstotal_i": 64}  # a tie costs one bin
    assert loose.bins["mag_pstotal_g"].centers.max() == 40.0
    assert loose.bins["mag_pstotal_i"].centers.max() == 35.0
    # encoding ignores the filters: every row gets a token
    res = tok.encode(path, progress=False)
    assert res["scalar_tokens"].shape == (3000, 2)
    assert np.all(res["scalar_tokens"][:1000, 0] == tok.effective_bins["mag_pstotal_g"] - 1)


def test_column_map_keeps_keys_canonical(tmp_path, cubes):
    cols = catalogue(4000, seed=0, id_start=0)
    renamed = {("r_auto" if k == "mag_pstotal_r" else "e_r_auto" if k == "err_mag_pstotal_r" else k): v
               for k, v in cols.items()}
    renamed["ID"] = renamed.pop("id")
    path = write(tmp_path / "dr4.parquet", renamed)
    kw = dict(n_bins=64, progress=False, scalar_columns=["mag_pstotal_r", "mag_pstotal_g"])
    tok = ScalarTokenizer(**kw, id_col="ID", column_map={"mag_pstotal_r": "r_auto",
                                                         "err_mag_pstotal_r": "e_r_auto"}).train([path])
    ref = ScalarTokenizer(**kw).train([cubes[0]])
    for c in kw["scalar_columns"]:
        np.testing.assert_array_equal(tok.bins[c].edges, ref.bins[c].edges)
    res = tok.encode(path, progress=False)
    assert list(res["scalar_cols"]) == ["mag_pstotal_r", "mag_pstotal_g"]
    assert list(tok.to_token_columns(res)) == ["tok_mag_pstotal_r", "tok_mag_pstotal_g"]
    np.testing.assert_array_equal(res["scalar_tokens"], ref.encode(cubes[0], progress=False)["scalar_tokens"])


def test_save_load_round_trip(fitted, cubes, tmp_path):
    path = tmp_path / "scalar_tokenizer_config.npz"
    fitted.save(path)
    with np.load(path, allow_pickle=False) as npz:
        assert "__config__" in npz.files
    loaded = ScalarTokenizer.load(path, progress=False)
    assert loaded.is_fitted and loaded.fingerprint == fitted.fingerprint
    assert loaded.effective_bins == fitted.effective_bins
    np.testing.assert_array_equal(loaded.encode(cubes[1])["scalar_tokens"],
                                  fitted.encode(cubes[1], progress=False)["scalar_tokens"])


def test_decode_error_far_below_photometric_error(tmp_path):
    train = [write(tmp_path / f"t{i}.parquet", catalogue(40_000, seed=10 + i, id_start=i * 10**6))
             for i in range(2)]
    test = write(tmp_path / "test.parquet", catalogue(20_000, seed=99, id_start=10**8))
    tok = ScalarTokenizer(n_bins=1024, scalar_columns=MAGS, progress=False).train(train)
    res = tok.encode(test, progress=False)
    values, widths = tok.decode(res["scalar_tokens"])
    table = pq.read_table(test)
    for j, c in enumerate(MAGS):
        m = table.column(c).to_numpy().astype(np.float64)
        e = table.column("err_" + c).to_numpy().astype(np.float64)
        ok = ~res["scalar_mask"][:, j]
        assert np.all(np.isnan(values[~ok, j])) and np.all(np.isnan(widths[~ok, j]))
        ratio = np.median(np.abs(values[ok, j] - m[ok]) / e[ok])
        assert ratio < 0.1, (c, ratio)
        inner = ok & (m > 15) & (m < 21)
        assert np.all(np.abs(values[inner, j] - m[inner]) <= widths[inner, j] + 1e-12)


def test_entirely_missing_column_is_reported_not_a_crash(fitted, tmp_path):
    cols = catalogue(500, seed=3)
    cols["gaia_pmra"][:] = np.nan
    path = write(tmp_path / "nogaia.parquet", cols)
    with pytest.warns(RuntimeWarning, match="'gaia_pmra'.*no valid value"):
        res = fitted.encode(path, progress=False)
    j = list(res["scalar_cols"]).index("gaia_pmra")
    assert np.all(res["scalar_tokens"][:, j] == 256) and res["n_missing"][j] == 500
    tok = ScalarTokenizer(n_bins=32, progress=False)
    with pytest.warns(RuntimeWarning, match="'gaia_pmra' has no valid value in 1 training file"):
        tok.train([path, write(tmp_path / "ok.parquet", catalogue(500, seed=4, id_start=10**6))])
    assert tok.summary()["gaia_pmra"]["files_without_values"] == [str(path)]


def test_encode_to_store_streams_a_readable_token_store(fitted, cubes, tmp_path):
    store = fitted.encode_to_store(cubes[2], tmp_path / "tokens.parquet", progress=False)
    ids, cols = read_token_store(store)
    res = fitted.encode(cubes[2], progress=False)
    np.testing.assert_array_equal(ids, res["ids"])
    expect = fitted.to_token_columns(res)
    assert list(cols) == list(expect)
    for k in expect:
        np.testing.assert_array_equal(cols[k], expect[k])


def test_from_config_section():
    cfg = config_from_dict({"tokenizers": {"scalar": {"n_bins": 512, "max_values_per_col": 1000,
                                                      "max_values_per_file_per_col": 100}}})
    tok = ScalarTokenizer.from_config(cfg.tokenizers.scalar)
    assert (tok.n_bins, tok.max_values_per_col, tok.max_values_per_file_per_col) == (512, 1000, 100)


def test_effective_bins_reported_for_discrete_column(tmp_path):
    cols = catalogue(2000, seed=7)
    cols["flag"] = (np.arange(2000) % 3).astype(np.int32)
    path = write(tmp_path / "flags.parquet", cols)
    with pytest.warns(RuntimeWarning, match="'flag' uses 3 of 64 bins") as record:
        tok = ScalarTokenizer(n_bins=64, scalar_columns=["flag", "mag_pstotal_r"], progress=False).train([path])
    assert len(record) == 1
    assert tok.effective_bins["flag"] == 3 and tok.summary()["flag"]["effective_bins"] == 3
    assert tok.effective_bins["mag_pstotal_r"] == 64
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = tok.encode(path, progress=False)
    np.testing.assert_array_equal(res["scalar_tokens"][:6, 0], [0, 1, 2, 0, 1, 2])
    assert [k.name for k in tok.token_keys] == ["tok_flag", "tok_mag_pstotal_r"]


def test_progress_bar_can_be_silenced(fitted, cubes, capsys):
    fitted.encode(cubes[0], progress=False)
    assert capsys.readouterr().err == ""
    fitted.encode(cubes[0], progress=True)
    assert "scalar" in capsys.readouterr().err


def test_numba_and_numpy_backends_encode_identically(fitted, cubes):
    import pyarrow.parquet as pq

    fast = fitted.encode(cubes[1], progress=False)["scalar_tokens"]
    fitted.backend = "numpy"
    try:
        reference = fitted.encode(cubes[1], progress=False)["scalar_tokens"]
        table = pq.read_table(cubes[1])
        arrays = {c: table.column(c).to_numpy() for c in fitted.scalar_columns}
        in_memory_numpy = fitted.encode_arrays(arrays)
    finally:
        fitted.backend = "auto"
    np.testing.assert_array_equal(fast, reference)
    default, fitted.batch_size = fitted.batch_size, 700  # many batches: kernels overlap the next read
    try:
        small_batches = fitted.encode(cubes[1], progress=False)
    finally:
        fitted.batch_size = default
    np.testing.assert_array_equal(small_batches["scalar_tokens"], reference)
    np.testing.assert_array_equal(small_batches["ids"], table.column("id").to_numpy())
    np.testing.assert_array_equal(fitted.encode_arrays(arrays), reference)
    np.testing.assert_array_equal(in_memory_numpy, reference)
    stacked = np.column_stack([arrays[c] for c in fitted.scalar_columns])
    np.testing.assert_array_equal(fitted.encode_arrays(stacked), reference)


def test_encode_arrays_checks_its_input(fitted):
    from astromodal_core import DataError

    with pytest.raises(DataError, match="missing column 'mag_pstotal_u'"):
        fitted.encode_arrays({"mag_pstotal_r": np.zeros(3)})
    with pytest.raises(DataError, match=r"expected shape \(n_rows, 16\)"):
        fitted.encode_arrays(np.zeros((3, 2)))
    cols = {c: np.zeros(3) for c in fitted.scalar_columns}
    cols["z"] = np.zeros(4)
    with pytest.raises(DataError, match="column 'z' has shape"):
        fitted.encode_arrays(cols)


def test_encode_without_mask_and_without_numba(fitted, cubes, monkeypatch):
    from astromodal_core.blocks import quantile

    with_numba = fitted.encode(cubes[0], progress=False)
    monkeypatch.setattr(quantile, "HAVE_NUMBA", False)
    assert quantile.resolve_backend(fitted.backend) == "numpy"
    res = fitted.encode(cubes[0], progress=False, return_mask=False)
    assert "scalar_mask" not in res
    np.testing.assert_array_equal(res["scalar_tokens"], with_numba["scalar_tokens"])
    np.testing.assert_array_equal(res["n_missing"], with_numba["scalar_mask"].sum(axis=0))


def test_pairwise_merged_samples_equal_train(cubes):
    kw = dict(n_bins=128, progress=False, max_values_per_file_per_col=500, max_values_per_col=1200)
    tok = ScalarTokenizer(**kw)
    a, b, c = (tok.sample_file(f) for f in cubes)
    merged = tok.merge_samples(c, tok.merge_samples(a, b))  # as the pipeline folds samples
    assert merged["files"] == [str(cubes[2]), str(cubes[0]), str(cubes[1])]
    assert all(len(merged["columns"][col]["values"]) <= 1200 for col in tok.scalar_columns)
    tok.fit_from_samples([merged])
    assert tok.fingerprint == ScalarTokenizer(**kw).train(cubes).fingerprint


def test_iter_token_batches_streams_the_encode_result(fitted, cubes):
    res = fitted.encode(cubes[0], progress=False)
    batches = list(fitted.iter_token_batches(cubes[0], batch_size=1500))
    assert [len(ids) for ids, _ in batches] == [1500, 1500, 1000]
    keys = [k.name for k in fitted.token_keys]
    for name in keys:
        assert all(cols[name].shape == (len(ids),) for ids, cols in batches)
    np.testing.assert_array_equal(np.concatenate([ids for ids, _ in batches]), res["ids"])
    joined = np.column_stack([np.concatenate([cols[k] for _, cols in batches]) for k in keys])
    np.testing.assert_array_equal(joined, res["scalar_tokens"])


def test_token_values_are_the_bin_medians_of_each_key(fitted):
    from astromodal_core import TokenKeyError

    for c, codec in zip(fitted.scalar_columns, fitted.codecs()):
        values = fitted.token_values(f"tok_{c}")
        assert values.shape == (257,) and np.isnan(values[256])
        n = fitted.effective_bins[c]
        np.testing.assert_array_equal(values[:n], fitted.bins[c].centers)
        np.testing.assert_array_equal(values, codec.bin_values)
    with pytest.raises(TokenKeyError, match="no token key 'tok_nope'"):
        fitted.token_values("tok_nope")


def test_store_records_the_tokenizer_and_its_source(fitted, cubes, tmp_path):
    from astromodal_core.store import store_metadata

    meta = store_metadata(fitted.encode_to_store(cubes[0], tmp_path / "t.parquet"))
    assert meta["tokenizers"] == {"scalar": fitted.fingerprint}
    assert set(meta["fingerprints"].values()) == {fitted.fingerprint}
    assert meta["source"]["path"] == str(cubes[0].resolve())
