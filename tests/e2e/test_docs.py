"""The docs site builds strictly, and the tutorial's plugin is the real, working package."""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
WISE = ROOT / "docs" / "examples" / "astromodal-wise"


def test_mkdocs_build_strict(tmp_path):
    proc = subprocess.run(
        [str(BIN / "mkdocs"), "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, timeout=180,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "site" / "tutorial" / "index.html").is_file()
    assert (tmp_path / "site" / "tokenizers" / "spectrum" / "index.html").is_file()


def test_tutorial_shows_the_real_files():
    """Every code block of the tutorial that names a file of the example plugin is that file."""
    text = (ROOT / "docs" / "tutorial.md").read_text()
    blocks = re.findall(r"```(?:python|toml)\n# (\S+)\n(.*?)```", text, flags=re.S)
    shown = {path for path, _ in blocks if (WISE / path).is_file()}
    for path, body in blocks:
        if (WISE / path).is_file():
            assert body == (WISE / path).read_text(), f"docs/tutorial.md is out of date for {path}"
    files = {str(p.relative_to(WISE)) for p in WISE.rglob("*") if p.suffix in (".py", ".toml")}
    assert files == shown, f"files not shown in the tutorial: {sorted(files - shown)}"


def _purge_wise() -> None:
    for name in [m for m in sys.modules if m == "astromodal_wise" or m.startswith("astromodal_wise.")]:
        del sys.modules[name]


@pytest.fixture
def installed_wise(tmp_path):
    """pip-install the tutorial plugin into a target directory and load it through entry points."""
    from astromodal_core import registry

    target = tmp_path / "site-packages"
    source = tmp_path / "astromodal-wise"  # a copy: building leaves build/ and *.egg-info behind
    shutil.copytree(WISE, source, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build"))
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", "--target", str(target), str(source)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    _purge_wise()
    sys.path.insert(0, str(target))
    importlib.invalidate_caches()
    registry.reset()
    try:
        yield target
    finally:
        sys.path.remove(str(target))
        _purge_wise()
        importlib.invalidate_caches()
        registry.reset()


def test_tutorial_plugin_installs_and_builds_a_model(installed_wise, tmp_path):
    import torch
    from astromodal_demo.datacube import build_datacube
    from astromodal_model import AstroModel, train_model

    from astromodal_core import get_registry
    from astromodal_core.pipeline import LocalEngine, encode_files, merge_store, train_tokenizers
    from astromodal_core.store import read_token_store, store_metadata

    reg = get_registry()
    assert reg.plugins["astromodal-wise"]["status"] == "ok"
    assert reg.owner("tok_wise") == "astromodal-wise"
    tokenizer_cls = reg.tokenizer("wise")
    assert Path(sys.modules[tokenizer_cls.__module__].__file__).is_relative_to(installed_wise)
    wise_demo = [e.obj for e in reg.collect("astromodal_register_demo_columns")
                 if e.plugin == "astromodal-wise"]
    assert len(wise_demo) == 1

    cube = build_datacube(tmp_path / "cubes", n=240, seed=5, n_files=2, contributions=wise_demo,
                          real_samples=False, progress=False)
    config = {"tokenizers": {"wise": {"n_bins": 64}}}
    with LocalEngine(1) as engine:
        saved = train_tokenizers(config, cube.files, tmp_path / "tok", engine=engine, progress=False)
        encode_files(cube.files, tmp_path / "tok", tmp_path / "store", engine=engine, progress=False)
    store = merge_store(tmp_path / "store", tmp_path / "tokens.parquet")
    meta = store_metadata(store)
    assert meta["fingerprints"] == {"tok_wise": saved[0].fingerprint}
    assert meta["token_keys"]["tok_wise"] == reg.token_key("tok_wise")

    model, history = train_model(store, {"model": {"preset": "tiny"},
                                         "train": {"steps": 4, "batch_size": 32, "warmup_steps": 1,
                                                   "val_every": 100, "checkpoint_every": 100}},
                                 tmp_path / "run", progress=False, device="cpu")
    assert "tok_wise" in model.token_keys and len(history["loss"]) == 4
    ids, cols = read_token_store(store)
    tokens = {"tok_wise": torch.as_tensor(cols["tok_wise"][:8].astype(np.int64))}
    logits = model(tokens, target_mask={"tok_wise": torch.zeros(8, 4)}, num_encoder_tokens=8)
    assert tuple(logits["tok_wise"].shape) == (8, 4, 65)
    again = AstroModel.from_pretrained(tmp_path / "run" / "model")
    assert "tok_wise" in again.token_keys


def test_installed_plugin_is_listed_by_the_cli(installed_wise):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(installed_wise), os.environ.get("PYTHONPATH", "")]),
               ASTROMODAL_PLUGINS="astromodal-wise")
    proc = subprocess.run([str(BIN / "astromodal"), "keys", "--json"], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    keys = {k["name"]: k for k in json.loads(proc.stdout)}
    assert keys["tok_wise"]["vocab_size"] == 65 and keys["tok_wise"]["mask_token"] == 64
    assert keys["tok_wise"]["plugin"] == "astromodal-wise"
