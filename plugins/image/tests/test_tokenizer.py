"""ImageTokenizer: training for real on CPU, encode/decode, save/load, errors."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from astromodal_image import cutout_table, write_cutouts
from astromodal_image.synthetic import synthetic_cutouts
from astromodal_image.tokenizer import ImageTokenizer

from astromodal_core import CodecFormatError, ConfigError, DataError, NotFittedError
from astromodal_core.serialize import load_npz, load_safetensors
from astromodal_core.store import read_token_store, write_token_store

BANDS = ["U", "G", "R"]
SIZE = 32


def _masked_mse(a, b):
    ok = np.isfinite(a) & np.isfinite(b)
    return float(np.mean((a[ok] - b[ok]) ** 2))


def test_training_lowers_loss_and_beats_a_constant_image(trained, test_cube):
    assert trained.is_fitted and len(trained.history) == 3 and len(trained.val_history) == 3
    assert trained.history[-1] < 0.85 * trained.history[0]
    # the kept weights are those of the best validation epoch
    assert trained.best_epoch == 1 + int(np.argmin(trained.val_history))
    path, flux = test_cube
    result = trained.encode(path, batch_size=8)
    recon = trained.decode(result["image_tokens"])
    rows = [i for i in range(len(flux)) if i != 3]
    truth = flux[rows]
    const = np.broadcast_to(np.nanmedian(truth, axis=(0, 2, 3), keepdims=True), truth.shape)

    def squash(a):  # the range-compressed space the autoencoder is trained in
        off = trained.band_offset[None, :, None, None]
        return np.arcsinh((a - off) / trained.band_scale[None, :, None, None])

    # held-out cutouts: the decoded tokens beat the best constant image in both spaces
    assert _masked_mse(squash(recon[rows]), squash(truth)) < 0.6 * _masked_mse(squash(const), squash(truth))
    assert _masked_mse(recon[rows], truth) < _masked_mse(const, truth)
    latent_recon = trained.decode_latents(result["image_latents"])[rows]
    assert _masked_mse(squash(latent_recon), squash(truth)) < 0.6 * _masked_mse(squash(const), squash(truth))


def test_band_scales_are_learnt_from_the_sky(trained):
    from astromodal_image.synthetic import sky_sigma

    # the synthetic sky noise rises by band; the robust scale tracks it (galaxy light adds some)
    # band_scale is the arcsinh softening: ``stretch`` (3) times the robust sky noise
    assert trained.stretch == 3.0
    noise = trained.band_scale / trained.stretch
    assert np.all(np.diff(noise) > 0)
    assert np.all(noise > sky_sigma(3)) and np.all(noise < 3 * sky_sigma(3))


def test_encode_output_matches_the_seed_dict(trained, test_cube):
    path, flux = test_cube
    r = trained.encode(path, batch_size=5)
    assert set(r) == {"image_tokens", "image_latents", "ids", "id_col"}
    assert r["image_tokens"].dtype == np.uint16 and r["image_tokens"].shape == (24, 8, 8)
    assert r["image_latents"].dtype == np.float32 and r["image_latents"].shape == (24, 2, 8, 8)
    np.testing.assert_array_equal(r["ids"], np.arange(1000, 1024))
    assert r["id_col"] == "id"
    # row 3 has no data: every cell is the mask token, latents NaN
    assert (r["image_tokens"][3] == 32).all() and np.isnan(r["image_latents"][3]).all()
    others = np.delete(r["image_tokens"], 3, axis=0)
    assert others.max() < 32
    assert np.isfinite(np.delete(r["image_latents"], 3, axis=0)).all()
    # exact tokens: each cell is the nearest codebook vector of its latent
    z = r["image_latents"][[0, 5, 6]].transpose(0, 2, 3, 1).reshape(-1, 2).astype(np.float64)
    cb = trained.codebook.astype(np.float64)
    want = ((z[:, None, :] - cb[None]) ** 2).sum(-1).argmin(1)
    np.testing.assert_array_equal(r["image_tokens"][[0, 5, 6]].ravel(), want)
    # batch size and the in-memory path give the same tokens
    r2 = trained.encode(path, batch_size=24)
    np.testing.assert_array_equal(r["image_tokens"], r2["image_tokens"])
    tokens, latents = trained.encode_array(flux)
    np.testing.assert_array_equal(tokens, r["image_tokens"])
    np.testing.assert_allclose(latents, r["image_latents"], rtol=1e-5, atol=1e-6)
    assert trained.to_token_columns(r)["tok_image_splus"] is not None


def test_missing_band_row_still_encodes_and_mask_matters(trained, test_cube):
    _, flux = test_cube
    tokens, _ = trained.encode_array(flux[[5]])
    assert tokens.max() < 32
    filled = flux[[5]].copy()
    filled[:, 1] = 1000.0  # a bright plane where the band is absent changes the tokens
    t2, _ = trained.encode_array(filled)
    assert not np.array_equal(tokens, t2)


def test_decode_bands_and_mask_rows(trained, test_cube):
    path, _ = test_cube
    tokens = trained.encode(path)["image_tokens"]
    full = trained.decode(tokens)
    assert full.shape == (24, 3, SIZE, SIZE) and full.dtype == np.float32
    sub = trained.decode(tokens, ["R", "U"])
    np.testing.assert_allclose(sub, full[:, [2, 0]], rtol=1e-5, atol=1e-5)
    assert np.isnan(full[3]).all() and np.isfinite(np.delete(full, 3, axis=0)).all()
    with pytest.raises(DataError, match=r"bands \['Z'\] are not among"):
        trained.decode(tokens, ["Z"])
    with pytest.raises(DataError, match="tokens outside"):
        trained.decode(np.full((1, 8, 8), 40, np.uint16))
    with pytest.raises(DataError, match="expected"):
        trained.decode(tokens[:, :4])


def test_save_load_npz_round_trip(trained, test_cube, tmp_path, tiny):
    path, _ = test_cube
    cfg = tmp_path / "image_tokenizer_config.npz"
    assert trained.save(cfg) == cfg
    config, arrays, _ = load_npz(cfg, kind="image_tokenizer")
    assert config["__tokenizer__"] == "image" and config["bands"] == BANDS
    assert config["history"] == trained.history and "device" not in config
    assert sorted(arrays) == ["band_offset", "band_scale"]
    refs = config["__companions__"]
    assert sorted(refs) == ["codebook", "weights"]
    names = sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".safetensors")
    assert names == sorted(f"image_tokenizer_config.{part}.{refs[part]['fingerprint']}.safetensors" for part in refs)
    loaded = ImageTokenizer.load(cfg)
    assert loaded.fingerprint == trained.fingerprint and loaded.settings() == trained.settings()
    assert loaded.history == trained.history
    np.testing.assert_array_equal(loaded.encode(path)["image_tokens"], trained.encode(path)["image_tokens"])
    inst = ImageTokenizer(**tiny(column_prefix="cut_", min_epoch_steps=trained.min_epoch_steps), device="cpu")
    assert inst.load(cfg) is inst and inst.column_prefix == "cut_"  # the instance keeps its settings
    np.testing.assert_array_equal(inst.codebook, trained.codebook)
    assert inst.history == trained.history
    assert inst.fingerprint != trained.fingerprint  # its settings are part of what it saves
    inst.column_prefix = trained.column_prefix
    assert inst.fingerprint == trained.fingerprint


def test_npz_into_an_instance_with_another_architecture_is_refused(trained, tmp_path, tiny):
    cfg = tmp_path / "image_tokenizer_config.npz"
    trained.save(cfg)
    inst = ImageTokenizer(**tiny(bands=["U", "G", "I"]))
    with pytest.raises(CodecFormatError, match=(
            r"image_tokenizer_config\.npz: weights were trained for bands \['U', 'G', 'R'\], "
            r"but this tokenizer has bands \['U', 'G', 'I'\]")):
        inst.load(cfg)
    assert inst.bands == ["U", "G", "I"] and not inst.is_fitted  # left untouched
    inst = ImageTokenizer(**tiny(codebook_size=8, channels=(8, 8)))
    with pytest.raises(CodecFormatError) as err:
        inst.load(cfg)
    assert "written for codebook_size=32, channels=[8, 16]; this tokenizer has codebook_size=8, channels=[8, 8]" in str(err.value)
    assert inst.codebook_size == 8 and inst.channels == [8, 8] and not inst.is_fitted
    both = ImageTokenizer(**tiny(bands=["U", "G"], latent_dim=3))
    with pytest.raises(CodecFormatError, match=r"bands \['U', 'G', 'R'\].*latent_dim=2; this tokenizer has latent_dim=3"):
        both.load(cfg)
    assert ImageTokenizer.load(cfg).architecture() == trained.architecture()  # the class still builds one


def test_pt_round_trip_on_instance_and_class(trained, test_cube, tmp_path, tiny):
    path, _ = test_cube
    pt = tmp_path / "autoencoder.pt"
    trained.save(pt)
    sd = torch.load(pt, weights_only=True)
    assert all(torch.is_tensor(v) for v in sd.values()) and "codebook" in sd
    tok = ImageTokenizer(**tiny(min_epoch_steps=trained.min_epoch_steps))
    assert not tok.is_fitted
    assert tok.load(pt) is tok  # instance: loads into this tokenizer
    assert tok.fingerprint == trained.fingerprint
    other = ImageTokenizer.load(pt)  # class: a new tokenizer from the recorded architecture
    assert isinstance(other, ImageTokenizer) and other.fingerprint == trained.fingerprint
    np.testing.assert_array_equal(tok.encode(path)["image_tokens"], trained.encode(path)["image_tokens"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU fallback")
def test_cuda_request_falls_back_to_cpu_with_a_warning(trained, tmp_path):
    cfg = tmp_path / "t.npz"
    trained.save(cfg)
    with pytest.warns(RuntimeWarning, match="CUDA is not available; using the CPU"):
        tok = ImageTokenizer.load(cfg, device="cuda")
    assert tok.device == "cpu"


def test_bare_weights_need_a_codebook(trained, train_cube, tmp_path, tiny):
    pt = tmp_path / "bare.pt"
    sd = {k: v for k, v in torch.load(_pt(trained, tmp_path), weights_only=True).items()
          if k not in ("codebook", "astromodal_config")}
    torch.save(sd, pt)
    tok = ImageTokenizer(**tiny()).load(pt)
    with pytest.raises(NotFittedError, match="no codebook"):
        tok.encode(train_cube[0])
    with pytest.raises(CodecFormatError, match="holds bare weights"):
        ImageTokenizer.load(pt)
    tok.fit_codebook(train_cube[0])
    assert tok.is_fitted
    np.testing.assert_allclose(np.sort(tok.codebook, 0), np.sort(trained.codebook, 0), atol=1e-4)
    with pytest.raises(NotFittedError, match="no autoencoder weights, no per-band scales"):
        ImageTokenizer(**tiny()).encode(train_cube[0])


def _pt(tok, tmp_path):
    p = tmp_path / "full.pt"
    tok.save(p)
    return p


def test_weights_for_other_bands_or_architecture_are_refused(trained, tmp_path, tiny):
    pt = _pt(trained, tmp_path)
    with pytest.raises(CodecFormatError, match=r"trained for bands \['U', 'G', 'R'\], but this tokenizer has bands \['U', 'G', 'I'\]"):
        ImageTokenizer(**tiny(bands=["U", "G", "I"])).load(pt)
    with pytest.raises(CodecFormatError, match=r"written for channels=\[8, 16\]; this tokenizer has channels=\[8, 8\]"):
        ImageTokenizer(**tiny(channels=(8, 8))).load(pt)
    bare = tmp_path / "bare.pt"
    torch.save({k: v for k, v in torch.load(pt, weights_only=True).items() if k != "astromodal_config"}, bare)
    with pytest.raises(CodecFormatError) as err:
        ImageTokenizer(**tiny(channels=(8, 8))).load(bare)
    msg = str(err.value)
    assert "mismatched tensors" in msg and "shape: encoder.4.weight file (16, 8, 3, 3) vs model (8, 8, 3, 3)" in msg
    with pytest.raises(CodecFormatError, match="the weights take 3 input bands, this tokenizer has 2 bands"):
        ImageTokenizer(**tiny(bands=["U", "G"])).load(bare)
    with pytest.raises(CodecFormatError, match=r"missing: encoder.10.weight \(16, 16, 3, 3\)"):
        ImageTokenizer(**tiny(channels=(8, 16, 16), cutout_size=32)).load(bare)


class _Evil:
    pass


def test_pickled_pt_is_refused(tmp_path, tiny):
    pt = tmp_path / "evil.pt"
    torch.save({"encoder.0.weight": torch.zeros(1), "payload": _Evil()}, pt)
    with pytest.raises(CodecFormatError, match="refused, the file holds pickled Python objects"):
        ImageTokenizer(**tiny()).load(pt)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a zip")
    with pytest.raises(CodecFormatError, match="junk.pt"):
        ImageTokenizer(**tiny()).load(junk)


def test_newer_format_version_is_refused(trained, tmp_path):
    cfg = tmp_path / "t.npz"
    trained.save(cfg)
    with np.load(cfg, allow_pickle=False) as npz:
        payload = {k: npz[k] for k in npz.files}
    payload["__format_version__"] = np.array(99, dtype=np.int64)
    with open(cfg, "wb") as fh:
        np.savez(fh, **payload)
    with pytest.raises(CodecFormatError, match="format_version 99 is newer"):
        ImageTokenizer.load(cfg)
    pt = _pt(trained, tmp_path)
    sd = torch.load(pt, weights_only=True)
    raw = json.dumps({**trained.architecture(), "format_version": 5}).encode()
    sd["astromodal_config"] = torch.frombuffer(bytearray(raw), dtype=torch.uint8).clone()
    torch.save(sd, pt)
    with pytest.raises(CodecFormatError, match="format_version 5 is newer"):
        ImageTokenizer.load(pt)


def test_bad_training_input(tmp_path, tiny, cube):
    nan = np.full((4, 3, SIZE, SIZE), np.nan, np.float32)
    path = tmp_path / "nan.parquet"
    write_cutouts(path, cutout_table(np.arange(4), nan, BANDS))
    with pytest.raises(DataError, match=r"nan\.parquet: no cutout with a valid pixel"):
        ImageTokenizer(**tiny()).train(path, progress=False)
    flux = synthetic_cutouts(4, 3, SIZE)
    flux[:, 2] = np.nan
    write_cutouts(tmp_path / "noR.parquet", cutout_table(np.arange(4), flux, BANDS))
    with pytest.raises(DataError, match="column 'splus_cut_R' has no finite pixel"):
        ImageTokenizer(**tiny()).train(tmp_path / "noR.parquet", progress=False)
    small = tmp_path / "small.parquet"
    cube(small, 3, seed=0, size=16)
    with pytest.raises(DataError, match=r"column 'splus_cut_U', row id 0: cutout has 256 pixels, expected 1024"):
        ImageTokenizer(**tiny()).train(small, progress=False)
    with pytest.raises(DataError, match=r"cutouts have shape \(3, 16, 16\), expected \(3, 32, 32\)"):
        ImageTokenizer(**tiny()).fit_arrays(synthetic_cutouts(2, 3, 16))
    with pytest.raises(ValueError, match="not divisible by the downsampling factor 8"):
        ImageTokenizer(cutout_size=20)
    with pytest.raises(ConfigError, match=r"^tokenizers\.image\.n_bins: unknown setting; known: \['augment', 'bands', "):
        ImageTokenizer.from_config({"cutout_size": 32, "n_bins": 3})
    assert ImageTokenizer.from_config({"cutout_size": 32, "bands": ["G"]}).grid_shape == (4, 4)


def test_encode_rejects_wrong_cutout_size(trained, tmp_path, cube):
    small = tmp_path / "small.parquet"
    cube(small, 3, seed=0, size=16, start_id=50)
    with pytest.raises(DataError, match=r"small\.parquet: column 'splus_cut_U', row id 50: cutout has 256 pixels"):
        trained.encode(small)


def test_bad_row_mid_file_leaves_no_token_store(trained, test_cube, tmp_path):
    """Through the streamed store path: a bad row in the third record batch of a file makes
    encoding raise, and neither a store nor a temp file is left for that file."""
    flux = synthetic_cutouts(80, len(BANDS), SIZE, seed=5)
    flux[70, 1, 4, 4] = np.inf
    bad = tmp_path / "bad.parquet"
    write_cutouts(bad, cutout_table(np.arange(500, 580), flux, BANDS))
    out = tmp_path / "store" / "bad.tokens.parquet"
    with pytest.raises(DataError, match=r"bad\.parquet: column 'splus_cut_G', row id 570: cutout holds infinite"):
        trained.encode_to_store(bad, out, batch_size=32)
    assert not out.parent.exists() or list(out.parent.iterdir()) == []
    good = trained.encode_to_store(test_cube[0], tmp_path / "good.tokens.parquet", batch_size=10)
    ids, cols = read_token_store(good)
    np.testing.assert_array_equal(ids, np.arange(1000, 1024))
    np.testing.assert_array_equal(cols["tok_image_splus"], trained.encode(test_cube[0])["image_tokens"])


def test_pipeline_trains_a_set_and_encodes_a_store(tmp_path, tiny, cube, test_cube):
    """``tokenizers train`` / ``encode`` through the core pipeline: the image member is found by
    its registered name, loads with its fingerprint and writes the tokens ``encode`` gives."""
    from astromodal_core.engines import LocalEngine
    from astromodal_core.pipeline import encode_files, train_tokenizers
    from astromodal_core.store_dir import iter_store_files
    from astromodal_core.tokenizer_set import TokenizerSet

    data = tmp_path / "train.parquet"
    cube(data, 48, seed=31)
    kw = tiny(epochs=1, channels=[8, 16])
    tset = train_tokenizers({"tokenizers": {"image": kw}}, [data], tmp_path / "tok",
                            engine=LocalEngine(1), progress=False)
    assert tset.names() == ["image"] and tset.owner("tok_image_splus") == "image"
    tok = TokenizerSet.read(tmp_path / "tok").load("image")
    assert isinstance(tok, ImageTokenizer) and tok.settings() == ImageTokenizer.from_config(kw).settings()
    encode_files([test_cube[0]], tmp_path / "tok", tmp_path / "store", engine=LocalEngine(1), progress=False)
    (part,) = list(iter_store_files(tmp_path / "store"))
    ids, cols = read_token_store(part)
    np.testing.assert_array_equal(ids, np.arange(1000, 1024))
    np.testing.assert_array_equal(cols["tok_image_splus"], tok.encode(test_cube[0])["image_tokens"])


def test_iter_token_batches_streams_grid_tokens(trained, test_cube):
    path, _ = test_cube
    batches = list(trained.iter_token_batches(path, batch_size=10))
    assert [len(ids) for ids, _ in batches] == [10, 10, 4]
    assert all(set(cols) == {"tok_image_splus"} for _, cols in batches)
    tokens = np.concatenate([cols["tok_image_splus"] for _, cols in batches])
    assert tokens.dtype == np.uint16 and tokens.shape == (24, 8, 8)
    np.testing.assert_array_equal(tokens, trained.encode(path)["image_tokens"])
    generic = super(ImageTokenizer, trained).encode(path)  # the base's dict, from the batches
    np.testing.assert_array_equal(generic["tok_image_splus"], tokens)
    np.testing.assert_array_equal(generic["ids"], np.arange(1000, 1024))


def test_token_store_round_trip(trained, test_cube, tmp_path):
    path, _ = test_cube
    r = trained.encode(path)
    store = tmp_path / "tokens.parquet"
    write_token_store(store, r["ids"], trained.to_token_columns(r), trained.token_keys,
                      fingerprints={"tok_image_splus": trained.fingerprint})
    ids, cols = read_token_store(store)
    np.testing.assert_array_equal(ids, r["ids"])
    np.testing.assert_array_equal(cols["tok_image_splus"], r["image_tokens"])


def test_sampling_is_mergeable_and_train_equals_fit_from_samples(tmp_path, tiny, cube):
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    cube(a, 40, seed=3, size=16)
    cube(b, 40, seed=4, size=16, start_id=40)
    kw = tiny(cutout_size=16, channels=(8,), codebook_size=16, epochs=1, max_cutouts=50)
    t1 = ImageTokenizer(**kw).train([a, b], progress=False)
    t2 = ImageTokenizer(**kw)
    t2.fit_from_samples([t2.sample_file(b), t2.sample_file(a)], progress=False)
    assert t1.fingerprint == t2.fingerprint
    assert len(t2.sample_file(a)) == 40


def test_checkpoint_resume_matches_an_unbroken_run(tmp_path, tiny, cube, monkeypatch):
    from astromodal_image import training

    path = tmp_path / "c.parquet"
    cube(path, 64, seed=5, size=16)
    kw = tiny(cutout_size=16, channels=(8,), codebook_size=16, batch_size=16)
    straight = ImageTokenizer(**kw).train(path, epochs=2, progress=False)
    ck = tmp_path / "ck"

    class Killed(Exception):
        pass

    def save_then_die(*args, **kwargs):  # the run dies right after its first checkpoint
        save(*args, **kwargs)
        raise Killed

    save = training.save_checkpoint
    with monkeypatch.context() as m:
        m.setattr(training, "save_checkpoint", save_then_die)
        with pytest.raises(Killed):
            ImageTokenizer(**kw).train(path, epochs=2, checkpoint_dir=ck, progress=False)
    arrays, meta = load_safetensors(ck / "image_autoencoder_checkpoint.safetensors")
    assert meta["epoch"] == "1" and json.loads(meta["val_history"]) == straight.val_history[:1]
    assert any(k.startswith("optim.") and k.endswith("exp_avg") for k in arrays)
    assert any(k.startswith("best.") for k in arrays)
    resumed = ImageTokenizer(**kw).train(path, epochs=2, checkpoint_dir=ck, resume=True, progress=False)
    assert resumed.history == pytest.approx(straight.history, rel=1e-5)
    assert resumed.val_history == pytest.approx(straight.val_history, rel=1e-5)
    assert resumed.best_epoch == straight.best_epoch
    for (k, v), (k2, v2) in zip(straight._weights_numpy().items(), resumed._weights_numpy().items()):
        assert k == k2
        np.testing.assert_allclose(v, v2, rtol=1e-4, atol=1e-6)
    with pytest.raises(CodecFormatError, match="another configuration"):
        ImageTokenizer(**{**kw, "channels": (4,)}).train(path, epochs=2, checkpoint_dir=ck, resume=True, progress=False)
    # the schedule spans the run: another epoch count is another configuration
    with pytest.raises(CodecFormatError, match=r"another configuration \(differs in \['epochs'\]\)"):
        ImageTokenizer(**kw).train(path, epochs=3, checkpoint_dir=ck, resume=True, progress=False)


def test_no_warning_on_cpu_request(trained, test_cube):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        trained.encode(test_cube[0], device="cpu")


def test_failed_training_keeps_the_previous_state(trained, tmp_path, monkeypatch):
    tok = ImageTokenizer.load(_pt(trained, tmp_path))
    fp = tok.fingerprint

    def boom(*args, **kwargs):
        raise DataError("codebook step failed")

    monkeypatch.setattr(tok, "_fit_codebook_from_latents", boom)
    with pytest.raises(DataError, match="codebook step failed"):
        tok.fit_arrays(synthetic_cutouts(8, 3, SIZE, seed=5) * 3, epochs=1, progress=False)
    assert tok.is_fitted and tok.fingerprint == fp
