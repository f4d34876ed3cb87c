"""Bad input: clear DataError naming file, column and row; no partial outputs; safe loading."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from astromodal_splus import ScalarTokenizer
from astromodal_splus.synthetic import catalogue, write_parquet

from astromodal_core import CodecFormatError, ConfigError, DataError, NotFittedError

COLS = ["mag_pstotal_r", "mag_pstotal_g"]


def _tok(**kw):
    return ScalarTokenizer(n_bins=32, scalar_columns=COLS, progress=False, **kw)


@pytest.fixture
def small(tmp_path):
    return write_parquet(tmp_path / "small.parquet", catalogue(300, seed=1), 100)


@pytest.fixture
def trained(small):
    return _tok().train([small])


def test_missing_column_names_file_and_column(tmp_path, trained):
    cols = catalogue(100, seed=2)
    del cols["mag_pstotal_g"]
    path = write_parquet(tmp_path / "nog.parquet", cols)
    for call in (lambda: _tok().train([path]), lambda: trained.encode(path)):
        with pytest.raises(DataError, match=r"nog\.parquet: missing column 'mag_pstotal_g'"):
            call()
    with pytest.raises(DataError, match="missing column 'r_auto'"):
        _tok(column_map={"mag_pstotal_r": "r_auto"}).train([path])


def test_missing_error_column_is_named(tmp_path):
    cols = catalogue(100, seed=2)
    del cols["err_mag_pstotal_g"]
    path = write_parquet(tmp_path / "noerr.parquet", cols)
    with pytest.raises(DataError, match="missing column 'err_mag_pstotal_g'"):
        _tok().train([path])
    assert _tok(apply_magerr_filter=False).train([path]).is_fitted


def test_non_numeric_column(tmp_path, trained):
    cols = catalogue(100, seed=2)
    cols["mag_pstotal_g"] = np.array(["bright"] * 100)
    path = write_parquet(tmp_path / "str.parquet", cols)
    for call in (lambda: _tok().train([path]), lambda: trained.encode(path)):
        with pytest.raises(DataError, match=r"str\.parquet: column 'mag_pstotal_g' has type string"):
            call()


def test_empty_corrupt_and_rowless_files(tmp_path, trained):
    empty = tmp_path / "empty.parquet"
    empty.write_bytes(b"")
    corrupt = tmp_path / "corrupt.parquet"
    corrupt.write_bytes(b"PAR1 this is not parquet at all")
    table = pa.table(catalogue(10, seed=1)).slice(0, 0)
    rowless = tmp_path / "rowless.parquet"
    pq.write_table(table, rowless)
    for path, msg in ((empty, "empty file"), (corrupt, "not a readable parquet"), (rowless, "no rows")):
        with pytest.raises(DataError, match=msg):
            _tok().train([path])
        with pytest.raises(DataError, match=path.name):
            trained.encode(path)


def test_no_row_passes_the_filter(tmp_path):
    cols = catalogue(100, seed=2)
    cols["mag_pstotal_r"][:] = 24.0
    path = write_parquet(tmp_path / "faint.parquet", cols)
    with pytest.raises(DataError, match=r"faint\.parquet: no rows pass the row filter: column "
                                        r"'mag_pstotal_r' in \[14.0, 22.0\] \(100 rows read\)"):
        _tok().train([path])


def test_null_id_names_the_column_and_encode_leaves_no_partial_store(tmp_path, trained):
    cols = catalogue(300, seed=3)
    ids = pa.array(cols.pop("id").tolist()[:250] + [None] * 50, type=pa.int64())
    table = pa.table({"id": ids, **cols})
    path = tmp_path / "nullid.parquet"
    pq.write_table(table, path, row_group_size=100)
    out = tmp_path / "tokens.parquet"
    trained.batch_size = 100  # the bad batch comes after two good ones were encoded
    with pytest.raises(DataError, match=r"nullid\.parquet: id column 'id' has 50 null ids"):
        trained.encode_to_store(path, out, progress=False)
    assert not out.exists() and list(tmp_path.glob(".tokens*")) == []


def test_unfitted_use(small):
    tok = _tok()
    with pytest.raises(NotFittedError):
        tok.encode(small)
    with pytest.raises(NotFittedError):
        tok.save("x.npz")


def test_bad_arguments():
    with pytest.raises(ValueError, match="both give token key 'tok_mag_r'"):
        ScalarTokenizer(scalar_columns=["mag-r", "mag.r"])
    with pytest.raises(ConfigError, match=r"tokenizers\.scalar\.nbins: unknown setting"):
        ScalarTokenizer.from_config({"nbins": 10})
    with pytest.raises(DataError, match="no input files given"):
        _tok().train([])


@pytest.mark.parametrize("setting, value, message", [
    ("n_bins", 70000, r"n_bins must be an integer in \[2, 65535\], got 70000"),
    ("n_bins", 1, r"n_bins must be an integer in \[2, 65535\], got 1"),
    ("n_bins", "many", r"n_bins must be an integer in \[2, 65535\], got 'many'"),
    ("mag_min", 23.0, r"mag_min 23.0 is above mag_max 22.0"),
    ("mag_max", float("nan"), r"mag_max must be a finite number, got nan"),
    ("magerr_max", 0.0, r"magerr_max must be positive, got 0.0"),
    ("max_values_per_col", 0, r"max_values_per_col must be an integer >= 1, got 0"),
    ("max_values_per_file_per_col", 2.5, r"max_values_per_file_per_col must be an integer >= 1, got 2.5"),
    ("rng_seed", "zero", r"rng_seed must be an integer, got 'zero'"),
    ("batch_size", 0, r"batch_size must be an integer >= 1, got 0"),
    ("backend", "cuda", r"backend must be one of"),
    ("sentinels", [99.0, "x"], r"sentinels\[1\] must be a finite number, got 'x'"),
    ("column_map", {"mag_pstotal_r": 3}, r"column_map must map column names to column names"),
    ("scalar_columns", "mag_pstotal_r", r"scalar_columns must be a list of column names"),
    ("id_col", "", r"id_col must be a column name"),
])
def test_settings_are_checked_and_named(setting, value, message):
    with pytest.raises(ValueError, match=message):
        ScalarTokenizer(**{setting: value})
    with pytest.raises(ConfigError, match=r"^tokenizers\.scalar: " + message):
        ScalarTokenizer.from_config({setting: value})


def test_sample_state_from_other_settings_is_refused(small):
    state = _tok().sample_file(small)
    with pytest.raises(DataError, match="other tokenizer settings"):
        _tok(rng_seed=3).fit_from_samples([state])


def test_decode_shape_checked(trained):
    with pytest.raises(DataError, match=r"shape \(n_rows, 2\)"):
        trained.decode(np.zeros((3, 5), dtype=np.uint16))


def _rewrite(src, dst, **changes):
    with np.load(src, allow_pickle=False) as npz:
        data = {k: npz[k] for k in npz.files}
    data.update(changes)
    with open(dst, "wb") as fh:
        np.savez(fh, **data)


def test_saved_file_checks(trained, tmp_path):
    path = tmp_path / "scalar_tokenizer_config.npz"
    trained.save(path)
    newer = tmp_path / "newer.npz"
    _rewrite(path, newer, __format_version__=np.array(99, dtype=np.int64))
    with pytest.raises(CodecFormatError, match="newer.npz: format_version 99 is newer"):
        ScalarTokenizer.load(newer)
    tampered = tmp_path / "tampered.npz"
    _rewrite(path, tampered, c000_edges=np.zeros(31))
    with pytest.raises(CodecFormatError, match="fingerprint mismatch"):
        ScalarTokenizer.load(tampered)
    pickled = tmp_path / "pickled.npz"
    _rewrite(path, pickled, c000_edges=np.array([{"evil": 1}], dtype=object))
    with pytest.raises(CodecFormatError, match="pickle"):
        ScalarTokenizer.load(pickled)
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CodecFormatError, match="truncated.npz"):
        ScalarTokenizer.load(truncated)
    with zipfile.ZipFile(path) as z:
        config = json.loads(np.load(z.open("__config__.npy")).item())
    assert config["tokenizer"] == "scalar" and config["settings"]["scalar_columns"] == COLS


def _resave(src, dst, **changes):
    """The saved state with some arrays changed, written with a valid fingerprint."""
    from astromodal_core.serialize import load_npz, save_npz

    config, arrays, _ = load_npz(src)
    arrays.update(changes)
    save_npz(dst, config, arrays, kind="scalar_tokenizer")
    return dst


@pytest.mark.parametrize("change, message", [
    ({"c001_edges": np.r_[np.full(30, 17.0), np.nan]},
     r"column 'mag_pstotal_g' \(array c001_edges\): bin edges hold NaN or infinite values"),
    ({"c000_edges": np.linspace(22.0, 14.0, 31)},
     r"column 'mag_pstotal_r' \(array c000_edges\): bin edges are not in increasing order"),
    ({"c000_centers": np.zeros(5)},
     r"column 'mag_pstotal_r': array c000_centers has shape \(5,\), expected \(32,\) for 31 edges"),
    ({"c001_edges": np.zeros((31, 2))}, r"column 'mag_pstotal_g': array 'c001_edges' has shape \(31, 2\)"),
])
def test_damaged_state_is_a_codec_format_error(trained, tmp_path, change, message):
    path = trained.save(tmp_path / "ok.npz")
    with pytest.raises(CodecFormatError, match=message):
        ScalarTokenizer.load(_resave(path, tmp_path / "bad.npz", **change))


def test_damaged_config_names_the_file(trained, tmp_path):
    from astromodal_core.serialize import load_npz, save_npz

    config, arrays, _ = load_npz(trained.save(tmp_path / "ok.npz"))
    config["settings"]["n_bins"] = 1
    save_npz(tmp_path / "bad.npz", config, arrays, kind="scalar_tokenizer")
    with pytest.raises(CodecFormatError, match=r"bad\.npz: invalid ScalarTokenizer state \(ValueError: n_bins"):
        ScalarTokenizer.load(tmp_path / "bad.npz")
    config["settings"]["n_bins"] = 32
    config["tokenizer"] = "spectrum"
    save_npz(tmp_path / "other.npz", config, arrays, kind="scalar_tokenizer")
    with pytest.raises(CodecFormatError, match="not a scalar tokenizer file"):
        ScalarTokenizer.load(tmp_path / "other.npz")
    loaded = ScalarTokenizer.load(tmp_path / "ok.npz", backend="numpy", batch_size=7, progress=False)
    assert (loaded.backend, loaded.batch_size, loaded.fingerprint) == ("numpy", 7, trained.fingerprint)
    with pytest.raises(CodecFormatError, match=r"load\(\) takes only the runtime settings"):
        ScalarTokenizer.load(tmp_path / "ok.npz", n_bins=8)
