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
LIGHTCURVE = ROOT / "docs" / "examples" / "astromodal-lightcurve"
TUTORIALS = {"tutorial.md": WISE, "tutorial-lightcurve.md": LIGHTCURVE}


def test_mkdocs_build_strict(tmp_path):
    proc = subprocess.run(
        [str(BIN / "mkdocs"), "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, timeout=180,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "site" / "tutorial" / "index.html").is_file()
    assert (tmp_path / "site" / "tokenizers" / "spectrum" / "index.html").is_file()


@pytest.mark.parametrize("page", sorted(TUTORIALS))
def test_tutorial_shows_the_real_files(page):
    """Every code block of a tutorial that names a file of its example plugin is that file."""
    example = TUTORIALS[page]
    text = (ROOT / "docs" / page).read_text()
    blocks = re.findall(r"```(?:python|toml)\n# (\S+)\n(.*?)```", text, flags=re.S)
    shown = {path for path, _ in blocks if (example / path).is_file()}
    for path, body in blocks:
        if (example / path).is_file():
            assert body == (example / path).read_text(), f"docs/{page} is out of date for {path}"
    files = {str(p.relative_to(example)) for p in example.rglob("*")
             if p.suffix in (".py", ".toml") and "egg-info" not in str(p) and "__pycache__" not in p.parts}
    assert files == shown, f"files not shown in docs/{page}: {sorted(files - shown)}"


def test_lightcurve_package_stays_small():
    """The second tutorial's claim: the whole package is under 120 non-blank lines."""
    src = LIGHTCURVE / "src" / "astromodal_lightcurve"
    lines = sum(1 for p in src.rglob("*.py") for line in p.read_text().splitlines() if line.strip())
    assert lines < 120, f"astromodal_lightcurve has {lines} non-blank lines"


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
    assert meta["fingerprints"] == {"tok_wise": saved.fingerprints()["wise"]}
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


# --------------------------------------------------------------------- the light-curve tutorial
def _write_light_curves(path: Path, n: int, seed: int) -> Path:
    """Periodic variables with 3-20 epochs each (list<float64> columns), a few bad epochs."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    cols: dict[str, list] = {"lc_mag": [], "lc_magerr": [], "lc_mjd": []}
    for _ in range(n):
        k = int(rng.integers(3, 21))
        t = np.sort(rng.uniform(58000.0, 58400.0, k))
        mag = 14 + 3 * rng.random() + 0.4 * np.sin(2 * np.pi * t / rng.uniform(0.5, 20)) + rng.normal(0, 0.02, k)
        err = np.where(rng.random(k) < 0.05, 3.0, 0.02)  # a few epochs above max_magerr
        for name, v in zip(cols, (mag, err, t)):
            cols[name].append(v.tolist())
    table = {"id": np.arange(n, dtype=np.int64) + seed * 10_000}
    table.update({k: pa.array(v, pa.list_(pa.float64())) for k, v in cols.items()})
    pq.write_table(pa.table(table), path)
    return path


@pytest.fixture
def lightcurve_plugin():
    """The light-curve tutorial plugin registered in-process (its source on sys.path); local
    worker processes register it too."""
    from astromodal_core import get_registry, register_plugin, unregister

    src = str(LIGHTCURVE / "src")
    if src not in sys.path:
        sys.path.insert(0, src)
    import astromodal_lightcurve.plugin as plugin

    if "astromodal-lightcurve" in get_registry().plugins:  # installed for real: use that
        yield plugin
        return
    register_plugin(plugin, "astromodal-lightcurve-test")
    try:
        yield plugin
    finally:
        unregister("astromodal-lightcurve-test")


def test_lightcurve_tutorial_through_the_cli(lightcurve_plugin, tmp_path):
    """tokenizers train -> encode -> train --tokenizers -> predict --tokenizers: physical magnitudes."""
    import pyarrow.parquet as pq
    import yaml
    from click.testing import CliRunner

    from astromodal_core import get_registry
    from astromodal_core.cli import cli
    from astromodal_core.store import read_token_store, store_metadata
    from astromodal_core.tokenizer_set import TokenizerSet

    reg = get_registry()
    assert reg.tokenizer("lightcurve").__module__ == "astromodal_lightcurve.tokenizer"
    assert reg.token_keys()["tok_lc_mag"].layout == "ragged"
    files = [str(_write_light_curves(tmp_path / f"lc_{i}.parquet", 120, i)) for i in range(2)]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(
        {"tokenizers": {"lightcurve": {"n_bins": 32, "dt_bins": 16, "max_epochs": 16}}}))
    (tmp_path / "model.yaml").write_text(yaml.safe_dump(
        {"model": {"preset": "tiny"}, "train": {"steps": 6, "batch_size": 32, "warmup_steps": 1,
                                                 "val_every": 100, "checkpoint_every": 100}}))
    tok, store, run = tmp_path / "tok", tmp_path / "tokens.parquet", tmp_path / "run"

    def astromodal(*args: str) -> dict:
        res = CliRunner().invoke(cli, [*args, "--quiet", "--json"], catch_exceptions=False)
        assert res.exit_code == 0, res.output
        return json.loads(res.output)

    astromodal("tokenizers", "train", "--config", str(tmp_path / "config.yaml"), "--out", str(tok),
               "--workers", "1", *files)
    tset = TokenizerSet.read(tok)
    assert tset.names() == ["lightcurve"] and tset.owner("tok_lc_dt") == "lightcurve"
    assert tset.token_keys()["tok_lc_mag"].max_length == 16
    out = astromodal("encode", "--config", str(tmp_path / "config.yaml"), "--tokenizers", str(tok),
                     "--out", str(tmp_path / "store"), "--merged", str(store), "--workers", "1", *files)
    assert out["rows"] == 240
    meta = store_metadata(store)
    assert meta["tokenizers"] == tset.fingerprints() and meta["fingerprints"] == tset.key_fingerprints()
    ids, cols = read_token_store(store)
    flat, indptr = cols["tok_lc_mag"]
    assert 0 < np.diff(indptr).max() <= 16 and np.array_equal(cols["tok_lc_dt"][1], indptr)

    summary = astromodal("train", "--tokens", str(store), "--config", str(tmp_path / "model.yaml"),
                         "--out", str(run), "--tokenizers", str(tok), "--device", "cpu")
    assert summary["steps"] == 6 and set(summary["token_keys"]) == {"tok_lc_mag", "tok_lc_dt"}
    pred = astromodal("predict", "--model", str(run / "model"), "--tokens", str(store),
                      "--target", "tok_lc_mag", "--out", str(tmp_path / "pred.parquet"), "--tokenizers", str(tok))
    assert pred["rows"] == 240 and {"mean", "std", "median"} <= set(pred["columns"])
    table = pq.read_table(tmp_path / "pred.parquet")
    median = np.stack(table["median"].to_numpy(zero_copy_only=False))
    mean = np.stack(table["mean"].to_numpy(zero_copy_only=False))
    assert median.shape == mean.shape == (240, 16)  # one prediction per position up to max_length
    known = np.concatenate([np.concatenate(pq.read_table(f)["lc_mag"].to_numpy(zero_copy_only=False))
                            for f in files])
    for v in (mean, median):  # magnitudes, inside the training range
        assert np.all(np.isfinite(v)) and known.min() <= v.min() and v.max() <= known.max()
