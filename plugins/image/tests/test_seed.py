"""Every snippet of seed 000's ImageTokenizer section runs as written (paths aside)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from astromodal_image import cutout_table, write_cutouts
from astromodal_image.synthetic import synthetic_cutouts

SEED = Path(__file__).parent / "data" / "seed_000.md"
SEED_BANDS = ["F378", "F395", "F410", "F430", "F515", "F660", "F861", "U", "G", "R", "I", "Z"]


def _python_blocks(section: str) -> list[str]:
    text = SEED.read_text()
    start = text.index(f"### {section}\n")
    end = text.index("\n## ", start) if "\n## " in text[start:] else len(text)
    nxt = text.find("\n### ", start + 1)
    end = min(end, nxt) if nxt != -1 else end
    return re.findall(r"```python\n(.*?)```", text[start:end], re.S)


def test_seed_image_tokenizer_snippets(tmp_path, monkeypatch):
    using = _python_blocks("Loading and Using")
    saving = _python_blocks("Save/Load Configuration")
    assert len(using) == 1 and len(saving) == 1
    assert 'tokenizer.load("autoencoder_splus_cuts.pt")' in using[0]
    # a tiny datacube with the seed's 12 bands at cutout_size 96
    flux = synthetic_cutouts(9, 12, 96, seed=4)
    flux[2] = np.nan  # one row with no image at all
    monkeypatch.chdir(tmp_path)
    write_cutouts("datacube_test.parquet", cutout_table(np.arange(9) + 500, flux, SEED_BANDS))
    # the autoencoder file comes from our own training (the seed's external script's role)
    from astromodal_image.tokenizer import ImageTokenizer

    trainer = ImageTokenizer(cutout_size=96, bands=SEED_BANDS, latent_dim=2, codebook_size=1024,
                             epochs=1, batch_size=8, min_epoch_steps=1)
    trainer.train("datacube_test.parquet", progress=False)
    trainer.save("autoencoder_splus_cuts.pt")

    ns: dict = {}
    exec(compile(using[0], "seed_000.md:Loading and Using", "exec"), ns)
    tokens, latents = ns["tokens"], ns["latents"]
    assert ns["result"]["id_col"] == "id"
    assert tokens.shape == (9, 12, 12) and tokens.dtype == np.uint16
    assert latents.shape == (9, 2, 12, 12) and latents.dtype == np.float32
    np.testing.assert_array_equal(ns["ids"], np.arange(500, 509))
    assert (tokens[2] == 1024).all() and np.delete(tokens, 2, axis=0).max() < 1024
    np.testing.assert_array_equal(tokens, trainer.encode("datacube_test.parquet")["image_tokens"])
    # the instance took the trained state; its settings (epochs, batch_size) stay its own
    np.testing.assert_array_equal(ns["tokenizer"].codebook, trainer.codebook)
    assert ns["tokenizer"].history == trainer.history and ns["tokenizer"].epochs == 10
    fp = ns["tokenizer"].fingerprint

    ctx = pytest.warns(RuntimeWarning, match="CUDA is not available") if not torch.cuda.is_available() \
        else _nullcontext()
    with ctx:
        exec(compile(saving[0], "seed_000.md:Save/Load Configuration", "exec"), ns)
    assert Path("image_tokenizer_config.npz").is_file()
    assert ns["tokenizer"].fingerprint == fp
    np.testing.assert_array_equal(ns["tokenizer"].encode("datacube_test.parquet", batch_size=32)["image_tokens"], tokens)


class _nullcontext:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
