"""`astromodal tokenizers train` / `astromodal encode`: local pool, dask, skipping, atomicity."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from click.testing import CliRunner

from astromodal_core import CodecFormatError, ConfigError, DataError
from astromodal_core.pipeline import (
    DaskEngine,
    LocalEngine,
    encode_files,
    merge_store,
    store_path_for,
    train_tokenizers,
)
from astromodal_core.pipeline_cli import add_commands
from astromodal_core.store import read_token_store, store_metadata
from astromodal_core.tokenizer_set import TokenizerSet

CONFIG = {"tokenizers": {"wise": {"n_bins": 32, "max_values_per_col": 200, "rng_seed": 7}}}


def _cli() -> click.Group:
    @click.group()
    def cli() -> None:
        """test group"""

    add_commands(cli)
    return cli


def _config(tmp_path: Path, config: dict = CONFIG) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_cli_train_then_encode_matches_direct_use(tmp_path, wise_cubes):
    from astromodal_wise import WISETokenizer

    runner = CliRunner()
    cfg = _config(tmp_path)
    res = runner.invoke(_cli(), ["tokenizers", "train", "--config", str(cfg), "--out",
                                 str(tmp_path / "tok"), "--workers", "2", "--quiet", "--json",
                                 *map(str, wise_cubes)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output)
    direct = WISETokenizer(n_bins=32, max_values_per_col=200, rng_seed=7).train(wise_cubes)
    assert summary["files"] == 3
    assert summary["tokenizers"][0]["fingerprint"] == direct.fingerprint
    assert (tmp_path / "tok" / f"wise.{direct.fingerprint}.npz").is_file()

    res = runner.invoke(_cli(), ["encode", "--config", str(cfg), "--tokenizers", str(tmp_path / "tok"),
                                 "--out", str(tmp_path / "store"), "--merged", str(tmp_path / "all.parquet"),
                                 "--workers", "2", "--quiet", "--json", *map(str, wise_cubes)],
                         catch_exceptions=False)
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["encoded"] == 3 and out["skipped"] == 0 and out["rows"] == 300
    for f in wise_cubes:
        ids, cols = read_token_store(store_path_for(tmp_path / "store", f))
        want = direct.encode(f)
        np.testing.assert_array_equal(ids, want["ids"])
        np.testing.assert_array_equal(cols["tok_wise"], want["wise_tokens"])
    meta = store_metadata(tmp_path / "all.parquet")
    assert meta["fingerprints"] == {"tok_wise": direct.fingerprint}
    assert meta["tokenizers"] == {"wise": direct.fingerprint}
    ids, cols = read_token_store(tmp_path / "all.parquet")
    assert len(ids) == 300 and cols["tok_wise"].shape == (300, 4)
    # missing WISE magnitudes (NaN in the datacube) are the mask token, never a real bin
    wise = pq.read_table(wise_cubes[0], columns=["wise_w4"])["wise_w4"].to_numpy()
    first = read_token_store(store_path_for(tmp_path / "store", wise_cubes[0]))[1]["tok_wise"]
    assert np.all(first[np.isnan(wise), 3] == 32) and np.all(first[~np.isnan(wise), 3] < 32)

    # human output, and a re-run skips everything
    res = runner.invoke(_cli(), ["encode", "--config", str(cfg), "--tokenizers", str(tmp_path / "tok"),
                                 "--out", str(tmp_path / "store"), "--quiet", *map(str, wise_cubes)],
                        catch_exceptions=False)
    assert "0 files encoded, 3 skipped" in res.output


def test_rerun_skips_only_unchanged_files(tmp_path, wise_cubes):
    saved = train_tokenizers(CONFIG, wise_cubes, tmp_path / "tok", engine=LocalEngine(1), progress=False)
    assert TokenizerSet.read(tmp_path / "tok").names() == ["wise"] == saved.names()
    first = encode_files(wise_cubes, tmp_path / "tok", tmp_path / "store", engine=LocalEngine(1), progress=False)
    assert [r["status"] for r in first] == ["encoded"] * 3
    # rewrite one input: only that one is encoded again
    table = pq.read_table(wise_cubes[1])
    pq.write_table(table.slice(0, 50), wise_cubes[1])
    again = encode_files(wise_cubes, tmp_path / "tok", tmp_path / "store", engine=LocalEngine(1), progress=False)
    assert [r["status"] for r in again] == ["skipped", "encoded", "skipped"]
    assert again[1]["rows"] == 50
    # a retrained tokenizer (other fingerprint) re-encodes everything
    other = {"tokenizers": {"wise": {"n_bins": 16, "rng_seed": 7}}}
    train_tokenizers(other, wise_cubes, tmp_path / "tok", engine=LocalEngine(1), progress=False)
    third = encode_files(wise_cubes, tmp_path / "tok", tmp_path / "store", engine=LocalEngine(1), progress=False)
    assert [r["status"] for r in third] == ["encoded"] * 3


def test_bad_file_leaves_nothing_half_written(tmp_path, wise_cubes):
    train_tokenizers(CONFIG, wise_cubes, tmp_path / "tok", engine=LocalEngine(1), progress=False)
    bad = tmp_path / "cubes" / "broken.parquet"
    table = pq.read_table(wise_cubes[0])
    w1 = table["wise_w1"].to_numpy().copy()
    w1[4] = np.inf
    pq.write_table(table.set_column(table.column_names.index("wise_w1"), "wise_w1", pa.array(w1)), bad)
    with pytest.raises(DataError, match=r"broken\.parquet: column 'wise_w1', row id"):
        encode_files([wise_cubes[0], bad], tmp_path / "tok", tmp_path / "store",
                     engine=LocalEngine(1), progress=False)
    written = sorted(p.name for p in (tmp_path / "store").iterdir())
    assert written == [store_path_for(tmp_path / "store", wise_cubes[0]).name]  # no temp, no partial


def test_config_errors_name_the_section(tmp_path, wise_cubes):
    with pytest.raises(ConfigError, match=r"tokenizers\.nosuch: no installed plugin"):
        train_tokenizers({"tokenizers": {"nosuch": {}}}, wise_cubes, tmp_path / "tok", progress=False)
    with pytest.raises(ConfigError, match="no tokenizer manifest"):
        encode_files(wise_cubes, tmp_path / "empty", tmp_path / "store", progress=False)
    train_tokenizers(CONFIG, wise_cubes, tmp_path / "tok", engine=LocalEngine(1), progress=False)
    with pytest.raises(ConfigError, match=r"no trained tokenizer for section\(s\) \['scalar'\]"):
        encode_files(wise_cubes, tmp_path / "tok", tmp_path / "store", sections=["scalar"], progress=False)
    with pytest.raises(DataError, match="file not found"):
        encode_files([tmp_path / "nope.parquet"], tmp_path / "tok", tmp_path / "store", progress=False)


def test_dask_cluster_gives_identical_outputs(tmp_path, wise_cubes, monkeypatch):
    """The same per-file tasks on a dask LocalCluster (loopback) give the local run's bytes."""
    from distributed import LocalCluster

    wise_src = Path(__file__).resolve().parents[2] / "docs" / "examples" / "astromodal-wise" / "src"
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(wise_src), os.environ.get("PYTHONPATH", "")]))
    with LocalEngine(2) as engine:
        local = train_tokenizers(CONFIG, wise_cubes, tmp_path / "tok_local", engine=engine, progress=False)
        encode_files(wise_cubes, tmp_path / "tok_local", tmp_path / "store_local", engine=engine,
                     progress=False)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster:
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
        with DaskEngine(cluster.scheduler_address) as engine:
            remote = train_tokenizers(CONFIG, wise_cubes, tmp_path / "tok_dask", engine=engine,
                                      progress=False)
            records = encode_files(wise_cubes, tmp_path / "tok_dask", tmp_path / "store_dask",
                                   engine=engine, progress=False)
    assert [r["status"] for r in records] == ["encoded"] * 3
    assert [s.fingerprint for s in remote] == [s.fingerprint for s in local]
    for f in wise_cubes:
        a = pq.read_table(store_path_for(tmp_path / "store_local", f))
        b = pq.read_table(store_path_for(tmp_path / "store_dask", f))
        assert a.equals(b, check_metadata=True)


