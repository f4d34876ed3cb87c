"""HATS catalogues through the pipeline: one store part per HEALPix partition recording its
pixel, on a local dask cluster by default, resuming after a worker is killed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from click.testing import CliRunner

from astromodal_core.pipeline import LocalEngine, encode_files, merge_store, train_tokenizers
from astromodal_core.sources import open_source
from astromodal_core.store import read_token_store, store_metadata

CONFIG = {"tokenizers": {"srctoy": {"columns": ["mag", "flux"], "n_bins": 16}}}
KEYS = ["tok_src_mag", "tok_src_flux"]


def _by_id(ids: np.ndarray, cols: dict) -> dict[str, np.ndarray]:
    order = np.argsort(ids)
    return {"ids": ids[order], **{k: np.asarray(cols[k])[order] for k in KEYS}}


def _check_store(store: Path, hats_catalogue: Path, reference: dict[str, np.ndarray]) -> None:
    """One part per partition, each recording its pixel; all parts together: the reference."""
    src = open_source(hats_catalogue)
    parts = sorted(store.glob("*.tokens.parquet"))
    assert [p.name for p in parts] == sorted(f"Norder={o}_Npix={p}.tokens.parquet" for o, p in src.pixels)
    for p in parts:
        meta = store_metadata(p)
        o, pix = meta["healpix"]["order"], meta["healpix"]["pixel"]
        assert p.name == f"Norder={o}_Npix={pix}.tokens.parquet"
        assert meta["catalog"] == str(src.path.resolve())
        assert pq.ParquetFile(p).metadata.num_rows == pq.ParquetFile(src.files[src.pixels.index((o, pix))]).metadata.num_rows
    merged = merge_store(store, store.parent / f"{store.name}.merged.parquet")
    got = _by_id(*read_token_store(merged))
    for k in ["ids", *KEYS]:
        np.testing.assert_array_equal(got[k], reference[k], err_msg=k)


@pytest.fixture
def trained(tmp_path, catalogue, hats_catalogue, srctoy_plugin):
    """The fitted set trained on the HATS catalogue (partition by partition), and the tokens of
    the same tokenizer encoding the parquet file in this process."""
    tset = train_tokenizers(CONFIG, [f"hats://{hats_catalogue}"], tmp_path / "tok",
                            engine=LocalEngine(1), progress=False)
    direct = srctoy_plugin.SrcToy(columns=["mag", "flux"], n_bins=16).train(catalogue["parquet"])
    assert tset.fingerprints() == {"srctoy": direct.fingerprint}  # same state as the one file
    enc = direct.encode(catalogue["parquet"])
    return tmp_path / "tok", _by_id(enc["ids"], enc)


def test_encode_hats_one_part_per_partition(tmp_path, hats_catalogue, trained):
    tokdir, reference = trained
    records = encode_files([f"hats://{hats_catalogue}"], tokdir, tmp_path / "store",
                           engine=LocalEngine(1), progress=False)
    pixels = open_source(hats_catalogue).pixels
    assert [(r["healpix"]["order"], r["healpix"]["pixel"]) for r in records] == pixels
    assert {r["status"] for r in records} == {"encoded"} and sum(r["rows"] for r in records) == 3000
    _check_store(tmp_path / "store", hats_catalogue, reference)
    again = encode_files([hats_catalogue], tokdir, tmp_path / "store", engine=LocalEngine(1), progress=False)
    assert {r["status"] for r in again} == {"skipped"} and "healpix" in again[0]


def test_cli_encodes_hats_on_a_local_dask_cluster_and_resumes_after_a_killed_worker(
        tmp_path, hats_catalogue, trained, monkeypatch):
    """`astromodal encode --source hats://PATH` starts a local dask cluster; a worker killed
    after two partitions stops the run (dask may not retry: allowed-failures 0) with an error
    naming the partition; the re-run skips the finished partitions and encodes the others."""
    dask = pytest.importorskip("dask")
    pytest.importorskip("distributed")
    from astromodal_core.cli import cli

    tokdir, reference = trained
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(CONFIG))
    store, marker = tmp_path / "store", tmp_path / "killed"
    store.mkdir()
    monkeypatch.setenv("ASTROMODAL_TEST_KILL", f"{store}:2:{marker}")
    args = ["encode", "--config", str(cfg), "--tokenizers", str(tokdir), "--out", str(store),
            "--workers", "1", "--quiet", "--json", "--source", f"hats://{hats_catalogue}"]
    runner = CliRunner()
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        first = runner.invoke(cli, args)
    assert marker.exists(), first.output  # the worker was killed
    assert first.exit_code != 0
    assert "a dask worker died (killed or out of memory) while running" in str(first.exception)
    assert "Npix=" in str(first.exception)
    done = {p.name for p in store.glob("*.tokens.parquet")}
    n_parts = len(open_source(hats_catalogue).pixels)
    assert 2 <= len(done) < n_parts
    second = runner.invoke(cli, args, catch_exceptions=False)
    assert second.exit_code == 0, second.output
    out = json.loads(second.output)
    skipped = {Path(r["out"]).name for r in out["files"] if r["status"] == "skipped"}
    assert skipped == done and out["encoded"] == n_parts - len(done) and out["rows"] == 3000
    _check_store(store, hats_catalogue, reference)
    # human output names each partition's pixel
    third = runner.invoke(cli, args[:-4] + ["--source", f"hats://{hats_catalogue}"], catch_exceptions=False)
    assert f"0 files encoded, {n_parts} skipped" in third.output and "(order " in third.output
