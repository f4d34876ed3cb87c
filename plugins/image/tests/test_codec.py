"""ImageCodec: the conformance kit, the CodecManager path and band handling."""

from __future__ import annotations

import numpy as np
import pytest
from astromodal_image import ImageCutout, image_modality
from astromodal_image.codec import ImageCodec
from astromodal_image.synthetic import synthetic_cutouts

from astromodal_core import CodecManager, DataError
from astromodal_core.testing import check_codec

BANDS = ["U", "G", "R"]


def test_conformance_kit(tmp_path):
    train = ImageCutout(flux=synthetic_cutouts(120, 3, 16, seed=2), bands=BANDS)
    sample = ImageCutout(flux=synthetic_cutouts(4, 3, 16, seed=7), bands=BANDS)
    flux = synthetic_cutouts(3, 3, 16, seed=8)
    flux[0] = np.nan
    missing = ImageCutout(flux=flux, bands=BANDS)
    codec = ImageCodec(
        cutout_size=16, bands=BANDS, channels=(8,), codebook_size=16, epochs=2, batch_size=32,
        min_epoch_steps=4, train_kwargs={"progress": False},
    )
    done = check_codec(codec, train, sample, missing=missing, decode_metadata={"bands": ["G"]},
                       tmp_dir=tmp_path)
    assert {"check_save_load", "check_decode", "check_missing_masked", "check_not_collapsed"} <= set(done)


def test_codec_and_tokenizer_agree_through_the_manager(trained, test_cube):
    path, flux = test_cube
    result = trained.encode(path)
    manager = CodecManager(device=None, codecs=[trained])
    m = ImageCutout(flux=flux, bands=["U", "G", "R"], pixel_scale=0.55)
    tokens = manager.encode(m)
    np.testing.assert_array_equal(tokens["tok_image_splus"], result["image_tokens"])
    # bands given in another order, with one band absent (band_mask False): same tokens as NaN
    reordered = ImageCutout(flux=flux[:, [2, 0, 1]], bands=["R", "U", "G"],
                            band_mask=np.tile([True, True, False], (24, 1)))
    no_g = flux.copy()
    no_g[:, 1] = np.nan
    np.testing.assert_array_equal(
        manager.encode(reordered)["tok_image_splus"], trained.encode_array(no_g)[0]
    )
    out = manager.decode(tokens, ImageCutout, bands=["R"])
    assert isinstance(out, ImageCutout) and out.bands == ("R",) and out.flux.shape == (24, 1, 32, 32)
    assert not out.band_mask[3].any() and out.band_mask[0].all()
    np.testing.assert_allclose(out.flux[:, 0], trained.decode(result["image_tokens"])[:, 2], rtol=1e-5, atol=1e-5)


def test_codec_rejects_foreign_input(trained):
    codec = trained.codecs()[0]
    with pytest.raises(DataError, match=r"bands \['Z'\] are not among"):
        codec.encode(ImageCutout(flux=np.zeros((1, 1, 32, 32)), bands=["Z"]))
    with pytest.raises(DataError, match="cutouts are 16x16, this tokenizer expects 32x32"):
        codec.encode(ImageCutout(flux=np.zeros((1, 3, 16, 16)), bands=BANDS))
    Other = image_modality("OtherCutout", "tok_image_other")
    assert not codec.accepts(Other(flux=np.zeros((1, 3, 32, 32)), bands=BANDS))
    assert codec.accepts(ImageCutout(flux=np.zeros((1, 2, 32, 32)), bands=["R", "U"]))
    assert codec.accepts_metadata({"bands": ["G"]}) and not codec.accepts_metadata({"bands": ["Z"]})