def test_merge_refuses_mixed_fingerprints(tmp_path, wise_cubes):
    train_tokenizers(CONFIG, wise_cubes[:1], tmp_path / "tok_a", engine=LocalEngine(1), progress=False)
    encode_files(wise_cubes[:1], tmp_path / "tok_a", tmp_path / "store", engine=LocalEngine(1), progress=False)
    other = {"tokenizers": {"wise": {"n_bins": 8}}}
    train_tokenizers(other, wise_cubes[1:2], tmp_path / "tok_b", engine=LocalEngine(1), progress=False)
    encode_files(wise_cubes[1:2], tmp_path / "tok_b", tmp_path / "store", engine=LocalEngine(1), progress=False)
    with pytest.raises(DataError, match="fingerprints differ"):
        merge_store(tmp_path / "store", tmp_path / "all.parquet")
    assert not (tmp_path / "all.parquet").exists()


def test_manifest_never_imports_and_names_unregistered_tokenizers(tmp_path, wise_cubes):
    """A planted manifest can only name installed tokenizers: an import path is never followed."""
    train_tokenizers(CONFIG, wise_cubes, tmp_path / "tok", engine=LocalEngine(1), progress=False)
    manifest = tmp_path / "tok" / "tokenizers.json"
    data = json.loads(manifest.read_text())
    data["tokenizers"][0]["name"] = "os"
    data["tokenizers"][0]["class"] = "os:system"
    manifest.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=r"tokenizers\.json: names tokenizer 'os', which no installed plugin"):
        encode_files(wise_cubes, tmp_path / "tok", tmp_path / "store", engine=LocalEngine(1), progress=False)
    assert not (tmp_path / "store").exists()
    manifest.write_text("{not json")
    with pytest.raises(CodecFormatError, match=r"tokenizers\.json: not a JSON tokenizer manifest"):
        TokenizerSet.read(tmp_path / "tok")
    manifest.write_text(json.dumps({"format_version": 99, "tokenizers": []}))
    with pytest.raises(CodecFormatError, match="format_version 99 is newer"):
        TokenizerSet.read(tmp_path / "tok")
    manifest.write_text(json.dumps({"tokenizers": [{"name": "wise", "file": "../../etc/passwd",
                                                     "fingerprint": "0" * 16}]}))
    with pytest.raises(CodecFormatError, match="not a plain file name"):
        TokenizerSet.read(tmp_path / "tok")


