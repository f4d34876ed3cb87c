"""Survey column maps as data: the shipped S-PLUS DR4 and Gaia maps, their sentinels, and the
warning for an undeclared placeholder spike.

No real S-PLUS DR4 table is available to the tests (``/work/shared/data`` holds none), so
:func:`dr4_dual_table` builds one the way a user gets it: the DR4 dual-mode catalogue's
``<band>_auto`` / ``e_<band>_auto`` columns for the 12 bands, suffixed ``_dual`` by an LSDB
crossmatch, with 99 (and a few -99) in both a magnitude and its error where a source was not
measured (mostly faint sources in the blue narrow bands), string ``ID`` s, and ``NUMBER`` as
the integer row id.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from astromodal_splus import ScalarTokenizer
from astromodal_splus.columns import (
    BANDS,
    ColumnMap,
    column_map,
    column_maps,
    load_column_map,
    resolve_column_map,
)

from astromodal_core import ConfigError

FILE_BANDS = ["u", "J0378", "J0395", "J0410", "J0430", "g", "J0515", "r", "J0660", "i", "J0861", "z"]
#: 5-sigma-like depth per band: fainter sources are "not measured" (99) there
DEPTH = dict(zip(FILE_BANDS, [20.5, 20.0, 20.0, 20.3, 20.4, 21.6, 20.8, 21.4, 20.9, 21.0, 20.2, 20.6]))


def dr4_dual_table(n: int = 4000, seed: int = 11, suffix: str = "_dual") -> pa.Table:
    """An S-PLUS DR4 dual-mode-like table (see the module docstring)."""
    rng = np.random.default_rng(seed)
    r = rng.uniform(14.5, 22.5, n)
    colour = rng.normal(0.0, 0.4, n)
    cols: dict[str, object] = {
        "ID": [f"DR4_3_SPLUS-s24s29_{i:07d}" for i in range(n)],
        "NUMBER": np.arange(1, n + 1, dtype=np.int64),
        f"RA{suffix}": rng.uniform(10.0, 11.4, n),
        f"DEC{suffix}": rng.uniform(-30.0, -28.6, n),
    }
    for j, b in enumerate(FILE_BANDS):
        mag = r + colour * (5.5 - j) / 5.5 + rng.normal(0.0, 0.05, n)
        err = np.clip(0.02 * 10 ** (0.4 * (mag - 18.0)), 0.001, 5.0)
        lost = mag > DEPTH[b] + rng.normal(0.0, 0.2, n)
        mag[lost], err[lost] = 99.0, 99.0
        odd = rng.random(n) < 0.002  # a few -99: a measurement that failed
        mag[odd], err[odd] = -99.0, -99.0
        cols[f"{b}_auto{suffix}"] = mag.astype(np.float32)  # DR4 stores float32 magnitudes
        cols[f"e_{b}_auto{suffix}"] = err.astype(np.float32)
    return pa.table(cols)


@pytest.fixture(scope="module")
def dr4_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("dr4") / "splus_dr4_dual.parquet"
    pq.write_table(dr4_dual_table(), path)
    return path


def _settings(**kw) -> dict:
    return {"n_bins": 64, "id_col": "NUMBER", "progress": False, **kw}


def test_shipped_maps_cover_the_dr4_families_and_gaia():
    maps = column_maps()
    assert sorted(maps) == ["gaia-dr3", "splus-dr4-auto", "splus-dr4-petro", "splus-dr4-pstotal"]
    for family, spelled in (("auto", "auto"), ("petro", "petro"), ("pstotal", "PStotal")):
        m = maps[f"splus-dr4-{family}"]
        assert isinstance(m, ColumnMap) and len(m.columns) == 24
        assert m.columns["mag_pstotal_r"] == f"r_{spelled}" and m.columns["err_mag_pstotal_r"] == f"e_r_{spelled}"
        assert m.columns["mag_pstotal_j0378"] == f"J0378_{spelled}"
        assert m.scalar_columns == tuple(f"mag_pstotal_{b}" for b in BANDS)
        assert all(m.sentinels[c] == (99.0, -99.0) for c in m.columns)  # magnitudes and errors
    gaia = maps["gaia-dr3"]
    assert gaia.columns == {"gaia_parallax": "parallax", "gaia_pmra": "pmra", "gaia_pmdec": "pmdec"}
    assert all(v == () for v in gaia.sentinels.values())  # the archive writes nulls


def test_references_suffixes_and_lists():
    m = resolve_column_map({"map": "splus-dr4-auto", "suffix": "_dual"})
    assert m.columns["err_mag_pstotal_g"] == "e_g_auto_dual" and m.name == "splus-dr4-auto*_dual"
    both = resolve_column_map([{"map": "splus-dr4-auto", "suffix": "_dual"}, {"map": "gaia-dr3", "prefix": "gaia_"}])
    assert both.columns["gaia_pmra"] == "gaia_pmra" and len(both.scalar_columns) == 15
    with pytest.raises(ValueError, match=r"unknown column map 'splus-dr4-aut' \(did you mean 'splus-dr4-auto'\?\)"):
        column_map("splus-dr4-aut")
    with pytest.raises(ValueError, match=r"unknown key 'sufix'"):
        resolve_column_map({"map": "splus-dr4-auto", "sufix": "_dual"})
    with pytest.raises(ValueError, match=r"'mag_pstotal_u' is 'u_auto' in one map and 'u_petro' in 'splus-dr4-petro'"):
        resolve_column_map(["splus-dr4-auto", "splus-dr4-petro"])


def test_a_bad_map_file_is_named(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: Bad Name\ncolumns: {a: b}\n")
    with pytest.raises(ValueError, match=r"bad\.yaml: 'name' must be a lower-case name"):
        load_column_map(bad)
    bad.write_text("name: ok\ncolumns: {a: b}\nsentinels: {c: [1]}\n")
    with pytest.raises(ValueError, match=r"bad\.yaml: sentinels names 'c', which 'columns' does not map"):
        load_column_map(bad)
    bad.write_text("name: ok\ncolumns: {a: b}\nsentinel: [1]\n")
    with pytest.raises(ValueError, match=r"bad\.yaml: unknown key 'sentinel'"):
        load_column_map(bad)


def test_dr4_table_with_the_declared_map_masks_every_99(dr4_file):
    """Read through splus-dr4-auto (suffix _dual), every 99 / -99 is the mask token, in every
    band; the training sample held none of them, and nothing warns."""
    tok = ScalarTokenizer(**_settings(column_map={"map": "splus-dr4-auto", "suffix": "_dual"}))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        tok.train(dr4_file)
    assert tok.scalar_cols == [f"mag_pstotal_{b}" for b in BANDS]
    table = pq.read_table(dr4_file)
    out = tok.encode(dr4_file)
    n_placeholders = 0
    for j, b in enumerate(FILE_BANDS):
        raw = table.column(f"{b}_auto_dual").to_numpy()
        placeholder = np.isin(raw, [99.0, -99.0])
        n_placeholders += int(placeholder.sum())
        np.testing.assert_array_equal(out["scalar_tokens"][:, j] == tok.N_BINS, placeholder, err_msg=b)
    assert n_placeholders > 1000  # the blue narrow bands lose many faint sources
    assert tok.bins["mag_pstotal_u"].edges.max() < 25  # no 99 inside any bin
    assert tok.sentinels_of("err_mag_pstotal_u") == (99.0, -99.0)


def test_dr4_table_without_a_map_warns_naming_the_columns(dr4_file):
    """The issue's case: the catalogue's own names as scalar columns, no sentinels declared.
    Training warns naming every column that holds 99 and the value; 99 is binned as a value."""
    cols = [f"{b}_auto_dual" for b in FILE_BANDS]
    tok = ScalarTokenizer(**_settings(scalar_columns=cols, mag_filter_col=None,
                                      error_columns={c: f"e_{c}" for c in cols}))
    with pytest.warns(RuntimeWarning, match=r"column\(s\) hold a common 'not measured' placeholder") as rec:
        tok.train(dr4_file)
    text = " ".join(str(w.message) for w in rec if "placeholder" in str(w.message))
    for b in FILE_BANDS:
        assert f"'{b}_auto_dual' = 99 (" in text, b
        assert f"'e_{b}_auto_dual' = 99 (" in text, b
    assert "column_map: NAME" in text and "splus-dr4-auto" in text
    out = tok.encode(dr4_file)
    raw = pq.read_table(dr4_file, columns=["u_auto_dual"]).column(0).to_numpy()
    assert not np.any(out["scalar_tokens"][raw == 99.0, 0] == tok.N_BINS)  # binned as a value
    # declaring them (or an empty list: the user's decision) silences the warning
    declared = ScalarTokenizer(**_settings(scalar_columns=cols, mag_filter_col=None, error_columns={},
                                           column_sentinels=dict.fromkeys(cols, [99.0, -99.0])))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        declared.train(dr4_file)


def test_a_named_map_is_data_equal_to_spelling_it_out(dr4_file, tmp_path):
    """Same state as the explicit column_map + column_sentinels; settings() keeps the name and
    rebuilds; a saved tokenizer loads without the map and gives the same tokens."""
    ref = {"map": "splus-dr4-auto", "suffix": "_dual"}
    tok = ScalarTokenizer(**_settings(column_map=ref)).train(dr4_file)
    m = resolve_column_map(ref)
    explicit = ScalarTokenizer(**_settings(column_map=dict(m.columns),
                                           column_sentinels={c: list(v) for c, v in m.sentinels.items()},
                                           scalar_columns=list(m.scalar_columns))).train(dr4_file)
    assert tok.fingerprint == explicit.fingerprint
    settings = tok.settings()
    assert settings["column_map"] == ref
    again = ScalarTokenizer.from_config(json.loads(json.dumps(settings)))
    assert again.settings() == settings
    path = tok.save(tmp_path / "scalar.npz")
    loaded = ScalarTokenizer.load(path)
    np.testing.assert_array_equal(loaded.encode(dr4_file)["scalar_tokens"], tok.encode(dr4_file)["scalar_tokens"])
    with pytest.raises(ConfigError, match=r"tokenizers\.scalar: unknown column map 'splus-dr5'"):
        ScalarTokenizer.from_config({"column_map": "splus-dr5"})


def test_gaia_map_turns_the_default_row_filter_off(tmp_path):
    rng = np.random.default_rng(2)
    n = 500
    pmra = rng.normal(0.0, 5.0, n)
    pmra[:3] = 99.0  # a real proper motion of 99 mas/yr is a value for Gaia: no sentinel
    pq.write_table(pa.table({"source_id": np.arange(n, dtype=np.int64), "parallax": rng.normal(1.0, 0.5, n),
                             "pmra": pmra, "pmdec": rng.normal(0.0, 5.0, n)}), tmp_path / "gaia.parquet")
    tok = ScalarTokenizer(n_bins=16, id_col="source_id", column_map="gaia-dr3", progress=False)
    assert tok.mag_filter_col is None and tok.scalar_cols == ["gaia_parallax", "gaia_pmra", "gaia_pmdec"]
    tok.train(tmp_path / "gaia.parquet")
    assert np.all(tok.encode(tmp_path / "gaia.parquet")["scalar_tokens"][:3, 1] == 15)  # the top bin
