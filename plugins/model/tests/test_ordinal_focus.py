"""Ordinal token keys (value features, soft targets), focus-key masking, distribution medians."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from astromodal_model import AstroModel, ModelConfig, TrainConfig, train_model
from astromodal_model.masking import mask_batch
from astromodal_model.model import ordinal_features, ordinal_targets
from astromodal_model.synthetic import KEYMAP, synthetic_token_store
from astromodal_model.values import distribution_moments, distribution_quantile

from astromodal_core import ConfigError, TokenKey

ORD = TokenKey("tok_o", 65, "scalar", mask_token=64, ordinal=True)
CAT = TokenKey("tok_c", 9, "scalar", mask_token=8)


def test_token_key_ordinal_round_trips_and_defaults_to_false():
    assert TokenKey.from_dict(ORD.as_dict()) == ORD and ORD.ordinal
    old = CAT.as_dict()
    del old["ordinal"]  # a store written before the field existed
    assert TokenKey.from_dict(old).ordinal is False
    with pytest.raises(TypeError):
        TokenKey("tok_x", 5, ordinal="yes")


def test_ordinal_features_are_smooth_in_the_id():
    f = ordinal_features(torch.arange(64), ORD, 16)
    assert f.shape == (64, 16) and torch.isfinite(f).all()
    d_near = (f[31] - f[32]).norm()
    d_far = (f[31] - f[0]).norm()
    assert d_near < 0.5 * d_far
    assert not torch.equal(f[10], f[11])  # still tells neighbours apart


LEGACY = {"ordinal_inputs": "id", "ordinal_head": "categorical"}


def test_value_embedding_only_for_ordinal_keys_and_can_be_switched_off():
    keys = {"tok_o": ORD, "tok_c": CAT}
    m = AstroModel(ModelConfig.preset("tiny"), keys)
    assert set(m.value_embed) == {"tok_o"} and set(m.token_embed) == {"tok_c"}  # value inputs
    m = AstroModel(ModelConfig.preset("tiny", **LEGACY), keys)
    assert set(m.value_embed) == {"tok_o"} and set(m.token_embed) == {"tok_o", "tok_c"}
    assert not AstroModel(ModelConfig.preset("tiny", ordinal_features=0, **LEGACY), keys).value_embed
    with pytest.raises(ConfigError, match="ordinal_features"):
        ModelConfig.preset("tiny", ordinal_features=3)


def test_ordinal_soft_targets():
    t = ordinal_targets(torch.tensor([0, 30, 63]), ORD, 1.5)
    assert t.shape == (3, 65) and torch.allclose(t.sum(1), torch.ones(3))
    assert (t[:, 64] == 0).all()  # never the mask id
    assert t.argmax(1).tolist() == [0, 30, 63]
    assert torch.isclose(t[1, 29], t[1, 31]) and t[1, 29] < t[1, 30] and t[1, 40] < 1e-8


def test_smoothing_changes_only_ordinal_losses_of_categorical_heads():
    torch.manual_seed(0)
    m = AstroModel(ModelConfig.preset("tiny", **LEGACY), {"tok_o": ORD, "tok_c": CAT})
    batch = {
        "enc_tok": torch.tensor([[3, 5]]), "enc_key": torch.tensor([[0, 1]]),
        "enc_pos": torch.zeros(1, 2, dtype=torch.long), "enc_valid": torch.tensor([[True, False]]),
        "dec_key": torch.tensor([[1, 0]]), "dec_pos": torch.zeros(1, 2, dtype=torch.long),
        "dec_valid": torch.tensor([[True, False]]), "dec_tgt": torch.tensor([[5, 0]]),
    }
    hard, n = m.loss_terms(batch)
    soft, _ = m.loss_terms(batch, ordinal_smoothing=2.0)
    assert torch.equal(hard, soft) and n.tolist() == [0.0, 1.0]  # the target is categorical
    batch = {**batch, "enc_tok": torch.tensor([[5, 3]]), "enc_key": torch.tensor([[1, 0]]),
             "dec_key": torch.tensor([[0, 1]]), "dec_tgt": torch.tensor([[3, 0]])}
    hard, _ = m.loss_terms(batch)
    soft, _ = m.loss_terms(batch, ordinal_smoothing=2.0)
    assert torch.isfinite(soft).all() and not torch.isclose(hard[0], soft[0])
    mix = AstroModel(ModelConfig.preset("tiny"), {"tok_o": ORD, "tok_c": CAT})  # a mixture head is smooth already
    assert torch.equal(mix.loss_terms(batch)[0], mix.loss_terms(batch, ordinal_smoothing=2.0)[0])


def _dense(B: int = 24) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    g = np.random.default_rng(4)
    dense = {
        "tok_t_a": np.where(g.random((B, 1)) < 0.3, -1, g.integers(0, 16, (B, 1))),
        "tok_t_b": g.integers(0, 16, (B, 1)),
        "tok_t_seq": g.integers(0, 32, (B, 6)),
        "tok_t_grid": g.integers(0, 11, (B, 9)),
    }
    return np.arange(B) * 11, dense


def test_focus_rows_predict_the_focus_key_from_an_equal_share_of_the_others():
    names = list(KEYMAP)
    ids, dense = _dense()
    b = mask_batch(ids, dense, names, input_budget=4, target_budget=3, seed=1, step=0,
                   focus=["tok_t_a"], focus_prob=1.0)
    ia, ib = names.index("tok_t_a"), names.index("tok_t_b")
    for i in range(len(ids)):
        enc = b["enc_key"][i][b["enc_valid"][i]]
        dec = b["dec_key"][i][b["dec_valid"][i]]
        if dense["tok_t_a"][i, 0] >= 0:
            assert dec.tolist() == [ia] and b["dec_tgt"][i][0] == dense["tok_t_a"][i, 0]
            assert ia not in enc and ib in enc  # one token from every other key
            assert len(enc) == 4
            assert set(enc.tolist()) == {ib, names.index("tok_t_seq"), names.index("tok_t_grid")}
        else:
            assert ia not in dec and len(dec) == 3  # rows without the focus key: plain 4M masking


def test_focus_prob_zero_is_plain_masking_and_half_mixes():
    names = list(KEYMAP)
    ids, dense = _dense(64)
    plain = mask_batch(ids, dense, names, input_budget=4, target_budget=3, seed=1, step=5)
    off = mask_batch(ids, dense, names, input_budget=4, target_budget=3, seed=1, step=5,
                     focus=["tok_t_a"], focus_prob=0.0)
    assert all(np.array_equal(plain[k], off[k]) for k in plain)
    half = mask_batch(ids, dense, names, input_budget=4, target_budget=3, seed=1, step=5,
                      focus=["tok_t_a"], focus_prob=0.5)
    ia = names.index("tok_t_a")
    focused = [(half["dec_key"][i][half["dec_valid"][i]] == ia).all() for i in range(64)
               if dense["tok_t_a"][i, 0] >= 0]
    assert 0.25 < np.mean(focused) < 0.85


def test_train_config_focus_validation(tmp_path):
    with pytest.raises(ConfigError, match="focus_prob"):
        TrainConfig(focus_prob=1.5)
    with pytest.raises(ConfigError, match="focus_keys"):
        TrainConfig(focus_keys="tok_z")
    store = synthetic_token_store(tmp_path / "s.parquet", 64)
    with pytest.raises(ConfigError, match="focus key 'tok_nope'"):
        train_model(store, "tiny", tmp_path / "run", train_config={"steps": 1, "focus_keys": ["tok_nope"]},
                    progress=False)


def test_distribution_median_against_mean_on_a_bimodal_distribution():
    key = TokenKey("tok_z", 5, "scalar", mask_token=4, ordinal=True)
    values = np.array([0.1, 0.2, 2.0, 3.0, np.nan])
    probs = np.array([[0.3, 0.3, 0.0, 0.4, 0.0],
                      [0.0, 0.0, 0.0, 0.0, 1.0]])  # all on the mask id: nothing to say
    med = distribution_quantile(probs, values, key)
    mean, _ = distribution_moments(probs, values, key)
    assert med[0] == 0.2 and np.isclose(mean[0], 0.03 + 0.06 + 1.2) and np.isnan(med[1])
    assert distribution_quantile(probs, values, key, 0.9)[0] == 3.0
    shuffled = np.array([3.0, 0.1, np.nan, 0.2, 2.0])  # not sorted by id: sorted by value
    p = np.array([[0.4, 0.3, 0.0, 0.3, 0.0]])
    assert distribution_quantile(p, shuffled, TokenKey("tok_s", 5, "scalar"))[0] == 0.2
    with pytest.raises(ValueError, match="quantile"):
        distribution_quantile(probs, values, key, 1.5)

