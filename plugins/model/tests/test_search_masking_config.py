"""Similarity search, 4M masking, token values, configuration."""

from __future__ import annotations

import numpy as np
import pytest
from astromodal_model import EmbeddingIndex, ModelConfig, TrainConfig, cosine_topk, load_model_yaml
from astromodal_model.masking import allocate, mask_batch, split_budgets
from astromodal_model.synthetic import KEYMAP
from astromodal_model.values import distribution_moments, token_values

from astromodal_core import ConfigError, DataError, TokenKeyError


def test_cosine_topk_known_neighbours_and_backends_agree():
    db = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.1]])
    scores, idx = cosine_topk(np.array([[2.0, 0.1]]), db, k=2, backend="numpy")
    assert idx.tolist() == [[0, 2]]
    assert np.isclose(scores[0, 1], (2.0 + 0.1) / (np.hypot(2, 0.1) * np.sqrt(2)))
    g = np.random.default_rng(0)
    q, big = g.normal(size=(20, 16)), g.normal(size=(500, 16))
    n_s, n_i = cosine_topk(q, big, k=7, backend="numpy")
    f_s, f_i = cosine_topk(q, big, k=7, backend="faiss")
    assert np.array_equal(n_i, f_i) and np.allclose(n_s, f_s, atol=1e-5)
    index = EmbeddingIndex(np.arange(100, 600), big)
    _, ids = index.search(big[:3], k=1)
    assert ids[:, 0].tolist() == [100, 101, 102]
    with pytest.raises(DataError, match="row 1 holds NaN"):
        cosine_topk(q, np.array([[1.0] * 16, [np.nan] * 16]))
    with pytest.raises(DataError, match="dim 16.*dim 2"):
        cosine_topk(q, db)


def test_allocate_and_budget_split():
    rng = np.random.default_rng(0)
    n = allocate(10, np.array([0.7, 0.2, 0.1]), np.array([3, 20, 20]), rng)
    assert n.sum() == 10 and n[0] == 3
    assert allocate(50, np.array([0.5, 0.5]), np.array([2, 3]), rng).tolist() == [2, 3]
    assert split_budgets(100, 24, 12) == (24, 12)
    assert split_budgets(9, 24, 12) == (6, 3)
    assert split_budgets(2, 24, 12) == (1, 1)
    assert split_budgets(1, 24, 12) == (1, 0)


def test_mask_batch_respects_budgets_and_missing_tokens():
    names = list(KEYMAP)
    B = 16
    g = np.random.default_rng(1)
    dense = {
        "tok_t_a": np.where(g.random((B, 1)) < 0.5, -1, g.integers(0, 16, (B, 1))),
        "tok_t_seq": g.integers(0, 32, (B, 6)),
        "tok_t_grid": g.integers(0, 11, (B, 9)),
    }
    dense["tok_t_seq"][:, 4:] = -1
    ids = np.arange(B) * 7
    b1 = mask_batch(ids, dense, names, input_budget=5, target_budget=3, seed=3, step=2)
    b2 = mask_batch(ids, dense, names, input_budget=5, target_budget=3, seed=3, step=2)
    b3 = mask_batch(ids[::-1], {k: v[::-1] for k, v in dense.items()}, names, input_budget=5, target_budget=3, seed=3, step=2)
    assert all(np.array_equal(b1[k], b2[k]) for k in b1)
    assert np.array_equal(b1["enc_tok"], b3["enc_tok"][::-1])  # masks follow the row id, not its place
    assert (b1["enc_valid"].sum(1) == 5).all() and (b1["dec_valid"].sum(1) == 3).all()
    for i in range(B):
        enc = {(k, p) for k, p, v in zip(b1["enc_key"][i], b1["enc_pos"][i], b1["enc_valid"][i]) if v}
        dec = {(k, p) for k, p, v in zip(b1["dec_key"][i], b1["dec_pos"][i], b1["dec_valid"][i]) if v}
        assert not enc & dec
        for k, p in enc | dec:
            assert dense[names[k]][i, p] >= 0  # absent tokens are never inputs or targets
        for k, p, t, v in zip(b1["dec_key"][i], b1["dec_pos"][i], b1["dec_tgt"][i], b1["dec_valid"][i]):
            if v:
                assert dense[names[k]][i, p] == t
    b4 = mask_batch(ids, dense, names, input_budget=5, target_budget=3, seed=3, step=3)
    assert not np.array_equal(b1["enc_pos"], b4["enc_pos"])


