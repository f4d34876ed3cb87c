"""Issue 12: blank and absurd pixels, non-finite latents, byte-reproducible saves, checked state."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from astromodal_image import cutout_table, iter_cutouts, write_cutouts
from astromodal_image.kernels import asinh_compress
from astromodal_image.storage import BLANK_LIMIT, blank_to_nan
from astromodal_image.synthetic import synthetic_cutouts
from astromodal_image.tokenizer import ImageTokenizer

from astromodal_core import CodecFormatError, DataError

BANDS = ["U", "G", "R"]
SIZE = 32


def test_blank_values_read_as_missing(tmp_path):
    flux = np.random.default_rng(1).normal(size=(3, 2, 4, 4)).astype(np.float32)
    flux[0, 1, 0, 0] = -1e30  # a FITS fill value
    flux[1, 0, 2, 2] = 1e20  # exactly the limit: blank
    flux[2, 0, 1, 1] = 9e19  # below the limit: a (bright) pixel
    path = tmp_path / "b.parquet"
    write_cutouts(path, cutout_table(np.arange(3), flux, ["G", "R"]))
    (_, out), = list(iter_cutouts(path, ["G", "R"], 4))
    assert np.isnan(out[0, 1, 0, 0]) and np.isnan(out[1, 0, 2, 2]) and out[2, 0, 1, 1] == np.float32(9e19)
    assert np.isnan(out).sum() == 2
    # float64 columns: values beyond float32's range are blank too, never inf
    values = flux.astype(np.float64)
    values[2, 1, 3, 3] = 1e300
    table = pa.table({"id": np.arange(3)} | {
        f"splus_cut_{b}": pa.array(list(values[:, j].reshape(3, -1)), pa.list_(pa.float64(), 16))
        for j, b in enumerate(["G", "R"])})
    pq.write_table(table, tmp_path / "f64.parquet")
    (_, out), = list(iter_cutouts(tmp_path / "f64.parquet", ["G", "R"], 4))
    assert np.isnan(out[2, 1, 3, 3]) and np.isnan(out).sum() == 3
    x = np.array([1.0, -2e20, np.inf, np.nan, 3e38], np.float32)
    got = blank_to_nan(x)
    assert np.isnan(got[[1, 3, 4]]).all() and got[0] == 1.0 and got[2] == np.inf
    assert x[1] == np.float32(-2e20)  # the input is left alone
    assert BLANK_LIMIT == 1e20


def test_blank_pixels_are_masked_like_nan_and_a_blank_row_is_the_mask_token(trained, tmp_path):
    flux = synthetic_cutouts(4, 3, SIZE, seed=21)
    blank = flux.copy()
    blank[0, 1, :6, :6] = -1e30
    blank[1, 2] = 1e25
    blank[2] = -1e30
    nan = blank.copy()
    nan[np.abs(nan) >= 1e20] = np.nan
    path = tmp_path / "blank.parquet"
    write_cutouts(path, cutout_table(np.arange(4), blank, BANDS))
    r = trained.encode(path)
    want_tokens, want_latents = trained.encode_array(nan)
    np.testing.assert_array_equal(r["image_tokens"], want_tokens)
    assert (r["image_tokens"][2] == trained.mask_token).all() and np.isnan(r["image_latents"][2]).all()
    assert np.isfinite(r["image_latents"][[0, 1, 3]]).all() and r["image_tokens"][[0, 1, 3]].max() < 32
    tokens, _ = trained.encode_array(blank)  # the in-memory path masks them the same way
    np.testing.assert_array_equal(tokens, want_tokens)


def test_huge_finite_pixels_give_finite_latents(trained, tmp_path):
    """Below the blank limit, a pixel so bright that float32 ``a * a`` overflows still encodes
    (earlier versions gave NaN latents and token 0)."""
    flux = synthetic_cutouts(3, 3, SIZE, seed=22)
    flux[0, 1, 3, 3] = 5e19
    flux[1, 0, 2, 2] = -9.9e19
    tokens, latents = trained.encode_array(flux)
    assert np.isfinite(latents).all()
    assert not (tokens[0] == 0).all()
    x, n_valid = asinh_compress(flux, trained.band_offset, trained.band_scale)
    assert np.isfinite(x).all() and n_valid.tolist() == [3 * SIZE * SIZE] * 3
    want = np.arcsinh((np.float64(5e19) - trained.band_offset[1]) / np.float64(trained.band_scale[1]))
    assert x[0, 3, 3, 1] == pytest.approx(want, rel=1e-6)
    # an overflow of (flux - offset) / scale itself: asinh computed in float64
    tiny = np.array([1e-30, 1.0, 1.0], np.float32)
    x, _ = asinh_compress(flux[:1], np.zeros(3, np.float32), tiny)
    assert x[0, 3, 3, 0] == pytest.approx(np.arcsinh(np.float64(flux[0, 0, 3, 3]) / 1e-30), rel=1e-6)


def test_device_compression_is_finite_and_matches_the_kernel(trained):
    """The CUDA path's torch compression (run here on CPU tensors) agrees with the CPU kernel,
    huge pixels and an overflowing scale included."""
    from astromodal_image.tokenizer import compress_torch

    flux = synthetic_cutouts(2, 3, SIZE, seed=24)
    flux[0, 1, 3, 3] = 5e19
    flux[1, 0, :2, :2] = np.nan
    for off, sc in ((trained.band_offset, trained.band_scale),
                    (np.zeros(3, np.float32), np.array([1e-30, 1.0, 1e-25], np.float32))):
        x, valid = compress_torch(torch.from_numpy(flux), torch.from_numpy(off), torch.from_numpy(sc))
        want, n_valid = asinh_compress(flux, off, sc)
        assert torch.isfinite(x).all() and valid.flatten(1).sum(1).tolist() == n_valid.tolist()
        np.testing.assert_allclose(x.permute(0, 2, 3, 1).numpy(), want, rtol=2e-6, atol=1e-6)


def test_inf_in_memory_names_row_and_column(trained):
    flux = synthetic_cutouts(3, 3, SIZE, seed=23)
    flux[2, 1, 0, 0] = -np.inf
    with pytest.raises(DataError, match=r"^cutouts: row 2, column 'splus_cut_G': cutout holds infinite pixels \(1 such rows\)"):
        trained.encode_array(flux)


def test_non_finite_latents_are_a_data_error_not_token_zero(trained, test_cube, tmp_path):
    path, _ = test_cube
    tok = ImageTokenizer.load(_save(trained, tmp_path / "t.npz"))
    with torch.no_grad():
        tok._ensure_model().encoder[0].bias[0] = float("nan")
    with pytest.raises(DataError, match=(
            r"test\.parquet: row id 1000, columns \['splus_cut_U', 'splus_cut_G', 'splus_cut_R'\]: "
            r"the encoder gives non-finite latents for this cutout \(7 such rows in the batch\)")):
        tok.encode(path, batch_size=8)
    out = tmp_path / "s" / "t.tokens.parquet"
    with pytest.raises(DataError, match="non-finite latents"):
        tok.encode_to_store(path, out)
    assert not out.exists()
    assert tok._model.encoder[0].weight.is_contiguous()  # the model is handed back as it was


def _save(tok, path):
    tok.save(path)
    return path


def _bytes(directory):
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if not p.name.startswith(".")}


def test_saves_are_byte_reproducible(trained, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    trained.save(a / "image_tokenizer_config.npz")
    ImageTokenizer.load(a / "image_tokenizer_config.npz").save(b / "image_tokenizer_config.npz")
    got_a, got_b = _bytes(a), _bytes(b)
    assert len(got_a) == 3 and got_a == got_b  # the .npz and both companions, byte for byte
    trained.save(a / "autoencoder.pt")
    ImageTokenizer.load(a / "autoencoder.pt").save(b / "autoencoder.pt")
    assert (a / "autoencoder.pt").read_bytes() == (b / "autoencoder.pt").read_bytes()


def test_refitting_the_codebook_keeps_the_weights_companion(trained, train_cube, tmp_path):
    cfg = tmp_path / "image_tokenizer_config.npz"
    trained.save(cfg)
    before = sorted(p.name for p in tmp_path.glob("*.safetensors"))
    tok = ImageTokenizer.load(cfg)
    tok.codebook = tok.codebook[::-1].copy()  # another codebook, same weights
    tok.save(cfg)
    after = sorted(p.name for p in tmp_path.glob("*.safetensors"))
    assert [n for n in after if ".weights." in n] == [n for n in before if ".weights." in n]
    assert [n for n in after if ".codebook." in n] != [n for n in before if ".codebook." in n]
    assert len(after) == 2  # the old codebook companion is gone
    np.testing.assert_array_equal(ImageTokenizer.load(cfg).codebook, trained.codebook[::-1])


@pytest.mark.parametrize("damage, message", [
    (lambda t: setattr(t, "codebook", t.codebook[:10].copy()),
     r"image tokenizer state: codebook has shape \(10, 2\), expected \(32, 2\) for codebook_size=32, latent_dim=2"),
    (lambda t: t.codebook.__setitem__((3, 1), np.nan), r"image tokenizer state: codebook holds NaN or infinite values"),
    (lambda t: setattr(t, "band_scale", np.array([1.0, 0.0, 1.0], np.float32)),
     r"image tokenizer state: band_scale must be positive, got \[1\.0, 0\.0, 1\.0\]"),
    (lambda t: setattr(t, "band_offset", np.zeros(2, np.float32)),
     r"image tokenizer state: band_offset has shape \(2,\), expected \(3,\) for bands \['U', 'G', 'R'\]"),
    (lambda t: t._ensure_model().decoder[0].weight.data.__setitem__((0, 0, 0, 0), float("inf")),
     r"image tokenizer state: weight tensor 'decoder\.0\.weight' holds NaN, infinite or non-float values"),
    (lambda t: setattr(t, "_model", ImageTokenizer(cutout_size=32, bands=["U", "G", "R"], latent_dim=2,
                                                     channels=(8, 8))._ensure_model()),
     r"(?s)image tokenizer state: weights do not fit this architecture .*shape: encoder\.4\.weight file \(8, 8, 3, 3\) vs model \(16, 8, 3, 3\)"),
])
def test_loaded_state_is_validated(trained, tmp_path, damage, message):
    tok = ImageTokenizer.load(_save(trained, tmp_path / "ok.npz"))
    damage(tok)
    bad = _save(tok, tmp_path / "bad.npz")  # a consistent file pair holding bad state
    with pytest.raises(CodecFormatError, match=message.replace("image tokenizer", r"bad\.npz: image tokenizer")):
        ImageTokenizer.load(bad)
    inst = ImageTokenizer(cutout_size=32, bands=BANDS, latent_dim=2, codebook_size=32, channels=(8, 16))
    with pytest.raises(CodecFormatError, match=message):
        inst.load(bad)
    assert not inst.is_fitted  # left untouched


def test_pt_with_bad_codebook_leaves_the_instance_untouched(trained, tmp_path):
    pt = _save(trained, tmp_path / "ae.pt")
    sd = torch.load(pt, weights_only=True)
    sd["codebook"] = sd["codebook"][:5]
    torch.save(sd, pt)
    tok = ImageTokenizer.load(_save(trained, tmp_path / "t.npz"))
    fp = tok.fingerprint
    with pytest.raises(CodecFormatError, match=r"ae\.pt: codebook has shape \(5, 2\), expected \(32, 2\)"):
        tok.load(pt)
    assert tok.fingerprint == fp


def test_tampered_companion_is_refused(trained, tmp_path):
    cfg = _save(trained, tmp_path / "t.npz")
    weights = next(tmp_path.glob("t.weights.*.safetensors"))
    raw = bytearray(weights.read_bytes())
    raw[-3] ^= 0xFF
    weights.write_bytes(bytes(raw))
    with pytest.raises(CodecFormatError, match=r"t\.weights\.[0-9a-f]{16}\.safetensors: fingerprint mismatch"):
        ImageTokenizer.load(cfg)
    weights.unlink()
    with pytest.raises(CodecFormatError, match="companion file not found"):
        ImageTokenizer.load(cfg)
