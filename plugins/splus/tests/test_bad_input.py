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
    with pytest.raises(ValueError, match="n_bins"):
        ScalarTokenizer(n_bins=70000)
    with pytest.raises(ValueError, match="both give token key 'tok_mag_r'"):
        ScalarTokenizer(scalar_columns=["mag-r", "mag.r"])
    with pytest.raises(ConfigError, match="unknown key 'nbins'"):
        ScalarTokenizer.from_config({"nbins": 10})
    with pytest.raises(DataError, match="no training files"):
        _tok().train([])


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
