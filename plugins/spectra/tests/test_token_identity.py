"""Tokens stay bit-identical for the same fitted state, whatever the reader and kernels do.

``data/token_identity`` holds fitted SpectrumTokenizers and the tokens ``encode()`` gave before
the fused Arrow feature path (see its ``make_fixture.py`` and ``expected.json``): the real DESI
coadds (pixels, ``level_shape``, patch_size 4), the real Gaia XP sources and a synthetic edge
file (masked / NaN pixels, ivar 0, bool and int mask columns, list<double>, empty and short
rows, ragged and padded ZTF light curves). Every encode path (``encode`` at several batch sizes,
``encode_to_store``, both assignment backends) must reproduce them, and training again on the
same file must give the same fitted state (fingerprint).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from astromodal_spectra import SpectrumTokenizer
from spectra_testdata import DATA as SAMPLES

from astromodal_core.store import read_token_store

DATA = SAMPLES / "token_identity"
META = json.loads((DATA / "expected.json").read_text())
with np.load(DATA / "expected.npz", allow_pickle=False) as _npz:
    EXPECTED = {k: _npz[k] for k in _npz.files}
SOURCES = {"desi": "desi_real.parquet", "desi_ls": "desi_real.parquet",
           "desi_p4": "desi_real.parquet", "xp": "gaia_xp_real.parquet",
           "edge": "token_identity/edge.parquet"}


def expected(name: str) -> dict[str, np.ndarray]:
    pre = f"{name}__"
    return {k[len(pre):]: v for k, v in EXPECTED.items() if k.startswith(pre)}


def quiet(fn, *args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # fewer distinct vectors than codes
        return fn(*args, **kw)


def check(got: dict, want: dict[str, np.ndarray]) -> None:
    assert sorted(k for k, v in got.items() if isinstance(v, np.ndarray)) == sorted(want)
    for k, ref in want.items():
        assert got[k].dtype == ref.dtype, k
        np.testing.assert_array_equal(got[k], ref, err_msg=k)


def test_fixture_covers_every_case() -> None:
    assert sorted(META["fingerprints"]) == sorted(SOURCES)
    assert expected("edge")["ids"].tolist() == [3500 + 7 * i for i in range(9)]
    assert expected("xp")["tokens_gaiaxp_bp_indptr"].tolist() == [0, 600, 600, 1200]


@pytest.mark.parametrize("name", sorted(SOURCES))
@pytest.mark.parametrize("batch_size", [None, 1, 2])
def test_encode_identical(name: str, batch_size: int | None) -> None:
    tok = SpectrumTokenizer.load(DATA / f"tok_{name}.npz", progress=False)
    assert tok.fingerprint == META["fingerprints"][name]
    check(tok.encode(SAMPLES / SOURCES[name], batch_size=batch_size), expected(name))


@pytest.mark.parametrize("name", ["desi", "edge"])
def test_numpy_backend_identical(name: str) -> None:
    tok = SpectrumTokenizer.load(DATA / f"tok_{name}.npz", progress=False, backend="numpy")
    check(tok.encode(SAMPLES / SOURCES[name]), expected(name))


@pytest.mark.parametrize("name", ["desi", "edge", "xp"])
def test_store_identical(name: str, tmp_path: Path) -> None:
    tok = SpectrumTokenizer.load(DATA / f"tok_{name}.npz", progress=False)
    want = expected(name)
    store = tok.encode_to_store(SAMPLES / SOURCES[name], tmp_path / "tokens.parquet", batch_size=4)
    ids, cols = read_token_store(store)
    np.testing.assert_array_equal(ids, want["ids"])
    for key, ref in tok.to_token_columns(want).items():
        if isinstance(ref, tuple):
            np.testing.assert_array_equal(cols[key][0], ref[0], err_msg=key)
            np.testing.assert_array_equal(cols[key][1], ref[1], err_msg=key)
        else:
            np.testing.assert_array_equal(cols[key], ref, err_msg=key)


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_training_identical(name: str) -> None:
    saved = SpectrumTokenizer.load(DATA / f"tok_{name}.npz", progress=False)
    settings = {k: v for k, v in saved.settings().items() if k != "progress"}
    tok = quiet(SpectrumTokenizer(progress=False, **settings).train, [SAMPLES / SOURCES[name]])
    for group, m in tok.models.items():
        for k, v in m.arrays().items():
            np.testing.assert_array_equal(v, saved.models[group].arrays()[k], err_msg=f"{group}/{k}")
    assert tok.fingerprint == META["fingerprints"][name]


@pytest.mark.parametrize("name", ["desi", "desi_p4", "edge"])
def test_reference_path_identical(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the fused kernels (no numba) the padded reference path gives the same tokens
    and the same fitted state."""
    from astromodal_spectra import fused

    monkeypatch.setattr(fused, "HAVE_NUMBA", False)
    tok = SpectrumTokenizer.load(DATA / f"tok_{name}.npz", progress=False)
    check(tok.encode(SAMPLES / SOURCES[name], batch_size=3), expected(name))
    settings = {k: v for k, v in tok.settings().items() if k != "progress"}
    again = quiet(SpectrumTokenizer(progress=False, **settings).train, [SAMPLES / SOURCES[name]])
    assert again.fingerprint == META["fingerprints"][name]


def test_fused_reader_errors_name_the_row(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from astromodal_core.errors import DataError

    tok = SpectrumTokenizer.load(DATA / "tok_edge.npz", progress=False)
    table = pq.read_table(SAMPLES / SOURCES["edge"])
    for col, bad, what in (("desi_flux_b", np.inf, "holds inf"),
                           ("desi_ivar_b", -1.0, "holds negative ivar")):
        values = table.column(col).to_pylist()
        values[5][40] = bad
        broken = table.set_column(table.schema.get_field_index(col), col,
                                  pa.array(values, table.schema.field(col).type))
        pq.write_table(broken, tmp_path / "bad.parquet")
        with pytest.raises(DataError, match=f"row id 3535: column '{col}' {what} \\(1 such values\\)"):
            tok.encode(tmp_path / "bad.parquet")
