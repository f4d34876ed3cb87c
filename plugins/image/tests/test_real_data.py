"""Real SDSS cutouts through a short training run, and files written before the recipe."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from astromodal_image.tokenizer import ImageTokenizer

from astromodal_core import CodecFormatError
from astromodal_core.serialize import load_npz, save_npz

DATA = Path(__file__).parent / "data"
LEGACY = DATA / "legacy_v1"


def _sdss_field() -> np.ndarray:
    fits = pytest.importorskip("astropy.io.fits")
    planes = [fits.getdata(DATA / "sdss" / f"reprojected_sdss_{b}.fits.bz2").astype(np.float32) for b in "gri"]
    return np.stack(planes)[:, 2:, :]  # rows 0-1 are blank in r and i


def _tiles(field, size, stride, x0, x1, y1=None):
    h = field.shape[1] if y1 is None else y1
    return np.stack([field[:, y : y + size, x : x + size] for y in range(0, h - size + 1, stride)
                     for x in range(x0, x1 - size + 1, stride)])


def test_real_sdss_cutouts_train_and_keep_the_sky_at_the_noise():
    """A short run on real g, r, i cutouts, held out spatially: sources beat a constant image,
    the sky stays at the noise (the full measurement is benchmarks/bench_image_quality.py)."""
    field = _sdss_field()
    train = _tiles(field, 16, 16, 0, 320, y1=256)
    test = _tiles(field, 16, 16, 352, 512, y1=256)
    tok = ImageTokenizer(cutout_size=16, bands=["g", "r", "i"], channels=(8, 16), codebook_size=64,
                         epochs=2, min_epoch_steps=60, max_cutouts=len(train))
    tok.fit_arrays(train)
    assert len(tok.val_history) == 2 and tok.best_epoch == 1 + int(np.argmin(tok.val_history))
    recon = tok.decode(tok.encode_array(test)[0])
    region = field[:, :256, :320]
    sky = np.median(region, axis=(1, 2))[None, :, None, None]
    sigma = 1.4826 * np.median(np.abs(region - sky[0]), axis=(1, 2))[None, :, None, None]
    z = (test - sky) / sigma
    err = (recon - test) / sigma
    src = z > 5
    quiet = np.abs(z).max(axis=(1, 2, 3)) < 6  # held-out cutouts of pure sky
    assert src.sum() > 100 and quiet.sum() > 10
    assert np.sqrt(np.mean(err[src] ** 2)) < np.sqrt(np.mean(z[src] ** 2))
    sky_rms = np.sqrt(np.mean(err[quiet] ** 2))
    noise = np.sqrt(np.mean(z[quiet] ** 2))
    assert 0.8 * noise < sky_rms < 1.3 * noise


def test_files_written_before_the_recipe_load_with_the_same_tokens(tmp_path):
    want = np.load(LEGACY / "expected.npz")
    tok = ImageTokenizer.load(LEGACY / "image_tokenizer_config.npz")
    tokens, latents = tok.encode_array(want["flux"])
    np.testing.assert_array_equal(tokens, want["tokens"])
    np.testing.assert_allclose(latents, want["latents"], rtol=1e-5, atol=1e-6)
    # the file recorded no recipe: it loads with the defaults and saves again as it was
    assert tok.val_history == [] and tok.best_epoch is None and tok.stretch == 3.0
    assert tok.fingerprint == str(want["fingerprint"])
    (tmp_path / "again").mkdir()
    tok.save(tmp_path / "again" / "image_tokenizer_config.npz")
    assert load_npz(tmp_path / "again" / "image_tokenizer_config.npz")[0] == \
        load_npz(LEGACY / "image_tokenizer_config.npz")[0]
    # the torch state dict: on the class and into an instance
    pt = ImageTokenizer.load(LEGACY / "autoencoder.pt")
    np.testing.assert_array_equal(pt.encode_array(want["flux"])[0], want["tokens"])
    assert pt.fingerprint == str(want["fingerprint"])
    inst = ImageTokenizer(cutout_size=16, bands=["G", "R"], channels=(4,), codebook_size=8)
    inst.load(LEGACY / "autoencoder.pt")
    np.testing.assert_array_equal(inst.encode_array(want["flux"])[0], want["tokens"])
    # a damaged training record is a CodecFormatError naming the field
    config, arrays, _ = load_npz(LEGACY / "image_tokenizer_config.npz")
    for f in LEGACY.glob("image_tokenizer_config.*.safetensors"):  # companions, named in the config
        (tmp_path / f.name).write_bytes(f.read_bytes())
    for field, value in (("val_history", ["x"]), ("best_epoch", -1)):
        bad = tmp_path / f"bad_{field}.npz"
        save_npz(bad, {**config, field: value}, arrays, kind="image_tokenizer")
        with pytest.raises(CodecFormatError, match=rf"bad_{field}\.npz: .*'{field}'"):
            ImageTokenizer.load(bad)


def test_a_trained_file_records_its_recipe(trained, tmp_path):
    trained.save(tmp_path / "t.npz")
    config, _, _ = load_npz(tmp_path / "t.npz")
    for key in ("stretch", "source_weight", "colour_weight", "flux_weight_cap", "augment", "val_fraction", "patience",
                "schedule", "min_epoch_steps"):
        assert config[key] == trained.settings()[key]
    assert config["val_history"] == trained.val_history and config["best_epoch"] == trained.best_epoch
    again = ImageTokenizer.load(tmp_path / "t.npz")
    assert again.fingerprint == trained.fingerprint and again.best_epoch == trained.best_epoch
    assert json.loads(json.dumps(again.settings())) == again.settings()
