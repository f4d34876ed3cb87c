"""AstroModel assembly, forward/encode shapes, missing tokens, sampling, errors, save/load."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from astromodal_model import AstroModel, IncompatibleKeyError, ModelConfig, UnknownTokenKeyError
from astromodal_model.synthetic import FINGERPRINTS, KEYMAP, KEYS

import astromodal_core
from astromodal_core import CodecFormatError, DataError, TokenKey, TokenKeyError


@pytest.fixture
def model():
    torch.manual_seed(0)
    return AstroModel(ModelConfig.preset("tiny"), KEYMAP, fingerprints=FINGERPRINTS).eval()


def _inputs(B=4, seed=0):
    g = np.random.default_rng(seed)
    return {
        "tok_t_a": g.integers(0, 16, B),
        "tok_t_b": g.integers(0, 16, (B, 1)),
        "tok_t_seq": g.integers(0, 32, (B, 6)),
        "tok_t_rag": (g.integers(0, 20, 2 * B), np.arange(0, 2 * B + 1, 2)),
        "tok_t_grid": g.integers(0, 11, (B, 3, 3)),
    }


def test_from_registry_builds_one_table_per_registered_key(test_plugin):
    m = AstroModel.from_registry("tiny", token_keys=None)
    for name, key in KEYMAP.items():
        assert m.token_embed[name].weight.shape == (key.vocab_size, 64)
        assert m.heads[name].out_features == key.vocab_size
    assert set(KEYMAP) <= set(m.key_names)
    sub = AstroModel.from_registry({"preset": "tiny", "dim": 32}, token_keys=["tok_t_a", "tok_t_grid"])
    assert sub.key_names == ["tok_t_a", "tok_t_grid"] and sub.config.dim == 32


def test_unregistered_plugin_tables_disappear(test_plugin, plugin_name):
    astromodal_core.unregister(plugin_name)
    names = astromodal_core.get_registry().token_keys()
    if names:
        m = AstroModel.from_registry("tiny")
        assert not set(KEYMAP) & set(m.key_names)
    with pytest.raises(TokenKeyError, match="tok_t_a"):
        AstroModel.from_registry("tiny", token_keys=["tok_t_a"])


def test_token_key_records_override_registry_sizes(test_plugin):
    bigger = TokenKey("tok_t_a", 1025, "scalar", mask_token=1024)
    m = AstroModel.from_registry("tiny", token_keys=[bigger, "tok_t_b"])
    assert m.token_embed["tok_t_a"].num_embeddings == 1025
    assert m.token_embed["tok_t_b"].num_embeddings == 17


def test_forward_shapes_in_seed_001_form(model):
    out = model(_inputs(), target_mask={"tok_t_c": torch.zeros(4, 1)}, num_encoder_tokens=600)
    assert set(out) == {"tok_t_c"} and out["tok_t_c"].shape == (4, 1, 17)
    probs = torch.softmax(out["tok_t_c"][0], dim=-1)
    assert probs[0, 16] == 0  # the mask token is never predicted
    assert torch.allclose(probs.sum(-1), torch.ones(1))
    out = model(_inputs(), {"tok_t_grid": torch.zeros(4, 3, 3), "tok_t_seq": torch.zeros(4, 2)})
    assert out["tok_t_grid"].shape == (4, 9, 12) and out["tok_t_seq"].shape == (4, 2, 33)
    emb = model.encode(_inputs(), num_encoder_tokens=600)
    assert emb.shape == (4, 1 + 1 + 6 + 2 + 9, 64)


def test_mask_tokens_are_never_embedded(model):
    x = _inputs()
    masked = dict(x, tok_t_a=np.full(4, 16), tok_t_seq=np.full((4, 6), 32))
    dropped = {k: v for k, v in x.items() if k not in ("tok_t_a", "tok_t_seq")}
    tm = {"tok_t_c": torch.zeros(4, 1)}
    assert torch.allclose(model(masked, tm)["tok_t_c"], model(dropped, tm)["tok_t_c"], atol=1e-6)
    a, va = model.encode(masked, return_mask=True)
    b, vb = model.encode(dropped, return_mask=True)
    assert torch.allclose(a[va], b[vb], atol=1e-6)
    assert va.sum() == vb.sum() == 4 * (1 + 2 + 9)


def test_ragged_forms_agree(model):
    flat = np.array([1, 2, 3, 4, 5, 6])
    indptr = np.array([0, 1, 4, 4, 6])
    padded = np.array([[1, 0, 0], [2, 3, 4], [0, 0, 0], [5, 6, 0]])
    lengths = np.array([1, 3, 0, 2])
    base = {"tok_t_a": np.array([1, 2, 3, 4])}
    tm = {"tok_t_c": torch.zeros(4, 1)}
    ref = model(dict(base, tok_t_rag=(flat, indptr)), tm)["tok_t_c"]
    for form in ((padded, lengths), (torch.tensor(padded), torch.tensor(padded) > 0)):
        got = model(dict(base, tok_t_rag=form), tm)["tok_t_c"]
        assert torch.allclose(ref, got, atol=1e-6)


def test_pooled_embedding_ignores_padding(model):
    x = _inputs(B=3)
    x["tok_t_rag"] = (np.arange(1, 9), np.array([0, 0, 8, 8]))  # row 1 has 8 ragged tokens
    full = model.embed(x)
    alone = model.embed({k: (v[0][:0], np.array([0, 0])) if k == "tok_t_rag" else v[:1] for k, v in x.items()})
    assert torch.allclose(full[0], alone[0], atol=1e-5)
    emb, valid = model.encode(x, return_mask=True)
    assert (emb[~valid] == 0).all() and (~valid[0]).sum() == 8


def test_over_budget_sampling_is_seeded_and_spans_modalities(model):
    x = _inputs(B=8)
    tok, key, pos, valid = model._flatten(model._inputs(x))
    t1 = model.select_tokens(tok, key, pos, valid, 5, generator=1)
    t2 = model.select_tokens(tok, key, pos, valid, 5, generator=1)
    t3 = model.select_tokens(tok, key, pos, valid, 5, generator=2)
    assert t1[0].shape == (8, 5) and all(torch.equal(a, b) for a, b in zip(t1, t2))
    assert not torch.equal(t1[1], t3[1])
    assert len(torch.unique(t1[1])) >= 4  # not the first modality only
    assert model.encode(x, num_encoder_tokens=5, generator=7).shape == (8, 5, 64)
    assert torch.equal(model.encode(x, 5, generator=7), model.encode(x, 5, generator=7))


def test_over_budget_shares_the_budget_among_present_keys(model):
    # one key holding many tokens must not crowd out keys with a single token
    B, N = 16, 600
    key = torch.zeros(B, N, dtype=torch.long)
    key[:, 580:590] = 1  # a 10-token key
    key[:, 590:] = torch.arange(2, 12)  # ten single-token (scalar) keys
    valid = torch.ones(B, N, dtype=torch.bool)
    valid[0, 590:595] = False  # row 0 lacks five of the scalars
    tok, pos = torch.arange(N).expand(B, N).clone(), torch.zeros(B, N, dtype=torch.long)
    for budget in (12, 30):
        _, k, _, v = model.select_tokens(tok, key, pos, valid, budget, generator=3)
        for i in range(B):
            kept = k[i][v[i]]
            present = torch.unique(key[i][valid[i]])
            assert set(kept.tolist()) == set(present.tolist()), (budget, i)
            counts = torch.bincount(kept, minlength=12)
            if budget == 30 and i > 0:  # 12 keys: 1 each, the 18 left split 9 / 9 between the two long keys
                assert counts[0] == 10 and counts[1] == 10 and (counts[2:] == 1).all()
    _, k0, _, _ = model.select_tokens(tok, key, pos, valid, 5, generator=3)
    assert all(len(torch.unique(r)) == 5 for r in k0)  # five tokens, five different keys
    a = model.select_tokens(tok, key, pos, valid, 30, generator=4)
    b = model.select_tokens(tok, key, pos, valid, 30, generator=4)
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_bad_inputs_raise_data_errors(model):
    tm = {"tok_t_c": torch.zeros(4, 1)}
    with pytest.raises(UnknownTokenKeyError, match="tok_nope") as e:
        model({"tok_nope": np.zeros(4, int)}, tm)
    assert isinstance(e.value, DataError)
    with pytest.raises(DataError, match=r"'tok_t_a'.*row 2: token 17 outside \[0, 17\)"):
        model({"tok_t_a": np.array([0, 1, 17, 2])}, tm)
    with pytest.raises(DataError, match="integers"):
        model({"tok_t_a": np.array([0.5, 1, 2, 3])}, tm)
    with pytest.raises(DataError, match="tok_t_b.*3 rows"):
        model({"tok_t_a": np.zeros(4, int), "tok_t_b": np.zeros(3, int)}, tm)
    with pytest.raises(DataError, match="tok_t_rag.*row 0 has more than max_length=8"):
        model({"tok_t_rag": (np.zeros(9, int), np.array([0, 9, 9, 9, 9]))}, tm)
    with pytest.raises(DataError, match="tok_t_seq.*7 target positions"):
        model({"tok_t_a": np.zeros(4, int)}, {"tok_t_seq": torch.zeros(4, 7)})
    with pytest.raises(UnknownTokenKeyError, match="tok_zz"):
        model({"tok_t_a": np.zeros(4, int)}, {"tok_zz": torch.zeros(4, 1)})


def test_save_load_round_trip_gives_identical_logits(model, tmp_path, test_plugin):
    x = _inputs()
    tm = {"tok_t_c": torch.zeros(4, 1), "tok_t_grid": torch.zeros(4, 9)}
    ref = model(x, tm)
    model.save_pretrained(tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert cfg["vocab_sizes"]["tok_t_seq"] == 33 and cfg["fingerprints"] == FINGERPRINTS
    loaded = AstroModel.from_pretrained(tmp_path / "m", fingerprints=FINGERPRINTS).eval()
    got = loaded(x, tm)
    for k in tm:
        assert torch.equal(ref[k], got[k])


def test_load_refuses_a_changed_key(model, tmp_path):
    model.save_pretrained(tmp_path / "m")
    other = dict(KEYMAP, tok_t_b=TokenKey("tok_t_b", 33, "scalar", mask_token=32))
    with pytest.raises(IncompatibleKeyError, match="tok_t_b.*vocab_size=17.*vocab_size=33"):
        AstroModel.from_pretrained(tmp_path / "m", token_keys=other)
    missing = {k: v for k, v in KEYMAP.items() if k != "tok_t_grid"}
    with pytest.raises(IncompatibleKeyError, match="tok_t_grid.*no such key"):
        AstroModel.from_pretrained(tmp_path / "m", token_keys=missing)
    with pytest.raises(IncompatibleKeyError, match="tok_t_c': tokenizer fingerprint cccc recorded by the model, "
                                                   "zzzz in the fingerprints given"):
        AstroModel.from_pretrained(tmp_path / "m", token_keys=KEYMAP, fingerprints={"tok_t_c": "zzzz"})
    assert AstroModel.from_pretrained(tmp_path / "m", token_keys=other, strict=False).key_names == list(KEYMAP)


def test_load_without_a_source_needs_no_plugin_and_checks_nothing(model, tmp_path):
    """The saved keys describe the model: with no store, set or keys given, nothing is compared
    (in particular not the registry's default keys); every use checks the store it reads."""
    model.save_pretrained(tmp_path / "m")
    assert "tok_t_a" not in astromodal_core.get_registry().token_keys()
    loaded = AstroModel.from_pretrained(tmp_path / "m")
    assert loaded.token_keys == KEYMAP and loaded.fingerprints == FINGERPRINTS
    with pytest.raises(TokenKeyError, match="unknown token key 'tok_t_a'"):
        AstroModel.from_pretrained(tmp_path / "m", token_keys=["tok_t_a"])  # names resolve in the registry


def test_load_rejects_newer_format_and_damaged_weights(model, tmp_path):
    d = model.save_pretrained(tmp_path / "m")
    cfg = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps(dict(cfg, format_version=99)))
    with pytest.raises(CodecFormatError, match="format_version 99 is newer"):
        AstroModel.from_pretrained(d, token_keys=KEYMAP)
    (d / "config.json").write_text(json.dumps(cfg))
    raw = bytearray((d / "model.safetensors").read_bytes())
    raw[-10:] = b"\x00" * 10
    (d / "model.safetensors").write_bytes(bytes(raw))
    with pytest.raises(CodecFormatError, match="model.safetensors"):
        AstroModel.from_pretrained(d, token_keys=KEYMAP)


def test_keys_of_every_layout_are_covered():
    assert {k.layout for k in KEYS} == {"scalar", "sequence", "ragged", "grid"}