def test_failed_retrain_leaves_the_old_set(tmp_path, wise_cubes):
    """A retrain whose later section fails leaves the previous set whole and loadable."""
    first = train_tokenizers(CONFIG, wise_cubes, tmp_path / "tok", engine=LocalEngine(1), progress=False)
    before = sorted(p.name for p in (tmp_path / "tok").iterdir())
    # the second section (S-PLUS scalars) fails on these WISE-only cubes, after wise trained
    bad = {"tokenizers": {"wise": {"n_bins": 8}, "scalar": {"n_bins": 8}}}
    with pytest.raises(DataError, match="missing column"):
        train_tokenizers(bad, wise_cubes, tmp_path / "tok", engine=LocalEngine(1), progress=False)
    # a failure inside training (a file whose column is missing) after the first section trained
    broken = tmp_path / "cubes" / "nocol.parquet"
    pq.write_table(pa.table({"id": np.arange(3)}), broken)
    with pytest.raises(DataError, match="nocol.parquet: missing column"):
        train_tokenizers(CONFIG, [*wise_cubes, broken], tmp_path / "tok", engine=LocalEngine(1), progress=False)
    assert sorted(p.name for p in (tmp_path / "tok").iterdir()) == before
    assert TokenizerSet.read(tmp_path / "tok").fingerprints() == first.fingerprints()
    # a successful retrain replaces the member file and removes the old one
    other = train_tokenizers({"tokenizers": {"wise": {"n_bins": 8}}}, wise_cubes, tmp_path / "tok",
                             engine=LocalEngine(1), progress=False)
    files = sorted(p.name for p in (tmp_path / "tok").iterdir() if not p.name.startswith("."))
    assert files == sorted(["tokenizers.json", f"wise.{other.fingerprints()['wise']}.npz"])


def test_edited_manifest_keys_are_refused(tmp_path, wise_cubes):
    train_tokenizers(CONFIG, wise_cubes, tmp_path / "tok", engine=LocalEngine(1), progress=False)
    manifest = tmp_path / "tok" / "tokenizers.json"
    data = json.loads(manifest.read_text())
    data["tokenizers"][0]["token_keys"][0]["vocab_size"] = 1025
    manifest.write_text(json.dumps(data))
    with pytest.raises(CodecFormatError, match="token keys listed for 'wise' differ from those of its fitted state"):
        TokenizerSet.read(tmp_path / "tok").tokenizers()
