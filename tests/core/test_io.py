"""Streamed parquet reading and its errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from astromodal_core import DataError
from astromodal_core.io import (
    check_same_lengths,
    id_column,
    iter_batches,
    list_column,
    numeric_column,
)


@pytest.fixture
def cube(tmp_path: Path) -> Path:
    path = tmp_path / "cube.parquet"
    pq.write_table(
        pa.table(
            {
                "id": pa.array([10, 11, 12], pa.int64()),
                "mag": pa.array([20.0, None, 99.0]),
                "name": pa.array(["a", "b", "c"]),
                "flux": pa.array([[1.0, 2.0], None, [3.0]], pa.list_(pa.float32())),
                "ivar": pa.array([[1.0, 1.0], [], [1.0, 2.0]], pa.list_(pa.float32())),
            }
        ),
        path,
    )
    return path


def test_batches_project_columns(cube: Path) -> None:
    batches = list(iter_batches(cube, ["id", "mag"], batch_size=2))
    assert [b.num_rows for b in batches] == [2, 1]
    assert batches[0].schema.names == ["id", "mag"]
    np.testing.assert_array_equal(numeric_column(batches[0], "mag", cube), [20.0, np.nan])
    np.testing.assert_array_equal(id_column(batches[0], "id", cube), [10, 11])


def test_missing_column_names_file_and_column(cube: Path) -> None:
    with pytest.raises(DataError, match=r"cube.parquet: missing column 'mag_r'"):
        list(iter_batches(cube, ["id", "mag_r"]))


def test_non_numeric_column(cube: Path) -> None:
    batch = next(iter_batches(cube, ["name"]))
    with pytest.raises(DataError, match="column 'name' has type string, expected a number"):
        numeric_column(batch, "name", cube)
    with pytest.raises(DataError, match="id column 'name' has type string"):
        id_column(batch, "name", cube)


def test_list_columns_and_ragged_mismatch(cube: Path) -> None:
    batch = next(iter_batches(cube, ["id", "flux", "ivar"]))
    values, offsets = list_column(batch, "flux", cube)
    np.testing.assert_array_equal(values, [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(offsets, [0, 2, 2, 3])
    _, ivar_offsets = list_column(batch, "ivar", cube)
    with pytest.raises(DataError, match="row id 12: column 'flux' has 1 values but 'ivar' has 2"):
        check_same_lengths(offsets, ivar_offsets, id_column(batch, "id", cube), cube, "flux", "ivar")
    with pytest.raises(DataError, match="column 'mag' has type double, expected a list"):
        list_column(next(iter_batches(cube, ["mag"])), "mag", cube)


def test_sliced_list_column_offsets_start_at_zero(tmp_path: Path) -> None:
    path = tmp_path / "l.parquet"
    pq.write_table(pa.table({"x": pa.array([[float(i)] * (i % 3) for i in range(10)])}), path)
    seen = []
    for batch in iter_batches(path, ["x"], batch_size=4):
        values, offsets = list_column(batch, "x", path)
        assert offsets[0] == 0 and offsets[-1] == len(values)
        seen += [values[offsets[i] : offsets[i + 1]].tolist() for i in range(len(offsets) - 1)]
    assert seen == [[float(i)] * (i % 3) for i in range(10)]


def test_empty_corrupt_and_rowless_files(tmp_path: Path) -> None:
    (tmp_path / "empty.parquet").write_bytes(b"")
    with pytest.raises(DataError, match="empty.parquet: empty file"):
        list(iter_batches(tmp_path / "empty.parquet", []))
    (tmp_path / "junk.parquet").write_bytes(b"not parquet at all" * 10)
    with pytest.raises(DataError, match="junk.parquet: not a readable parquet file"):
        list(iter_batches(tmp_path / "junk.parquet", []))
    pq.write_table(pa.table({"id": pa.array([], pa.int64())}), tmp_path / "none.parquet")
    with pytest.raises(DataError, match="none.parquet: the file has no rows"):
        list(iter_batches(tmp_path / "none.parquet", ["id"]))
    with pytest.raises(DataError, match="nope.parquet: file not found"):
        list(iter_batches(tmp_path / "nope.parquet", ["id"]))
