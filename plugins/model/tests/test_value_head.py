"""Ordinal keys as values: bin tables, the mixture head, scalar-row masking, best checkpoint,
early stopping, threads, distribution scores."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from astromodal_model import AstroModel, ModelConfig, TrainConfig, train_model
from astromodal_model.masking import mask_batch
from astromodal_model.ordinal import EDGE, HI, LO, SCORE, VALUE, ordinal_table
from astromodal_model.scoring import crps, photoz_metrics, pit, pit_flat, pit_histogram
from astromodal_model.threads import check_threads, default_threads, torch_threads

from astromodal_core import ConfigError, TokenKey
from astromodal_core.store import write_token_store

ORD = TokenKey("tok_o", 9, "scalar", mask_token=8, ordinal=True)
CAT = TokenKey("tok_c", 5, "scalar", mask_token=4)


def test_ordinal_table_ranks_real_ids_and_standardises_values():
    values = np.array([10.0, 11.0, np.nan, 12.0, 13.0, 14.0, 15.0, 16.0, np.nan])  # id 2: no bin
    t = ordinal_table(ORD, values)
    assert t.shape == (9, 5) and t.dtype == np.float32
    real = [0, 1, 3, 4, 5, 6, 7]
    lo, hi = t[real, LO], t[real, HI]
    assert lo[0] == -EDGE and hi[-1] == EDGE and np.all(hi[:-1] == lo[1:]) and np.all(hi > lo)
    assert np.allclose(t[real, SCORE], -t[real[::-1], SCORE], atol=1e-6)  # normal scores, symmetric
    assert t[4, VALUE] == 0.0 and t[3, VALUE] < 0 < t[5, VALUE]  # (value - median) / (IQR / 1.349)
    assert np.isclose(t[5, VALUE] - t[4, VALUE], 1.349 / 3.0, atol=1e-6)
    assert t[2, LO] == t[2, HI] and t[8, LO] == t[8, HI]  # no bin, never predicted
    no_values = ordinal_table(ORD)
    assert np.array_equal(no_values[:, VALUE], no_values[:, SCORE]) and no_values[7, HI] == EDGE


def _batch(target: int) -> dict[str, torch.Tensor]:
    return {
        "enc_tok": torch.tensor([[2]]), "enc_key": torch.tensor([[1]]), "enc_pos": torch.zeros(1, 1, dtype=torch.long),
        "enc_valid": torch.tensor([[True]]), "dec_key": torch.tensor([[0]]), "dec_pos": torch.zeros(1, 1, dtype=torch.long),
        "dec_valid": torch.tensor([[True]]), "dec_tgt": torch.tensor([[target]]),
    }


def test_mixture_head_is_a_distribution_over_real_bins_and_its_loss_is_its_log_likelihood():
    torch.manual_seed(0)
    values = np.array([1.0, 2.0, 3.0, np.nan, 5.0, 6.0, 7.0, 8.0])
    m = AstroModel(ModelConfig.preset("tiny"), {"tok_o": ORD, "tok_c": CAT}, ordinal_values={"tok_o": values})
    assert m.heads["tok_o"].out_features == 24 and m.heads["tok_c"].out_features == 5
    logits = m({"tok_c": torch.tensor([2])}, {"tok_o": torch.zeros(1, 1)})["tok_o"][0, 0]
    p = torch.softmax(logits, -1)
    assert torch.isclose(torch.logsumexp(logits, -1), torch.tensor(0.0), atol=1e-5)  # log probabilities
    assert p[8] == 0 and p[3] == 0 and (p[[0, 1, 2, 4, 5, 6, 7]] > 0).all()  # mask id, id without a value
    for target in (0, 5, 7):
        nll, n = m.loss_terms(_batch(target))
        assert n.tolist() == [1.0, 0.0] and torch.isclose(nll[0], -logits[target], atol=1e-4)
    nll, _ = m.loss_terms(_batch(5))
    nll.sum().backward()
    assert all(torch.isfinite(q.grad).all() for q in m.parameters() if q.grad is not None)
    with pytest.raises(ValueError, match="'tok_c', which is not an ordinal token key"):
        AstroModel(ModelConfig.preset("tiny"), {"tok_o": ORD, "tok_c": CAT}, ordinal_values={"tok_c": values})


def test_value_inputs_and_tables_are_saved_with_the_weights(tmp_path):
    torch.manual_seed(0)
    values = np.linspace(18.0, 24.0, 8)
    m = AstroModel(ModelConfig.preset("tiny"), {"tok_o": ORD, "tok_c": CAT}, ordinal_values={"tok_o": values})
    m.save_pretrained(tmp_path / "m")
    back = AstroModel.from_pretrained(tmp_path / "m")
    assert torch.equal(back.ordinal_table("tok_o"), m.ordinal_table("tok_o"))
    assert json.loads((tmp_path / "m" / "config.json").read_text())["format_version"] == 2
    x = {"tok_o": torch.tensor([1, 6]), "tok_c": torch.tensor([0, 3])}
    assert torch.allclose(back.embed(x), m.embed(x))
    # the value (not only the rank) reaches the model: other values, other embeddings
    other = AstroModel(ModelConfig.preset("tiny"), {"tok_o": ORD, "tok_c": CAT},
                       ordinal_values={"tok_o": values ** 2})
    other.load_state_dict({k: v for k, v in m.state_dict().items() if not k.startswith("ordinal_tables.")},
                          strict=False)
    assert not torch.allclose(other.embed(x), m.embed(x))


def test_a_model_saved_before_value_heads_loads_as_it_was(tmp_path):
    torch.manual_seed(0)
    legacy = ModelConfig.preset("tiny", ordinal_inputs="id", ordinal_head="categorical")
    m = AstroModel(legacy, {"tok_o": ORD, "tok_c": CAT})
    m.save_pretrained(tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    del cfg["model"]["ordinal_inputs"], cfg["model"]["ordinal_head"], cfg["model"]["mixture_components"]
    cfg["format_version"] = 1
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    back = AstroModel.from_pretrained(tmp_path / "m")
    assert back.config == legacy
    x = {"tok_c": torch.tensor([0, 3])}
    assert torch.allclose(back.predict(x, "tok_o"), m.predict(x, "tok_o"))


def test_model_config_validates_the_ordinal_settings():
    with pytest.raises(ConfigError, match="'ordinal_head' must be one of"):
        ModelConfig(ordinal_head="softmax")
    with pytest.raises(ConfigError, match="'ordinal_inputs' must be one of"):
        ModelConfig(ordinal_inputs="bins")
    with pytest.raises(ConfigError, match="'mixture_components' must be a positive int"):
        ModelConfig(mixture_components=0)


SCALARS = [TokenKey(f"tok_s{i}", 9, "scalar", mask_token=8, ordinal=True) for i in range(5)]


def _scalar_rows(B: int = 40) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    g = np.random.default_rng(3)
    dense = {k.name: np.where(g.random((B, 1)) < 0.2, -1, g.integers(0, 8, (B, 1))) for k in SCALARS}
    return np.arange(B) * 13 + 5, dense


def test_scalar_rows_are_masked_by_row_id_within_the_budgets():
    names = [k.name for k in SCALARS]
    ids, dense = _scalar_rows()
    b1 = mask_batch(ids, dense, names, input_budget=2, target_budget=2, seed=3, step=4)
    b2 = mask_batch(ids[::-1], {k: v[::-1] for k, v in dense.items()}, names, input_budget=2, target_budget=2,
                    seed=3, step=4)
    assert all(np.array_equal(b1[k], b2[k][::-1]) for k in b1)  # follows the row id, not its place
    assert not np.array_equal(b1["enc_key"], mask_batch(ids, dense, names, input_budget=2, target_budget=2,
                                                        seed=3, step=5)["enc_key"])
    for i in range(len(ids)):
        present = {j for j, k in enumerate(names) if dense[k][i, 0] >= 0}
        enc = set(b1["enc_key"][i][b1["enc_valid"][i]].tolist())
        dec = set(b1["dec_key"][i][b1["dec_valid"][i]].tolist())
        assert enc <= present and dec <= present and not enc & dec
        assert len(enc) == min(2, len(present) - (len(present) > 1)) if len(present) < 4 else len(enc) == 2
        assert len(dec) == (min(2, len(present) - len(enc)) if len(present) > 1 else 0)
        for j, t, v in zip(b1["dec_key"][i], b1["dec_tgt"][i], b1["dec_valid"][i]):
            if v:
                assert dense[names[j]][i, 0] == t


def test_scalar_focus_rows_predict_the_focus_key_from_all_others():
    names = [k.name for k in SCALARS]
    ids, dense = _scalar_rows()
    b = mask_batch(ids, dense, names, input_budget=8, target_budget=2, seed=1, step=0,
                   focus=["tok_s0"], focus_prob=1.0)
    for i in range(len(ids)):
        present = {j for j, k in enumerate(names) if dense[k][i, 0] >= 0}
        enc = set(b["enc_key"][i][b["enc_valid"][i]].tolist())
        dec = b["dec_key"][i][b["dec_valid"][i]].tolist()
        if 0 in present and len(present) > 1:
            assert dec == [0] and enc == present - {0}
    plain = mask_batch(ids, dense, names, input_budget=2, target_budget=2, seed=1, step=0)
    off = mask_batch(ids, dense, names, input_budget=2, target_budget=2, seed=1, step=0,
                     focus=["tok_s0"], focus_prob=0.0)
    assert all(np.array_equal(plain[k], off[k]) for k in plain)
    half = mask_batch(ids, dense, names, input_budget=2, target_budget=2, seed=1, step=0,
                      focus=["tok_s0"], focus_prob=0.5)
    focused = [half["dec_key"][i][half["dec_valid"][i]].tolist() == [0] for i in range(len(ids))
               if dense["tok_s0"][i, 0] >= 0]
    assert 0.2 < np.mean(focused) < 0.9


@pytest.fixture
def scalar_store(tmp_path):
    g = np.random.default_rng(0)
    n = 160
    latent = g.uniform(0, 1, n)
    cols = {k.name: np.clip(np.floor((latent + g.normal(0, 0.05, n)) * 8), 0, 7).astype(np.uint16) for k in SCALARS}
    return write_token_store(tmp_path / "s.parquet", np.arange(n, dtype=np.int64), cols, SCALARS)


def test_best_validation_model_is_kept_and_training_stops_early(scalar_store, tmp_path):
    cfg = {"model": {"preset": "tiny", "dim": 16, "num_heads": 2, "encoder_depth": 1, "decoder_depth": 1},
           "train": {"steps": 40, "batch_size": 16, "lr": 0.3, "warmup_steps": 0, "input_budget": 4,
                     "target_budget": 2, "val_every": 2, "val_fraction": 0.3, "early_stopping": 2,
                     "focus_keys": ["tok_s0"], "checkpoint_every": 100, "threads": 1}}
    model, h = train_model(scalar_store, cfg, tmp_path / "run", progress=False)
    scores = [v["score"] for v in h["val"]]
    best = int(np.argmin(scores))
    assert h["best"] == {"step": h["val"][best]["step"], "score": scores[best]}
    assert all(set(v["focus"]) >= {"tok_s0"} and v["score"] == v["focus"]["tok_s0"] for v in h["val"])
    assert h["stopped_early"] == h["val"][-1]["step"] < 40 and len(scores) - 1 - best == 2  # lr 0.3: diverges
    saved = AstroModel.from_pretrained(tmp_path / "run" / "model")
    from astromodal_model.data import validation_batches, validation_rows
    from astromodal_model.train import validate

    val = validation_rows(scalar_store, saved.token_keys, val_fraction=0.3, seed=0, max_rows=2048)
    batches = validation_batches(*val, saved.key_names, batch_size=16, input_budget=4, target_budget=2, alpha=1.0,
                                 seed=0, focus=["tok_s0"], focus_prob=1.0)
    assert np.isclose(validate(saved, batches, torch.device("cpu"))["tok_s0"], scores[best], rtol=1e-5)
    assert all(torch.equal(a, b) for a, b in zip(saved.state_dict().values(), model.state_dict().values()))
    # resuming a run that stopped early trains no further
    _, h2 = train_model(scalar_store, cfg, tmp_path / "run", progress=False)
    assert h2["stopped_early"] == h["stopped_early"] and len(h2["loss"]) == len(h["loss"])


def test_threads_setting():
    assert default_threads() >= 1 and check_threads(3) == 3
    with pytest.raises(ConfigError, match="threads must be a positive int"):
        check_threads(0)
    with pytest.raises(ConfigError, match="'threads' must be a positive int or null"):
        TrainConfig(threads=0)
    before = torch.get_num_threads()
    with torch_threads(1) as n:
        assert n == 1 and torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_scores_of_predicted_distributions():
    assert crps(np.array([0.0]), None, np.array([2.0]))[0] == 2.0  # a point forecast: the absolute error
    assert np.isclose(crps(np.array([0.0, 1.0]), np.array([[0.5, 0.5]]), np.array([0.0]))[0], 0.25)
    g = np.random.default_rng(0)
    mu = g.normal(size=4000)
    y = mu + g.normal(size=4000)
    grid = np.linspace(-8, 8, 801)
    probs = np.exp(-0.5 * (grid[None, :] - mu[:, None]) ** 2)
    calibrated = pit(grid, probs, y)
    assert pit_flat(calibrated)[0] and np.isclose(crps(grid, probs, y).mean(), 1 / np.sqrt(np.pi), rtol=0.05)
    narrow = np.exp(-0.5 * ((grid[None, :] - mu[:, None]) / 0.3) ** 2)
    flat, worst = pit_flat(pit(grid, narrow, y))
    assert not flat and worst > 1.0 and pit_histogram(pit(grid, narrow, y))[0] > 2.0  # overconfident: U-shaped
    assert pit(np.array([1.0, 2.0]), np.array([[0.5, 0.5]]), np.array([1.5]))[0] == 0.5
    m = photoz_metrics(np.array([0.1, 0.5, 1.0]), np.array([0.1, 0.5, 0.2]))
    assert m["outliers"] == pytest.approx(1 / 3) and m["bias"] == 0.0 and m["n"] == 3


def test_cli_threads_probs_and_embed_exclude(scalar_store, tmp_path):
    from click.testing import CliRunner

    from astromodal_core.cli import _load_plugin_commands, cli

    _load_plugin_commands()
    cfg = tmp_path / "model.yaml"
    cfg.write_text("preset: tiny\ndim: 16\nnum_heads: 2\nsteps: 3\nbatch_size: 16\nwarmup_steps: 1\n"
                   "input_budget: 4\ntarget_budget: 2\nval_every: 3\nthreads: 1\n")
    run = CliRunner()
    r = run.invoke(cli, ["train", "--tokens", str(scalar_store), "--config", str(cfg), "--out", str(tmp_path / "run"),
                         "--threads", "1", "--quiet", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["best"]["step"] == 3
    r = run.invoke(cli, ["train", "--tokens", str(scalar_store), "--config", str(cfg), "--out", str(tmp_path / "r0"),
                         "--threads", "0"])
    assert r.exit_code == 2 and "--threads" in r.output
    np.save(tmp_path / "values.npy", np.arange(8.0) * 0.1)
    r = run.invoke(cli, ["predict", "--model", str(tmp_path / "run" / "model"), "--tokens", str(scalar_store),
                         "--target", "tok_s0", "--values", str(tmp_path / "values.npy"), "--probs", "--threads", "1",
                         "--out", str(tmp_path / "pred.parquet"), "--quiet", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["columns"] == ["id", "token", "prob", "mean", "std", "median", "probs"]
    pred = pq.read_table(tmp_path / "pred.parquet").to_pydict()
    probs = np.asarray(pred["probs"])
    assert probs.shape == (160, 9) and np.allclose(probs.sum(1), 1, atol=1e-5) and (probs[:, 8] == 0).all()
    assert np.allclose(probs @ np.append(np.arange(8.0) * 0.1, 0.0), pred["mean"], atol=1e-5)
    r = run.invoke(cli, ["embed", "--model", str(tmp_path / "run" / "model"), "--tokens", str(scalar_store),
                         "--exclude", "tok_s0", "--exclude", "tok_s1", "--threads", "1",
                         "--out", str(tmp_path / "emb.parquet"), "--quiet"])
    assert r.exit_code == 0, r.output
    model = AstroModel.from_pretrained(tmp_path / "run" / "model")
    from astromodal_model.inference import embed_store

    _, alone = embed_store(model, scalar_store, exclude=["tok_s0", "tok_s1"], progress=False)
    assert np.allclose(np.asarray(pq.read_table(tmp_path / "emb.parquet").column("embedding").to_pylist()), alone,
                       atol=1e-6)
    _, everything = embed_store(model, scalar_store, progress=False)
    assert not np.allclose(alone, everything)
    r = run.invoke(cli, ["embed", "--model", str(tmp_path / "run" / "model"), "--tokens", str(scalar_store),
                         "--exclude", "tok_nope", "--out", str(tmp_path / "e2.parquet"), "--quiet"])
    assert r.exit_code != 0 and "exclude: unknown token key 'tok_nope'" in str(r.exception)
