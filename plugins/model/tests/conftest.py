"""Fixtures: a throwaway plugin registering one token key of each layout, synthetic stores."""

from __future__ import annotations

import pytest
from astromodal_model.synthetic import KEYMAP, SyntheticKeysPlugin, synthetic_token_store

import astromodal_core

PLUGIN_NAME = "astromodal-model-test-keys"

TRAIN = {
    "model": {"preset": "tiny"},
    "train": {
        "steps": 240, "batch_size": 32, "lr": 2e-3, "warmup_steps": 10, "input_budget": 24,
        "target_budget": 12, "val_fraction": 0.1, "val_every": 120, "checkpoint_every": 120,
        "val_max_rows": 128, "chunk_rows": 512, "seed": 0,
    },
}


@pytest.fixture
def test_plugin():
    """Register the throwaway plugin's token keys for one test."""
    astromodal_core.register_plugin(SyntheticKeysPlugin(), PLUGIN_NAME)
    try:
        yield KEYMAP
    finally:
        astromodal_core.unregister(PLUGIN_NAME)


@pytest.fixture
def plugin_name():
    return PLUGIN_NAME


@pytest.fixture
def train_config():
    return {"model": dict(TRAIN["model"]), "train": dict(TRAIN["train"])}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return synthetic_token_store(tmp_path_factory.mktemp("store") / "train.parquet", 1200, seed=1)


@pytest.fixture(scope="module")
def test_store(tmp_path_factory):
    return synthetic_token_store(
        tmp_path_factory.mktemp("store") / "test.parquet", 300, seed=2, first_id=10_000
    )


@pytest.fixture(scope="module")
def trained(store, tmp_path_factory):
    """The tiny model trained once on the synthetic store: (model, history, out_dir)."""
    import torch
    from astromodal_model import train_model

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: one thread is faster on a shared 2-core machine
    out = tmp_path_factory.mktemp("run")
    try:
        model, history = train_model(store, TRAIN, out, progress=False)
        yield model, history, out
    finally:
        torch.set_num_threads(threads)


@pytest.fixture
def one_thread():
    """Run a test with one torch thread (tiny matrices), restoring the setting afterwards."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
