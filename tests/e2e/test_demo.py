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
def no_demo_tokenizer():
    """An installed tokenizer whose plugin registers no demo columns: the demo skips it."""

    class NoDemoTokenizer:
        pass

    class NoDemo:
        @hookimpl
        def astromodal_register_tokenizers(self, register):
            register("nodemo", NoDemoTokenizer)

    register_plugin(NoDemo(), "astromodal-nodemo-test")
    yield
    unregister("astromodal-nodemo-test")


def _cli() -> click.Group:
    from astromodal_demo import plugin

    @click.group()
    def cli() -> None:
        """test group"""

    plugin.astromodal_register_commands(cli)
    return cli


def test_demo_end_to_end(tmp_path):
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
    emb = summary["model"]["embedding"]
    assert 0 <= emb["class_agreement"] <= 1 and 0 <= emb["pca"]["class_agreement"] <= 1
    assert emb["pca"]["components"] >= 1
    # DESI spectra are model inputs (level_shape tokens): redshift from each input set
    by_input = summary["model"]["redshift_by_inputs"]
    assert list(by_input["inputs"]) == ["photometry", "spectra", "spectra + photometry"]
    assert 0 < by_input["inputs"]["spectra"]["n"] <= by_input["rows"]
    assert meta["token_keys"]["tok_spectrum_desi_b"].max_length == 86  # 2751 pixels / 32
    assert "### Redshift by input" in (out / "report.md").read_text()
    for png in ("spectrum_reconstruction.png", "cutouts_reconstruction.png", "redshift_prediction.png",
                "token_histograms.png"):
        assert png in summary["plots"]
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (out / "report.md").read_text()
    assert f"{tasks['tok_z']['model']['sigma_nmad']:.4f}" in report
    assert "## Token usage" in report and "![redshift_prediction.png]" in report
    assert f"{100 * emb['pca']['class_agreement']:.1f}% share the class" in report  # the PCA baseline


def test_demo_without_the_model(tmp_path, no_demo_tokenizer):
    """... and from the datacube as FITS tables (--format fits)."""
    out = tmp_path / "report"
    with pytest.warns(RuntimeWarning, match="demo: skipping tokenizer 'nodemo' of plugin "
                      "'astromodal-nodemo-test': that plugin registers no demo columns"):
        res = CliRunner().invoke(_cli(), ["demo", "--out", str(out), "--n", "80", "--files", "1",
                                          "--cutout-size", "16", "--no-model", "--workers", "1",
                                          "--format", "fits", "--quiet", "--json"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)  # progress bars of other code may reach stderr
    assert summary["skipped_tokenizers"] == ["nodemo"]
    assert set(summary["tokenizers"]) == {"scalar", "spectrum", "image"}
    assert "skipped" in summary["model"] and "redshift_prediction.png" not in summary["plots"]
    assert (out / "report.md").is_file() and (out / "tokens.parquet").is_file()
    assert summary["datacube"]["format"] == "fits"
    assert summary["datacube"]["inputs"] == [str(out / "datacube" / "demo_datacube_000.fits")]
    assert store_metadata(out / "store" / "demo_datacube_000.tokens.parquet")["source"]["path"] == str(
        (out / "datacube" / "demo_datacube_000.fits").resolve())


def test_hook_register_demo_columns():
    from astromodal_demo.datacube import installed_contributions
    from astromodal_demo.sky import DemoColumns

    def make(sky):
        """Zeros for every object."""
        return {"zeros": np.zeros(len(sky))}

    class Columns:
        @hookimpl(optionalhook=True)
        def astromodal_register_demo_columns(self, register):
            register(make)

    register_plugin(Columns(), "astromodal-columns-test")
    try:
        mine = [c for c in installed_contributions() if c.plugin == "astromodal-columns-test"]
        assert mine == [DemoColumns("astromodal-columns-test", make, "Zeros for every object.",
                                    "astromodal-columns-test")]
        # the survey plugins wire the hook in their plugin.py
        plugins = {c.plugin for c in installed_contributions()}
        assert {"astromodal-splus", "astromodal-spectra", "astromodal-image"} <= plugins
    finally:
        unregister("astromodal-columns-test")


def test_a_plugin_failing_in_the_demo_hook_is_broken_and_skipped():
    from astromodal_demo.datacube import installed_contributions

    from astromodal_core import get_registry

    class Fails:
        @hookimpl(optionalhook=True)
        def astromodal_register_demo_columns(self, register):
            raise ImportError("no module named 'fitsio'")

    register_plugin(Fails(), "astromodal-fails-test")
    try:
        with pytest.warns(RuntimeWarning, match="'astromodal-fails-test' failed to load: "
                          "astromodal_register_demo_columns raised ImportError"):
            contributions = installed_contributions()
        assert "astromodal-fails-test" not in {c.plugin for c in contributions}
        assert "astromodal-splus" in {c.plugin for c in contributions}
        assert get_registry().plugins["astromodal-fails-test"]["status"] == "broken"
    finally:
        unregister("astromodal-fails-test")


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--n", "-5"], ["'--n'", "-5 is not in the range x>=1"]),
        (["--files", "0"], ["'--files'", "0 is not in the range x>=1"]),
        (["--n", "3", "--files", "5"], ["'--files'", "5 files for 3 objects"]),
        (["--workers", "0"], ["'--workers'", "0 is not in the range"]),
        (["--out", "{file}"], ["'--out'", "{file}", "is a file"]),
    ],
    ids=["negative-n", "zero-files", "more-files-than-objects", "zero-workers", "out-is-a-file"],
)
def test_demo_refuses_bad_arguments_in_one_line(tmp_path, capsys, args, named):
    from astromodal_core.cli import main

    taken = tmp_path / "taken"
    taken.write_text("x")
    args = [a.replace("{file}", str(taken)) for a in args]
    with pytest.raises(SystemExit) as info:
        main(["demo", "--quiet", *args])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert info.value.code == 2 and "Traceback" not in err
    assert len(lines) == 1 and lines[0].startswith("Error: "), err
    for what in named:
        assert what.replace("{file}", str(taken)) in lines[0]
    assert not (tmp_path / "demo_output").exists()


def test_model_evaluation_helpers(tmp_path):
    from astromodal_demo.model_eval import (
        holdout_split,
        mag_metrics,
        pca_features,
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

    # PCA baseline: [a, 2a, b] holds two directions (2/3 and 1/3 of the standardised variance)
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 500))
    feats = pca_features(np.column_stack([a, 2 * a + 1e-6 * b, b]))
    assert feats.shape == (500, 2)
    np.testing.assert_allclose(feats.var(0) / 3, [2 / 3, 1 / 3], atol=0.05)
