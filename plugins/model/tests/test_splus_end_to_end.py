"""End to end with the real S-PLUS ScalarTokenizer: train it, encode a store, train the model,
and run ``astromodal predict --tokenizer scalar=PATH`` (values from ``token_values``) through the
real CLI group."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from astromodal_core.cli import _load_plugin_commands, cli

ScalarTokenizer = pytest.importorskip("astromodal_splus").ScalarTokenizer
pytestmark = pytest.mark.skipif(
    not hasattr(ScalarTokenizer, "token_values"),
    reason="ScalarTokenizer predates the value protocol (token_values) of the Tokenizer base",
)

COLUMNS = ["mag_pstotal_g", "mag_pstotal_r", "mag_pstotal_i", "z"]


def _catalogue(n: int, seed: int, first_id: int) -> dict[str, np.ndarray]:
    """Magnitudes plus a redshift that grows with r (rounded, so z uses few bins)."""
    g = np.random.default_rng(seed)
    r = g.uniform(15.0, 21.0, n)
    gr = g.uniform(0.0, 1.5, n)
    return {
        "id": np.arange(first_id, first_id + n, dtype=np.int64),
        "mag_pstotal_g": r + gr,
        "mag_pstotal_r": r,
        "mag_pstotal_i": r - 0.3 * gr + g.normal(0, 0.02, n),
        "z": np.round(0.1 * (r - 14.0), 1),
    }


def test_predict_redshift_with_the_scalar_tokenizer_through_the_cli(tmp_path, one_thread):
    from astromodal_model import train_model

    train_cat, test_cat = _catalogue(1600, 0, 0), _catalogue(200, 1, 100_000)
    pq.write_table(pa.table(train_cat), tmp_path / "train.parquet")
    pq.write_table(pa.table(test_cat), tmp_path / "test.parquet")
    tok = ScalarTokenizer(n_bins=16, scalar_columns=COLUMNS, apply_magerr_filter=False, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # z uses fewer bins than n_bins, on purpose
        tok.train([tmp_path / "train.parquet"])
    assert tok.effective_bins["z"] < 16  # ids >= effective bins must get no probability
    tok.save(tmp_path / "scalar_tokenizer_config.npz")
    train_store = tok.encode_to_store(tmp_path / "train.parquet", tmp_path / "train_tokens.parquet", progress=False)
    test_store = tok.encode_to_store(tmp_path / "test.parquet", tmp_path / "test_tokens.parquet", progress=False)

    config = {
        "model": {"preset": "tiny", "dim": 32},
        "train": {
            "steps": 100, "batch_size": 32, "lr": 5e-3, "warmup_steps": 10, "input_budget": 3,
            "target_budget": 1, "val_fraction": 0.0, "checkpoint_every": 1000, "seed": 0,
        },
    }
    train_model(train_store, config, tmp_path / "run", progress=False)

    _load_plugin_commands()
    r = CliRunner().invoke(cli, [
        "predict", "--tokens", str(test_store), "--model", str(tmp_path / "run" / "model"),
        "--target", "tok_z", "--tokenizer", f"scalar={tmp_path / 'scalar_tokenizer_config.npz'}",
        "--out", str(tmp_path / "pred.parquet"), "--quiet", "--json",
    ])
    assert r.exit_code == 0, (r.output, r.exception)
    summary = json.loads(r.output)
    assert summary["rows"] == 200 and summary["columns"] == ["id", "token", "prob", "mean", "std", "median"]
    pred = pq.read_table(tmp_path / "pred.parquet")
    assert np.array_equal(pred.column("id").to_numpy(), test_cat["id"])
    mean, std = pred.column("mean").to_numpy(), pred.column("std").to_numpy()
    assert np.isfinite(mean).all() and np.isfinite(std).all() and (std > 0).all()
    assert (pred.column("token").to_numpy() < tok.effective_bins["z"]).all()
    z = tok.token_values("tok_z")
    assert mean.min() >= np.nanmin(z) and mean.max() <= np.nanmax(z)
    truth = test_cat["z"]
    mae_model = np.abs(mean - truth).mean()
    mae_median = np.abs(np.median(train_cat["z"]) - truth).mean()
    assert mae_model < 0.5 * mae_median, (mae_model, mae_median)  # z is learnt from the magnitudes
