"""Seed 000 (the tokenizer document users know): every python block runs, in order, as written.

The blocks run in one namespace, in a temporary working directory, against files of the demo
datacube. Only paths are substituted (``/path/to/datacube_N.parquet`` -> demo files); the
relative names the document uses (``datacube_test.parquet``, ``config.yaml``,
``autoencoder_splus_cuts.pt``, the ``*_config.npz`` files) are provided in the working
directory: ``config.yaml`` is the document's own YAML block plus the ``data.mag_filter`` section
its Python block reads, and ``autoencoder_splus_cuts.pt`` is an autoencoder trained beforehand
"with dedicated scripts", as the document says. The one free name of the document, the row
index ``i`` of the ragged example, is set to 0. The "Output Formats" blocks are dict literals:
they are evaluated and checked against the results the earlier blocks produced.
"""

from __future__ import annotations

import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml

SEED = Path(__file__).resolve().parent / "data" / "seed_000.md"
SEED_BANDS = ["F378", "F395", "F410", "F430", "F515", "F660", "F861", "U", "G", "R", "I", "Z"]


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


@pytest.fixture(scope="module")
def seed_workdir(tmp_path_factory, survey_demo_columns):
    from astromodal_demo.datacube import build_datacube

    root = tmp_path_factory.mktemp("seed")
    cube = build_datacube(root / "cube", n=48, seed=11, n_files=3,
                          options={"cutout_size": 96}, contributions=survey_demo_columns,
                          progress=False)
    work = root / "work"
    work.mkdir()
    shutil.copy(cube.files[2], work / "datacube_test.parquet")
    text = SEED.read_text()
    config = yaml.safe_load(re.findall(r"```yaml\n(.*?)```", text, flags=re.S)[0])
    config["data"] = {"mag_filter": {"min": 14.0, "max": 22.0}}
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    from astromodal.tokenizers import ImageTokenizer

    ae = ImageTokenizer(cutout_size=96, bands=SEED_BANDS, latent_dim=2, codebook_size=1024,
                        epochs=1, max_cutouts=24, min_epoch_steps=1)
    ae.train(list(cube.files[:2]), progress=False)
    ae.save(work / "autoencoder_splus_cuts.pt")
    return work, [str(f) for f in cube.files[:2]]


def test_every_seed_block_runs(seed_workdir, monkeypatch):
    work, train_files = seed_workdir
    monkeypatch.chdir(work)
    text = SEED.read_text()
    text = text.replace("/path/to/datacube_1.parquet", train_files[0])
    text = text.replace("/path/to/datacube_2.parquet", train_files[1])
    blocks = python_blocks(text)
    assert len(blocks) == 14
    ns: dict = {"__name__": "seed_000", "i": 0}
    results: list[dict] = []
    shapes: list[dict] = []
    for k, block in enumerate(blocks):
        if block.lstrip().startswith("{"):
            shapes.append(eval(block, {"np": np}))  # an "Output Formats" dict literal
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # device='cuda' on a CPU machine
            try:
                exec(compile(block, f"seed_000.md block {k}", "exec"), ns)
            except Exception as exc:  # name the block that failed
                raise AssertionError(f"seed block {k} failed:\n{block}") from exc
        if isinstance(ns.get("result"), dict) and all(ns["result"] is not r for r in results):
            results.append(ns["result"])

    scalar, spectrum, image = results
    n = len(scalar["ids"])
    assert scalar["scalar_tokens"].shape == (n, 6) and scalar["scalar_tokens"].dtype == np.uint16
    assert scalar["N_BINS"] == 1024 and int(ns["tokens"].max()) <= 1024
    assert spectrum["tokens_desi_b"].shape == (n, 2751)
    assert len(spectrum["tokens_gaiaxp_bp_indptr"]) == n + 1
    assert image["image_tokens"].shape[0] == n and image["image_latents"].shape[1] == 2
    np.testing.assert_array_equal(spectrum["ids"], scalar["ids"])
    for shape in shapes:
        first = next(iter(shape))
        match = [r for r in results if first in r or first.replace("desi_b", "desi_r") in r]
        assert match, f"no result holds the documented key {first!r}"
        for key, typ in shape.items():
            if key in match[0]:
                assert isinstance(match[0][key], typ), f"{key}: {type(match[0][key])} is not {typ}"
    for name in ("scalar_tokenizer_config.npz", "spectrum_tokenizer_config.npz",
                 "image_tokenizer_config.npz"):
        with np.load(work / name, allow_pickle=False) as z:
            assert "__config__" in z.files
