"""`astromodal demo` end to end on a tiny sky: datacube, every tokenizer, store, model, report."""

from __future__ import annotations

import json

import click
import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from astromodal_core import hookimpl, register_plugin, unregister
from astromodal_core.store import read_token_store, store_metadata


@pytest.fixture
def demo_columns_registered(survey_demo_columns):
    """The survey plugins' demo columns through the hook (as their plugin.py will wire them)."""
    from astromodal_core import get_registry

    have = {e.obj.name if hasattr(e.obj, "name") else e.plugin for e in get_registry().demo_columns}
    missing = [c for c in survey_demo_columns if c.name not in have]

    class Wiring:
        @hookimpl
        def astromodal_register_demo_columns(self, register):
            for c in missing:
                register(c)

    register_plugin(Wiring(), "demo-columns-test")
    yield
    unregister("demo-columns-test")


def _cli() -> click.Group:
    from astromodal_demo import plugin

    @click.group()
    def cli() -> None:
        """test group"""

    plugin.astromodal_register_commands(cli)
    return cli


def test_demo_end_to_end(tmp_path, demo_columns_registered):
    out = tmp_path / "report"
    res = CliRunner().invoke(_cli(), ["demo", "--out", str(out), "--n", "160", "--files", "2",
                                      "--cutout-size", "16", "--steps", "6", "--workers", "1",
                                      "--quiet"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "[1/6] datacube: 160 objects" in res.output and "total time" in res.output
    summary = json.loads((out / "summary.json").read_text())

    # the datacube: every object, truth columns, the real samples mixed in
    files = summary["datacube"]["files"]
    table = pq.read_table(files, columns=["id", "true_class", "real_source", "mag_pstotal_r"])
    assert table.num_rows == 160 == sum(summary["datacube"]["classes"].values())
    sources = [s for s in table["real_source"].to_pylist() if s]
    assert sum(s.startswith("desi:") for s in sources) == 2 and sum(s.startswith("gaia_xp:") for s in sources) == 3

    # every installed tokenizer trained; the store holds every row and its recorded keys
    assert {"scalar", "spectrum", "image"} <= set(summary["tokenizers"])
    ids, cols = read_token_store(out / "tokens.parquet")
    assert len(ids) == 160 and set(cols) == set(summary["token_usage"])
    meta = store_metadata(out / "tokens.parquet")
    # fingerprints are keyed by token key: the fingerprint of the tokenizer that made it
    assert set(meta["fingerprints"]) == set(cols)
    assert set(meta["fingerprints"].values()) == {v["fingerprint"] for v in summary["tokenizers"].values()}

    # the report's numbers are this run's measurements: recompute two of them from the store
    usage = summary["token_usage"]["tok_mag_pstotal_r"]
    r = cols["tok_mag_pstotal_r"]
    key = meta["token_keys"]["tok_mag_pstotal_r"]
    assert usage["rows_with_data"] == int(np.sum(r != key.mask_token))
    assert usage["distinct"] == len(np.unique(r[r != key.mask_token]))
    assert summary["reconstruction"]["scalar"]["mask_exact"] is True
    assert 0 <= summary["reconstruction"]["scalar"]["summary"]["magnitudes (mag)"] < 0.5

    # the model part, the baseline and the plots
    tasks = summary["model"]["tasks"]
    assert set(tasks) == {"tok_z", "tok_mag_pstotal_j0660"}
    assert tasks["tok_z"]["model"]["n"] == tasks["tok_z"]["knn"]["n"] == tasks["tok_z"]["knn_catalogue"]["n"] > 0
    # binned keys are ordinal (the model's value features apply), codebook keys are not
    assert key.ordinal and meta["token_keys"]["tok_z"].ordinal
    assert not meta["token_keys"]["tok_image_splus"].ordinal
    assert 0 <= summary["model"]["embedding"]["class_agreement"] <= 1
    for png in ("spectrum_reconstruction.png", "cutouts_reconstruction.png", "redshift_prediction.png",
                "token_histograms.png"):
        assert png in summary["plots"]
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (out / "report.md").read_text()
    assert f"{tasks['tok_z']['model']['sigma_nmad']:.4f}" in report
    assert "## Token usage" in report and "![redshift_prediction.png]" in report


def test_demo_without_the_model(tmp_path, demo_columns_registered):
    out = tmp_path / "report"
    res = CliRunner().invoke(_cli(), ["demo", "--out", str(out), "--n", "80", "--files", "1",
                                      "--cutout-size", "16", "--no-model", "--workers", "1",
                                      "--quiet", "--json"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output)
    assert "skipped" in summary["model"] and "redshift_prediction.png" not in summary["plots"]
    assert (out / "report.md").is_file() and (out / "tokens.parquet").is_file()


def test_model_evaluation_helpers(tmp_path):
    from astromodal_demo.model_eval import (
        holdout_split,
        mag_metrics,
        write_masked_stores,
        z_metrics,
    )

    from astromodal_core import TokenKey
    from astromodal_core.store import write_token_store

    ids = np.arange(1000, 3000, dtype=np.int64)
    split = holdout_split(ids, seed=0)
    assert 0.15 < split.mean() < 0.25
    np.testing.assert_array_equal(split[::-1], holdout_split(ids[::-1], seed=0))  # order-free

    keys = [TokenKey("tok_z", 9, mask_token=8), TokenKey("tok_r", 9, mask_token=8)]
    cols = {"tok_z": (ids % 8).astype(np.uint16), "tok_r": ((ids + 1) % 8).astype(np.uint16)}
    write_token_store(tmp_path / "s.parquet", ids, cols, keys, fingerprints={"scalar": "f"})
    test_ids = ids[split]
    write_masked_stores(tmp_path / "s.parquet", tmp_path / "train.parquet", tmp_path / "test.parquet",
                        ["tok_z"], set(test_ids.tolist()))
    tr_ids, tr = read_token_store(tmp_path / "train.parquet")
    te_ids, te = read_token_store(tmp_path / "test.parquet")
    np.testing.assert_array_equal(tr_ids, ids)
    assert np.all(tr["tok_z"][split] == 8) and np.array_equal(tr["tok_z"][~split], cols["tok_z"][~split])
    np.testing.assert_array_equal(tr["tok_r"], cols["tok_r"])  # other keys untouched
    np.testing.assert_array_equal(te_ids, test_ids)
    np.testing.assert_array_equal(te["tok_z"], cols["tok_z"][split])
    assert store_metadata(tmp_path / "train.parquet")["fingerprints"] == {"scalar": "f"}

    m = z_metrics(np.array([0.1, 0.2, 1.0]), np.array([0.1, 0.25, 0.5]))
    assert m["outliers"] == pytest.approx(1 / 3) and m["n"] == 3
    assert mag_metrics(np.array([18.0, 19.5]), np.array([18.5, 19.5]))["median_abs"] == pytest.approx(0.25)
