"""The ``astromodal image-train`` command."""

from __future__ import annotations

import json

import numpy as np
from astromodal_image.cli import image_train
from astromodal_image.tokenizer import ImageTokenizer
from click.testing import CliRunner


def test_image_train_json_and_human(tmp_path, cube):
    data = tmp_path / "c.parquet"
    cube(data, 48, seed=11, size=16, bands=["G", "R"])
    out = tmp_path / "tok_config.npz"
    short = tmp_path / "short.yaml"  # settings without a flag come from a config file
    short.write_text("tokenizers:\n  image:\n    min_epoch_steps: 4\n")
    args = [str(data), "--out", str(out), "--pt", str(tmp_path / "ae.pt"), "--cutout-size", "16",
            "--bands", "G,R", "--channels", "8", "--codebook-size", "8", "--epochs", "2",
            "--batch-size", "16", "--config", str(short), "--quiet"]
    res = CliRunner().invoke(image_train, [*args, "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output)
    assert summary["grid"] == [8, 8] and summary["codebook_size"] == 8
    assert len(summary["loss_history"]) == 2
    # 48 cutouts: 4 held out for validation, the kept epoch is the best of the two
    assert len(summary["val_loss_history"]) == 2
    assert summary["best_epoch"] == 1 + int(np.argmin(summary["val_loss_history"]))
    tok = ImageTokenizer.load(out)
    assert tok.fingerprint == summary["fingerprint"] and tok.bands == ["G", "R"]
    assert ImageTokenizer.load(tmp_path / "ae.pt").fingerprint == summary["fingerprint"]
    cfg = tmp_path / "config.yaml"
    cfg.write_text("tokenizers:\n  image:\n    cutout_size: 16\n    bands: [G, R]\n    channels: [8]\n"
                   "    codebook_size: 8\n    epochs: 1\n    min_epoch_steps: 4\n")
    res = CliRunner().invoke(image_train, [str(data), "--config", str(cfg), "--out", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    assert "loss per epoch:" in res.output and "tok_image_splus: grid 8x8, vocab 9 (mask 8)" in res.output
    assert "validation loss per epoch: " in res.output and "kept epoch 1" in res.output
    assert np.asarray(ImageTokenizer.load(out).history).shape == (1,)


def test_image_train_reports_bad_input(tmp_path):
    bad = tmp_path / "empty.parquet"
    bad.write_bytes(b"")
    res = CliRunner().invoke(image_train, [str(bad), "--cutout-size", "16", "--quiet"])
    assert res.exit_code != 0
    assert "empty file" in str(res.exception)