def test_token_values_and_moments():
    key = KEYMAP["tok_t_c"]
    vals = token_values(np.arange(16) * 2.0, key)
    assert vals.shape == (17,) and np.isnan(vals[16]) and vals[3] == 6.0
    probs = np.zeros((1, 17))
    probs[0, [1, 3]] = 0.5
    probs[0, 16] = 0.3  # the mask token's mass is dropped
    mean, std = distribution_moments(probs, vals, key)
    assert np.allclose(mean, 4.0) and np.allclose(std, 2.0)
    with pytest.raises(DataError, match="bin value of token 2 is not finite"):
        token_values(np.array([0, 1, np.inf] + [0] * 13, float), key)
    with pytest.raises(DataError, match="no bin values for token key 'tok_t_c'"):
        token_values({"tok_other": np.arange(16)}, key)


def test_nan_valued_ids_get_no_probability():
    key = KEYMAP["tok_t_c"]  # 16 real ids + mask token 16
    vals = np.full(17, np.nan)
    vals[:4] = [1.0, 2.0, 3.0, 4.0]  # a codec that fitted 4 of 16 bins
    probs = np.full((2, 17), 1 / 17)
    probs[1] = 0.0
    probs[1, 10] = 1.0  # all the mass on an unused bin
    mean, std = distribution_moments(probs, vals, key)
    assert np.isclose(mean[0], 2.5) and np.isclose(std[0], np.sqrt(1.25))  # renormalised over 4 ids
    assert np.isnan(mean[1]) and np.isnan(std[1])
    assert np.array_equal(token_values(vals[:16], key)[:4], vals[:4])  # NaN marks unused ids
    with pytest.raises(DataError, match="no token id has a bin value"):
        token_values(np.full(16, np.nan), key)


def test_token_values_protocol_of_a_tokenizer():
    """A tokenizer gives values through ``token_values(key)`` (the base contract), nothing else."""

    class Tok:
        token_keys = (KEYMAP["tok_t_a"], KEYMAP["tok_t_c"])

        def token_values(self, key):
            if key != "tok_t_c":
                raise TokenKeyError(f"Tok: token key {key!r} has no physical values")
            return np.append(np.arange(16.0) + 200.0, np.nan)

        def codecs(self):  # the old protocol is not consulted
            raise AssertionError("token_values must be used")

    vals = token_values(Tok(), KEYMAP["tok_t_c"])
    assert vals[0] == 200.0 and vals[15] == 215.0 and np.isnan(vals[16])
    with pytest.raises(DataError, match="token key 'tok_t_a': no physical values: Tok: token key 'tok_t_a'"):
        token_values(Tok(), KEYMAP["tok_t_a"])

    class Legacy:
        bin_values = np.arange(16.0)

    with pytest.raises(DataError, match="token key 'tok_t_c': Legacy gives no physical values"):
        token_values(Legacy(), KEYMAP["tok_t_c"])


def test_model_and_train_configs(tmp_path):
    base = ModelConfig.preset("base")
    assert (base.dim, base.encoder_depth, base.decoder_depth, base.num_heads) == (768, 12, 12, 12)
    with pytest.raises(ConfigError, match="unknown model preset 'huge'"):
        ModelConfig.preset("huge")
    with pytest.raises(ConfigError, match="not divisible"):
        ModelConfig(dim=30, num_heads=4)
    with pytest.raises(ConfigError, match="'lr'"):
        TrainConfig(lr=-1)
    p = tmp_path / "model.yaml"
    p.write_text("model:\n  preset: tiny\n  dim: 32\ntrain:\n  steps: 5\n  lr: 0.001\n")
    m, t = load_model_yaml(p)
    assert m.dim == 32 and m.encoder_depth == 2 and t.steps == 5 and t.lr == 0.001
    p.write_text("model:\n  preset: tiny\ntrain:\n  stepz: 5\n")
    with pytest.raises(ConfigError, match="model.yaml.*unknown key 'stepz'"):
        load_model_yaml(p)
    p.write_text("train:\n  steps: many\n")
    with pytest.raises(ConfigError, match="'steps' must be a positive int"):
        load_model_yaml(p)
