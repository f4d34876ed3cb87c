"""The source layer: parquet, FITS, astropy Tables, directories and HATS catalogues give the
same record batches, so every tokenizer trains and encodes every source to the same tokens."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from astromodal_core import DataError
from astromodal_core.cli import cli
from astromodal_core.io import iter_batches, num_rows, open_parquet, require_columns
from astromodal_core.sources import (
    FitsSource,
    HatsSource,
    ParquetDatasetSource,
    ParquetSource,
    Source,
    SourceKind,
    TableSource,
    expand_sources,
    open_source,
    source_list,
)
from astromodal_core.store import read_token_store, store_metadata


def _by_id(result: dict, keys: list[str]) -> dict[str, np.ndarray]:
    order = np.argsort(result["ids"])
    return {"ids": result["ids"][order], **{k: np.asarray(result[k])[order] for k in keys}}


def _specs(catalogue, hats_catalogue) -> dict[str, object]:
    return {"parquet": catalogue["parquet"], "fits": catalogue["fits"], "table": catalogue["table"],
            "hats": f"hats://{hats_catalogue}", "hats dir": hats_catalogue}


def test_every_source_gives_the_same_batches(catalogue, hats_catalogue):
    """Same rows, same values (masked astropy values are nulls), whatever the source."""
    want = pq.read_table(catalogue["parquet"])
    cols = ["id", "mag", "flux", "flag"]
    for label, spec in _specs(catalogue, hats_catalogue).items():
        assert num_rows(spec) == want.num_rows, label
        batches = list(iter_batches(spec, cols, batch_size=700))
        assert max(b.num_rows for b in batches) <= 700, label
        got = pa.Table.from_batches(batches).sort_by("id")
        assert got.column_names == cols, label
        for c in cols:
            a, b = got.column(c).combine_chunks(), want.column(c).combine_chunks()
            # missing is a null or a NaN (FITS has no null floats; pandas has no NaN floats)
            av = a.to_numpy(zero_copy_only=False).astype(np.float64)
            bv = b.to_numpy(zero_copy_only=False).astype(np.float64)
            np.testing.assert_array_equal(av, bv, err_msg=f"{label} {c}")
        n_masked = int(catalogue["table"]["mag"].mask.sum())
        assert np.isnan(got.column("mag").to_numpy(zero_copy_only=False).astype(float)).sum() == n_masked


def test_same_tokens_from_parquet_fits_table_and_hats(catalogue, hats_catalogue, srctoy_plugin):
    """A tokenizer on the core base trains to the same state and encodes the same tokens from
    every source (HATS partitions come in another row order: compared by id)."""
    keys = ["tok_src_mag", "tok_src_flux", "tok_src_flag"]
    ref_tok = srctoy_plugin.SrcToy(columns=["mag", "flux", "flag"]).train(catalogue["parquet"])
    ref = _by_id(ref_tok.encode(catalogue["parquet"]), keys)
    # the masked magnitudes (and only they) hold the mask token
    assert (ref["tok_src_mag"] == 16).sum() == int(catalogue["table"]["mag"].mask.sum()) > 100
    for label, spec in _specs(catalogue, hats_catalogue).items():
        tok = srctoy_plugin.SrcToy(columns=["mag", "flux", "flag"]).train(spec)
        assert tok.fingerprint == ref_tok.fingerprint, label
        got = _by_id(tok.encode(spec), keys)
        for k in ["ids", *keys]:
            np.testing.assert_array_equal(got[k], ref[k], err_msg=f"{label} {k}")


def test_scalar_tokenizer_reads_every_source(catalogue, hats_catalogue):
    """The S-PLUS ScalarTokenizer (its own iter_token_batches) too: same edges, same tokens."""
    splus = pytest.importorskip("astromodal_splus")
    settings = dict(n_bins=32, scalar_columns=["mag", "flux"], mag_filter_col=None,
                    max_values_per_file_per_col=None, progress=False)
    ref_tok = splus.ScalarTokenizer(**settings).train(catalogue["parquet"])
    ref = ref_tok.encode(catalogue["parquet"])
    order = np.argsort(ref["ids"])
    for label, spec in _specs(catalogue, hats_catalogue).items():
        tok = splus.ScalarTokenizer(**settings).train(spec)
        assert tok.fingerprint == ref_tok.fingerprint, label
        got = tok.encode(spec)
        o = np.argsort(got["ids"])
        np.testing.assert_array_equal(got["ids"][o], ref["ids"][order], err_msg=label)
        np.testing.assert_array_equal(got["scalar_tokens"][o], ref["scalar_tokens"][order], err_msg=label)


def test_encode_to_store_from_a_table_and_a_fits_file(catalogue, srctoy_plugin, tmp_path):
    """encode_to_store records what it read: a FITS file's path, size and time; a table's name."""
    tok = srctoy_plugin.SrcToy().train(catalogue["table"])
    out = tok.encode_to_store(catalogue["table"], tmp_path / "table.tokens.parquet")
    meta = store_metadata(out)
    assert meta["source"] == {"path": "<astropy Table: 3000 rows, 6 columns>", "kind": "astropy-table",
                              "rows": 3000}
    tok.encode_to_store(catalogue["fits"], tmp_path / "fits.tokens.parquet")
    meta = store_metadata(tmp_path / "fits.tokens.parquet")
    assert meta["source"]["path"] == str(Path(catalogue["fits"]).resolve())
    assert meta["source"]["size"] == Path(catalogue["fits"]).stat().st_size
    a = read_token_store(out)
    b = read_token_store(tmp_path / "fits.tokens.parquet")
    np.testing.assert_array_equal(a[0], b[0])
    for k in a[1]:
        np.testing.assert_array_equal(a[1][k], b[1][k])


def test_astropy_columns_masks_units_and_fits_details(catalogue, tmp_path):
    import astropy.units as u
    from astropy.table import MaskedColumn, QTable, Table

    t = catalogue["table"]
    src = open_source(t)
    assert isinstance(src, TableSource) and str(src) == "<astropy Table: 3000 rows, 6 columns>"
    assert src.schema_arrow.field("mag").metadata == {b"unit": b"mag"}
    assert src.schema_arrow.field("flux").type == pa.float32()
    batch = next(src.iter_batches(batch_size=3000, columns=["mag", "flag"]))
    assert batch.column("mag").null_count == int(t["mag"].mask.sum())
    assert batch.column("flag").null_count == int(t["flag"].mask.sum())
    # FITS: the first table HDU, masked integers (TNULL) are nulls, names match case-insensitively
    fits = open_source(catalogue["fits"])
    assert isinstance(fits, FitsSource) and fits.num_rows == 3000
    flag = next(iter_batches(catalogue["fits"], ["FLAG"], batch_size=5000)).column("FLAG")
    assert flag.null_count == int(t["flag"].mask.sum())
    # an HDU by name, by index, and a clear error for a missing one
    t2 = Table({"id": np.arange(3), "x": [1.0, 2.0, 3.0]}, meta={"EXTNAME": "OBJ"})
    t2.write(tmp_path / "two.fits")
    assert open_source(f"{tmp_path / 'two.fits'}[OBJ]").num_rows == 3
    assert open_source(f"{tmp_path / 'two.fits'}[1]").num_rows == 3
    with pytest.raises(DataError, match=r"two\.fits: no HDU 'NOPE'"):
        open_source(f"{tmp_path / 'two.fits'}[NOPE]")
    with pytest.raises(DataError, match=r"HDU 0 is a PrimaryHDU, not a table"):
        FitsSource(tmp_path / "two.fits", hdu=0)
    # vector columns, strings, a Quantity and a masked Quantity
    q = QTable({"id": np.arange(4), "v": np.arange(8.0).reshape(4, 2) * u.km,
                "s": ["a", "bb", "c", "d"]})
    q["m"] = MaskedColumn([1.0, 2.0, 3.0, 4.0], mask=[False, True, False, False])
    b = next(iter_batches(q, ["v", "s", "m"]))
    assert b.column("v").type == pa.list_(pa.float64(), 2) and b.column("v")[1].as_py() == [2.0, 3.0]
    assert b.schema.field("v").metadata == {b"unit": b"km"}
    assert b.column("s").to_pylist() == ["a", "bb", "c", "d"] and b.column("m").null_count == 1


def test_parquet_stays_a_parquet_file_and_directories_are_datasets(catalogue, tmp_path):
    """open_parquet of a parquet path is still a pyarrow ParquetFile (the fast path); other
    sources offer the same three things a tokenizer reads."""
    assert isinstance(open_parquet(catalogue["parquet"]), pq.ParquetFile)
    for spec in (catalogue["fits"], catalogue["table"]):
        src = open_parquet(spec)
        assert isinstance(src, Source) and src.metadata.num_rows == 3000
        assert "mag" in src.schema_arrow.names
        require_columns(src, spec, ["id", "mag"])
        with pytest.raises(DataError, match=r"missing column 'nope'; the source has"):
            require_columns(src, spec, ["id", "nope"])
    d = tmp_path / "cubes"
    (d / "b").mkdir(parents=True)
    table = pq.read_table(catalogue["parquet"])
    pq.write_table(table.slice(0, 1000), d / "a.parquet")
    pq.write_table(table.slice(1000), d / "b" / "c.parquet")
    (d / "_SUCCESS").write_text("")
    src = open_source(d)
    assert isinstance(src, ParquetDatasetSource) and src.num_rows == 3000
    assert [p.name for p in src.parts()] == ["a", "b-c"]
    assert [Path(f).name for f in source_list(d)] == ["a.parquet", "c.parquet"]
    ids = pa.Table.from_batches(list(iter_batches(d, ["id"]))).column("id").to_numpy()
    np.testing.assert_array_equal(ids, table.column("id").to_numpy())


def test_clear_errors_name_the_source(tmp_path, catalogue):
    with pytest.raises(DataError, match=r"nope\.fits: file not found"):
        open_source(tmp_path / "nope.fits")
    with pytest.raises(DataError, match=r"ftp://x: unknown source scheme 'ftp'; known: \['hats', 'file'"):
        open_source("ftp://x")
    with pytest.raises(DataError, match=r"hats://.*nowhere: no such catalogue directory"):
        open_source(f"hats://{tmp_path / 'nowhere'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty: directory holds no parquet files"):
        open_source(tmp_path / "empty")
    with pytest.raises(DataError, match=r"cannot read a dict as a data source"):
        open_source({"a": 1})
    with pytest.raises(DataError, match=r"<astropy Table: 3000 rows, 6 columns>: missing column 'r_auto'"):
        list(iter_batches(catalogue["table"], ["id", "r_auto"]))
    with pytest.raises(DataError, match=r"cannot be sent to worker processes"):
        expand_sources([catalogue["table"]])
    with pytest.raises(DataError, match=r"nope\.parquet: file not found"):
        source_list([tmp_path / "nope.parquet"])


def test_hats_catalogue_partitions(hats_catalogue, catalogue):
    """The native HATS reader lists the partitions hats lists; each part records its pixel."""
    hats = pytest.importorskip("hats")
    src = open_source(f"hats://{hats_catalogue}")
    assert isinstance(src, HatsSource) and src.num_rows == 3000
    cat = hats.read_hats(hats_catalogue)
    cat = getattr(cat, "main_catalog", cat)
    assert src.pixels == [(px.order, px.pixel) for px in cat.get_healpix_pixels()]
    assert len(src.pixels) >= 3 and len({o for o, _ in src.pixels}) >= 2  # several orders
    parts = src.parts()
    assert [p.record["healpix"] for p in parts] == [{"order": o, "pixel": p} for o, p in src.pixels]
    assert parts[0].name == "Norder={}_Npix={}".format(*src.pixels[0])
    assert sum(ParquetSource(p.spec).num_rows for p in parts) == 3000
    assert "_healpix_29" in src.columns
    # a plain directory path to the catalogue is recognised as HATS too
    assert isinstance(open_source(hats_catalogue), HatsSource)
    assert [p.spec for p in expand_sources([hats_catalogue])] == [p.spec for p in parts]


def test_hook_register_sources(tmp_path, catalogue, srctoy_plugin, monkeypatch):
    """A plugin registers a CSV source through astromodal_register_sources; every tokenizer
    then trains and encodes .csv files to the same tokens as the parquet file."""
    import pyarrow.csv as pacsv

    from astromodal_core import hookimpl, register_plugin, unregister

    class CsvSource(Source):
        kind = "csv"

        def __init__(self, path):
            self.name = str(path)
            self.table = pacsv.read_csv(path)

        @property
        def schema_arrow(self):
            return self.table.schema

        @property
        def num_rows(self):
            return self.table.num_rows

        def _batches(self, columns, batch_size):
            return iter(self.table.select(columns).to_batches(max_chunksize=batch_size))

    class CsvPlugin:
        @hookimpl
        def astromodal_register_sources(self, register):
            register(SourceKind("csv", open=CsvSource, suffixes=(".csv",), description="comma-separated"))

    table = pq.read_table(catalogue["parquet"]).drop_columns(["flag"])
    pacsv.write_csv(table, tmp_path / "cat.csv")
    register_plugin(CsvPlugin(), "astromodal-csv")
    try:
        src = open_source(tmp_path / "cat.csv")
        assert isinstance(src, CsvSource) and num_rows(tmp_path / "cat.csv") == 3000
        ref_tok = srctoy_plugin.SrcToy(columns=["mag"]).train(catalogue["parquet"])
        tok = srctoy_plugin.SrcToy(columns=["mag"]).train(tmp_path / "cat.csv")  # float64 as text
        assert tok.fingerprint == ref_tok.fingerprint
        a, b = tok.encode(tmp_path / "cat.csv"), ref_tok.encode(catalogue["parquet"])
        np.testing.assert_array_equal(a["tok_src_mag"], b["tok_src_mag"])
        from astromodal_core.registry import get_registry

        assert [(e.name, e.plugin) for e in get_registry().collect("astromodal_register_sources")] == [
            ("csv", "astromodal-csv")]
        # the pipeline sends the path to a worker, which opens it through the plugin again
        parts = expand_sources([tmp_path / "cat.csv"])
        assert [(p.spec, p.name) for p in parts] == [(str(tmp_path / "cat.csv"), "cat.csv")]
        listed = json.loads(CliRunner().invoke(cli, ["plugins", "--json"]).output)
        assert next(p for p in listed if p["name"] == "astromodal-csv")["registered"]["sources"] == ["csv"]
    finally:
        unregister("astromodal-csv")
    # without the plugin a .csv file is read as parquet, as before: a clear error
    with pytest.raises(DataError, match=r"cat\.csv: not a readable parquet file"):
        num_rows(tmp_path / "cat.csv")


def test_a_broken_source_plugin_is_isolated(tmp_path):
    """A plugin whose hook raises is marked broken; its sources are not used, others work."""
    from astromodal_core import hookimpl, register_plugin, unregister
    from astromodal_core.registry import get_registry

    class Broken:
        @hookimpl
        def astromodal_register_sources(self, register):
            raise RuntimeError("no csv today")

    register_plugin(Broken(), "astromodal-broken-src")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            with pytest.raises(DataError, match="unknown source scheme 'csv'"):
                open_source("csv://x")
        assert "astromodal-broken-src" in get_registry().broken
    finally:
        unregister("astromodal-broken-src")


def test_a_lazy_lsdb_catalogue_is_a_source(hats_catalogue, catalogue, srctoy_plugin):
    """An lsdb Catalog (here a query, computed partition by partition) encodes to the tokens of
    the same rows read from the parquet file."""
    lsdb = pytest.importorskip("lsdb")
    from astromodal_core.sources import LsdbSource

    bright = lsdb.open_catalog(hats_catalogue).query("mag < 19")
    src = open_source(bright)
    assert isinstance(src, LsdbSource)
    want = pq.read_table(catalogue["parquet"]).to_pandas().query("mag < 19")
    assert src.num_rows == len(want)
    tok = srctoy_plugin.SrcToy(columns=["mag"]).train(catalogue["parquet"])
    got = tok.encode(bright)
    ref = tok.encode(pa.Table.from_pandas(want, preserve_index=False))
    a, b = np.argsort(got["ids"]), np.argsort(ref["ids"])
    np.testing.assert_array_equal(got["ids"][a], ref["ids"][b])
    np.testing.assert_array_equal(got["tok_src_mag"][a], ref["tok_src_mag"][b])


def test_write_fits_round_trips_lists_vectors_strings_and_nulls(tmp_path):
    """write_fits (how the demo runs from FITS) gives back the same batches: variable-length
    and fixed-size lists, strings, nulls (masked integers, NaN floats, empty lists)."""
    from astromodal_core.sources import write_fits

    t = pa.table({
        "id": pa.array([1, 2, 3], pa.int64()),
        "x": pa.array([1.5, None, 2.5], pa.float32()),
        "k": pa.array([7, None, 9], pa.int32()),
        "flux": pa.array([[1.0, 2.0], [], [3.0, 4.0, 5.0]], pa.list_(pa.float32())),
        "cut": pa.array([[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12]], pa.list_(pa.float64(), 4)),
        "name": pa.array(["a", "bb", None]),
    })
    pq.write_table(t, tmp_path / "t.parquet")
    path = write_fits(tmp_path / "t.parquet", tmp_path / "t.fits")
    back = next(iter_batches(path, t.column_names))
    assert back.column("flux").to_pylist() == [[1.0, 2.0], [], [3.0, 4.0, 5.0]]
    assert back.column("flux").type.value_type == pa.float32()
    assert back.column("cut").type == pa.list_(pa.float64(), 4) and back.column("cut")[2].as_py() == [9, 10, 11, 12]
    assert back.column("k").to_pylist() == [7, None, 9]
    assert np.isnan(back.column("x").to_pylist()[1]) and back.column("x")[0].as_py() == 1.5
    assert back.column("name").to_pylist()[:2] == ["a", "bb"]
