"""Cutouts in parquet: layout, streamed reading and clear errors."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from astromodal_image import band_column, cutout_table, iter_cutouts, write_cutouts
from astromodal_image.storage import prefetched

from astromodal_core import DataError


def _flux(n=5, nb=2, size=4, seed=0):
    return np.random.default_rng(seed).normal(size=(n, nb, size, size)).astype(np.float32)


def test_round_trip_in_batches(tmp_path):
    flux = _flux(7)
    path = tmp_path / "c.parquet"
    write_cutouts(path, cutout_table(np.arange(10, 17), flux, ["G", "R"]))
    schema = pq.read_schema(path)
    assert schema.field("splus_cut_G").type == pa.list_(pa.float32(), 16)
    for buffers in (0, 1, 3):
        got = [(i, f.copy()) for i, f in iter_cutouts(path, ["R", "G"], 4, batch_size=3, buffers=buffers)]
        assert [len(i) for i, _ in got] == [3, 3, 1]
        ids = np.concatenate([i for i, _ in got])
        out = np.concatenate([f for _, f in got])
        np.testing.assert_array_equal(ids, np.arange(10, 17))
        np.testing.assert_array_equal(out, flux[:, ::-1])  # band order as requested


def test_null_band_is_nan_plane_and_variable_lists_accepted(tmp_path):
    flux = _flux(3, nb=1)
    mask = np.array([[True], [False], [True]])
    path = tmp_path / "c.parquet"
    write_cutouts(path, cutout_table(np.arange(3), flux, ["G"], band_mask=mask))
    (_, out), = list(iter_cutouts(path, ["G"], 4))
    assert np.isnan(out[1]).all()
    np.testing.assert_array_equal(out[[0, 2]], flux[[0, 2]])
    values = [flux[0, 0].ravel().tolist(), [], None]
    table = pa.table({"id": pa.array([1, 2, 3]), "splus_cut_G": pa.array(values, pa.list_(pa.float32()))})
    pq.write_table(table, tmp_path / "v.parquet")
    (_, out), = list(iter_cutouts(tmp_path / "v.parquet", ["G"], 4))
    np.testing.assert_array_equal(out[0, 0], flux[0, 0])
    assert np.isnan(out[1:]).all()


def test_wrong_length_names_file_column_and_row(tmp_path):
    table = pa.table({"id": pa.array([7, 8]),
                      "splus_cut_G": pa.array([[0.0] * 16, [0.0] * 15], pa.list_(pa.float32()))})
    path = tmp_path / "bad.parquet"
    pq.write_table(table, path)
    with pytest.raises(DataError, match=r"bad\.parquet: column 'splus_cut_G', row id 8: cutout has 15 pixels, expected 16"):
        list(iter_cutouts(path, ["G"], 4))
    path2 = tmp_path / "fixed.parquet"
    write_cutouts(path2, cutout_table(np.array([4]), _flux(1, 1, size=5), ["G"]))
    with pytest.raises(DataError, match=r"column 'splus_cut_G', row id 4: cutout has 25 pixels, expected 16"):
        list(iter_cutouts(path2, ["G"], 4))


def test_inf_pixels_are_an_error_naming_the_row(tmp_path):
    flux = _flux(4, nb=2)
    flux[2, 1, 0, 3] = np.inf
    path = tmp_path / "inf.parquet"
    write_cutouts(path, cutout_table(np.arange(100, 104), flux, ["G", "R"]))
    with pytest.raises(DataError, match=r"inf\.parquet: column 'splus_cut_R', row id 102: cutout holds infinite"):
        list(iter_cutouts(path, ["G", "R"], 4))


def test_bad_files_and_columns(tmp_path):
    path = tmp_path / "c.parquet"
    write_cutouts(path, cutout_table(np.arange(2), _flux(2, 1), ["G"]))
    with pytest.raises(DataError, match="missing column 'splus_cut_R'"):
        list(iter_cutouts(path, ["G", "R"], 4))
    pq.write_table(pa.table({"id": [1], "splus_cut_G": ["x"]}), tmp_path / "s.parquet")
    with pytest.raises(DataError, match="column 'splus_cut_G' has type string"):
        list(iter_cutouts(tmp_path / "s.parquet", ["G"], 4))
    pq.write_table(pa.table({"id": [1.5], "splus_cut_G": pa.array([[0.0] * 16])}), tmp_path / "f.parquet")
    with pytest.raises(DataError, match="id column 'id' has type double"):
        list(iter_cutouts(tmp_path / "f.parquet", ["G"], 4))
    (tmp_path / "empty.parquet").write_bytes(b"")
    with pytest.raises(DataError, match="empty file"):
        list(iter_cutouts(tmp_path / "empty.parquet", ["G"], 4))
    (tmp_path / "junk.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(DataError, match="not a readable parquet"):
        list(iter_cutouts(tmp_path / "junk.parquet", ["G"], 4))
    assert band_column("F378") == "splus_cut_F378"


def test_prefetched_keeps_order_and_reraises():
    assert list(prefetched(iter(range(5)))) == [0, 1, 2, 3, 4]

    def broken():
        yield 1
        raise DataError("boom in file x")

    with pytest.raises(DataError, match="boom in file x"):
        list(prefetched(broken()))
