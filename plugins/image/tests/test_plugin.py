"""Registration through the entry point: modality, codec, token key, tokenizer, command."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from astromodal_image import SPLUS_BANDS, ImageCutout, image_modality, image_token_key

from astromodal_core import TokenKey
from astromodal_core.registry import get_registry


def test_registry_holds_the_image_plugin():
    reg = get_registry()
    key = reg.token_key("tok_image_splus")
    assert key == TokenKey(
        name="tok_image_splus", vocab_size=1025, layout="grid", max_length=144, shape=(12, 12),
        modality="ImageCutout", mask_token=1024, description=key.description,
    )
    assert reg.owner("tok_image_splus") == "astromodal-image"
    assert reg.modality("ImageCutout") is ImageCutout
    from astromodal_image.codec import ImageCodec
    from astromodal_image.tokenizer import ImageTokenizer

    assert reg.codec_for(ImageCutout) is ImageCodec
    assert reg.tokenizer("image") is ImageTokenizer
    from astromodal.tokenizers import ImageTokenizer as Facade

    assert Facade is ImageTokenizer
    assert SPLUS_BANDS == ("U", "F378", "F395", "F410", "F430", "G", "F515", "R", "F660", "I", "F861", "Z")


def test_image_train_command_is_added():
    from astromodal_core import cli as core_cli

    core_cli._load_plugin_commands()
    assert "image-train" in core_cli.cli.commands


def test_plugin_import_does_not_import_torch():
    code = (
        "import sys, astromodal_image.plugin as p\n"
        "from astromodal_core.registry import get_registry\n"
        "reg = get_registry(); assert 'tok_image_splus' in reg.token_keys()\n"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_modality_validation_and_other_surveys():
    flux = np.zeros((2, 3, 4, 4), np.float32)
    m = ImageCutout(flux=flux, bands=["G", "R", "I"], band_mask=[[1, 1, 0], [1, 1, 1]])
    assert len(m) == 2 and m.token_key == "tok_image_splus"
    assert np.isnan(m.masked_flux()[0, 2]).all() and not np.isnan(m.masked_flux()[1]).any()
    with pytest.raises(ValueError, match="3 band planes but 2 band names"):
        ImageCutout(flux=flux, bands=["G", "R"])
    with pytest.raises(ValueError, match=r"must be \(n, bands, H, W\)"):
        ImageCutout(flux=flux[0], bands=["G", "R", "I"])
    with pytest.raises(ValueError, match="band_mask must be"):
        ImageCutout(flux=flux, bands=["G", "R", "I"], band_mask=np.ones((2, 2)))
    Legacy = image_modality("LegacyCutout", "tok_image_legacy")
    lm = Legacy(flux=flux, bands=["g", "r", "z"])
    assert isinstance(lm, ImageCutout) and lm.token_key == "tok_image_legacy"
    assert Legacy.name == "LegacyCutout"
    key = image_token_key("tok_image_legacy", codebook_size=256, grid=(8, 8), modality="LegacyCutout")
    assert (key.vocab_size, key.mask_token, key.max_length, key.shape) == (257, 256, 64, (8, 8))
