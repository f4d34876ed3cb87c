"""Bad input: a DataError naming file, column and row id (or a documented masking rule)."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from astromodal_spectra import SpectrumTokenizer
from spectra_testdata import DATA

from astromodal_core import CodecFormatError, DataError, NotFittedError
from astromodal_core.serialize import save_npz


def _cube(path: Path, **cols: pa.Array) -> Path:
    n = len(next(iter(cols.values())))
    pq.write_table(pa.table({"id": pa.array(np.arange(7, 7 + n), pa.int64()), **cols}), path)
    return path


def _fl(rows: list) -> pa.Array:
    return pa.array(rows, pa.list_(pa.float32()))


def _desi_cube(path: Path, flux: list, ivar: list) -> Path:
    return _cube(path, desi_flux_b=_fl(flux), desi_ivar_b=_fl(ivar))


def _ztf_cube(path: Path, t: list, m: list, e: list) -> Path:
    return _cube(path, ztf_hmjd_g=pa.array(t, pa.list_(pa.float64())), ztf_mag_g=_fl(m),
                 ztf_magerr_g=_fl(e))


GOOD = [[1.0, 2.0, 3.0, 4.0], [2.0, 1.0, 2.0, 3.0]]
IVAR = [[1.0] * 4, [4.0] * 4]


@pytest.fixture
def desi_tok(tmp_path: Path) -> SpectrumTokenizer:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return SpectrumTokenizer(codebook_size=4, norm_bins=4, progress=False,
                                 groups=["desi_b"]).train(_desi_cube(tmp_path / "t.parquet", GOOD, IVAR))


@pytest.mark.parametrize(
    ("flux", "ivar", "match"),
    [
        ([[1.0, 2.0, 3.0, 4.0], [1.0, 2.0]], IVAR,
         r"row id 8: column 'desi_flux_b' has 2 values but 'desi_ivar_b' has 4"),
        (GOOD, [[1.0] * 4, [1.0, -2.0, 1.0, 1.0]], r"row id 8: column 'desi_ivar_b' holds negative ivar"),
        ([[1.0, np.inf, 3.0, 4.0], GOOD[1]], IVAR, r"row id 7: column 'desi_flux_b' holds inf"),
        (GOOD + [[1.0] * 6], IVAR + [[1.0] * 6], r"row id 9: column 'desi_flux_b' has 6 points, more than"),
    ],
)
def test_desi_bad_rows(desi_tok: SpectrumTokenizer, tmp_path: Path, flux, ivar, match) -> None:
    path = _desi_cube(tmp_path / "bad.parquet", flux, ivar)
    with pytest.raises(DataError, match=match) as err:
        desi_tok.encode(path)
    assert str(path) in str(err.value)


def test_all_masked_and_empty_spectra_are_mask_tokens(desi_tok: SpectrumTokenizer, tmp_path: Path) -> None:
    path = _desi_cube(tmp_path / "m.parquet",
                      [[np.nan, 1.0, 2.0, 3.0], [], [1.0, 2.0, 3.0, 4.0], None],
                      [[1.0] * 4, [], [0.0] * 4, None])
    res = desi_tok.encode(path)
    tok, norm = res["tokens_desi_b"], res["tokens_desi_b_norm"]
    assert tok.shape == (4, 4)
    assert tok[0, 0] == 4 and np.all(tok[0, 1:] < 4)
    assert np.all(tok[1:] == 4) and np.all(norm[1:] == 4) and norm[0] < 4
    dec = desi_tok.decode(res, "desi_b")
    assert dec.mask[1:].all() and dec.mask[0].tolist() == [True, False, False, False]


def test_wrong_types_missing_columns_and_broken_files(desi_tok: SpectrumTokenizer, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"missing column 'desi_ivar_b'"):
        desi_tok.encode(_cube(tmp_path / "a.parquet", desi_flux_b=_fl(GOOD)))
    strs = pa.array([["a"], ["b"]], pa.list_(pa.string()))
    with pytest.raises(DataError, match=r"column 'desi_flux_b' holds string"):
        desi_tok.encode(_cube(tmp_path / "b.parquet", desi_flux_b=strs, desi_ivar_b=_fl(IVAR)))
    with pytest.raises(DataError, match=r"column 'desi_ivar_b' has type double, expected a list"):
        desi_tok.encode(_cube(tmp_path / "c.parquet", desi_flux_b=_fl(GOOD),
                              desi_ivar_b=pa.array([1.0, 2.0])))
    (tmp_path / "empty.parquet").write_bytes(b"")
    with pytest.raises(DataError, match="empty file"):
        desi_tok.encode(tmp_path / "empty.parquet")
    (tmp_path / "junk.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(DataError, match="not a readable parquet"):
        desi_tok.encode(tmp_path / "junk.parquet")
    pq.write_table(pa.table({"id": pa.array([], pa.int64()), "desi_flux_b": _fl([]),
                             "desi_ivar_b": _fl([])}), tmp_path / "norows.parquet")
    with pytest.raises(DataError, match="no rows"):
        desi_tok.encode(tmp_path / "norows.parquet")
    with pytest.raises(DataError, match="id column 'id' has 1 null"):
        pq.write_table(pa.table({"id": pa.array([1, None], pa.int64()), "desi_flux_b": _fl(GOOD),
                                 "desi_ivar_b": _fl(IVAR)}), tmp_path / "nullid.parquet")
        desi_tok.encode(tmp_path / "nullid.parquet")


def test_ztf_rules(tmp_path: Path) -> None:
    t = [[1.0, 2.0, 5.0], [3.0], [1.0, 4.0]]
    m = [[15.0, 15.2, np.nan], [16.0], [99.0, 17.0]]
    e = [[0.1, 0.1, 0.1], [0.05], [0.1, 0.1]]
    path = _ztf_cube(tmp_path / "z.parquet", t, m, e)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        tok = SpectrumTokenizer(codebook_size=8, norm_bins=8, max_points_per_row=2,
                                progress=False).train([path])
    assert [g["name"] for g in tok.groups] == ["ztf_g"]  # auto-detected
    res = tok.encode(path)  # ragged rows (the default): as long as each light curve
    assert res["tokens_ztf_g_indptr"].tolist() == [0, 3, 4, 6]
    toks = res["tokens_ztf_g_flat"]
    assert toks[2] == 8 and toks[:2].max() < 8  # NaN magnitude: masked point
    assert toks[3] < 8  # one point: one token
    assert toks[4] == 8 and toks[5] < 8  # 99 sentinel: masked
    # days since the first valid point in 0.5-day bins; 5 bins (twice the longest span, 1 day),
    # so 5 is the mask token of the masked points
    assert res["tokens_ztf_g_time_flat"].tolist() == [0, 2, 5, 0, 5, 0]
    assert tok.token_values("tok_lightcurve_ztf_g_time").tolist()[:5] == [0.0, 0.5, 1.0, 1.5, 2.0]
    assert res["tokens_ztf_g_time_indptr"].tolist() == [0, 3, 4, 6]
    legacy = {"name": "ztf_g", "kind": "ztf_mag_err", "layout": "padded", "time_encoding": "delta"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        padded = SpectrumTokenizer(codebook_size=8, norm_bins=8, max_points_per_row=2,
                                   groups=[legacy], progress=False).train([path])
    assert padded.groups[0] == {k: v for k, v in tok.groups[0].items()
                                if k not in ("layout", "time_encoding", "time_step", "time_span")}
    toks = padded.encode(path)["tokens_ztf_g"]
    assert toks.shape == (3, 3)
    assert toks[0, 2] == 8  # NaN magnitude: masked point
    assert toks[1, 0] < 8 and np.all(toks[1, 1:] == 8)  # one point: one token, then padding
    assert toks[2, 0] == 8 and toks[2, 1] < 8  # 99 sentinel: masked
    bad = _ztf_cube(tmp_path / "u.parquet", [[1.0, 3.0, 2.0]], [[15.0] * 3], [[0.1] * 3])
    with pytest.raises(DataError, match=r"row id 7: column 'ztf_hmjd_g' is not sorted in time"):
        tok.encode(bad)
    bad = _ztf_cube(tmp_path / "n.parquet", [[1.0, np.nan]], [[15.0] * 2], [[0.1] * 2])
    with pytest.raises(DataError, match=r"row id 7: column 'ztf_hmjd_g' holds a non-finite time"):
        tok.encode(bad)
    bad = _ztf_cube(tmp_path / "l.parquet", [[1.0, 2.0]], [[15.0] * 2], [[0.1]])
    with pytest.raises(DataError, match=r"row id 7: column 'ztf_mag_g' has 2 values but 'ztf_magerr_g' has 1"):
        tok.encode(bad)


def test_xp_wrong_number_of_coefficients(tmp_path: Path) -> None:
    table = pq.read_table(DATA / "gaia_xp_real.parquet")
    coef = table.column("rp_coefficients").to_pylist()
    coef[2] = coef[2][:50]
    table = table.set_column(table.schema.get_field_index("rp_coefficients"), "rp_coefficients",
                             pa.array(coef, pa.list_(pa.float64())))
    pq.write_table(table, tmp_path / "xp.parquet")
    tok = SpectrumTokenizer(codebook_size=8, progress=False, groups=["gaiaxp_rp"])
    with pytest.raises(DataError, match=r"row id 5762406957886626816: column 'rp_coefficients' has 50 "
                                        r"coefficients, expected 55"):
        tok.train([tmp_path / "xp.parquet"])


def test_saved_files_are_checked(desi_tok: SpectrumTokenizer, tmp_path: Path) -> None:
    with pytest.raises(NotFittedError):
        SpectrumTokenizer(groups=["desi_b"]).encode(tmp_path / "x.parquet")
    path = tmp_path / "spectrum_tokenizer_config.npz"
    desi_tok.save(path)
    loaded = SpectrumTokenizer.load(path)
    assert loaded.fingerprint == desi_tok.fingerprint
    with np.load(path, allow_pickle=False) as npz:
        assert int(npz["__format_version__"]) == 1
    (companion,) = tmp_path.glob("spectrum_tokenizer_config.codebooks.*.safetensors")
    assert re.fullmatch(r"spectrum_tokenizer_config\.codebooks\.[0-9a-f]{16}\.safetensors", companion.name)
    data = bytearray(companion.read_bytes())
    data[-3] ^= 0xFF
    companion.write_bytes(bytes(data))
    with pytest.raises(CodecFormatError, match=re.escape(companion.name)):
        SpectrumTokenizer.load(path)
    newer = tmp_path / "newer_config.npz"
    save_npz(newer, {"tokenizer": "spectrum"}, {}, kind="spectrum_tokenizer")
    with np.load(newer, allow_pickle=False) as npz:
        payload = {k: npz[k] for k in npz.files}
    payload["__format_version__"] = np.array(99)
    np.savez(newer, **payload)
    with pytest.raises(CodecFormatError, match="format_version 99 is newer"):
        SpectrumTokenizer.load(newer)
    with pytest.raises(CodecFormatError, match="file not found"):
        SpectrumTokenizer.load(tmp_path / "nope.npz")
