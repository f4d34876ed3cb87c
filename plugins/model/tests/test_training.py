"""Training on a synthetic token store: loss falls, held-out scalar, resume, DDP, CLI, store I/O."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from astromodal_model import AstroModel, embed_store, predict_store, spawn_cpu_training, train_model
from astromodal_model.data import iter_dense_chunks
from astromodal_model.errors import IncompatibleKeyError
from astromodal_model.synthetic import FINGERPRINTS, KEYMAP, KEYS, synthetic_token_store
from astromodal_model.train import CHECKPOINT_FILE
from click.testing import CliRunner

from astromodal_core import DataError
from astromodal_core.cli import _load_plugin_commands, cli
from astromodal_core.store import read_token_store


def test_loss_falls_and_validation_is_per_key(trained):
    model, history, out = trained
    loss = np.array(history["loss"])
    assert len(loss) == 240 and history["step"] == list(range(240))
    assert loss[-30:].mean() < 0.75 * loss[:30].mean()
    assert [v["step"] for v in history["val"]] == [120, 240]
    first, last = history["val"][0]["loss"], history["val"][-1]["loss"]
    assert set(last) <= set(KEYMAP) and len(last) >= 4
    assert np.mean(list(last.values())) < np.log(17)  # better than a uniform guess
    assert (out / CHECKPOINT_FILE).is_file() and (out / "model" / "config.json").is_file()
    assert json.loads((out / "history.json").read_text())["loss"] == history["loss"]
    assert first.keys() == last.keys()


def test_held_out_scalar_beats_training_median(trained, store, test_store):
    model, _, _ = trained
    _, train_cols = read_token_store(store, ["tok_t_c"])
    median = np.median(train_cols["tok_t_c"])
    ids, cols = read_token_store(test_store, ["tok_t_c"])
    truth = cols["tok_t_c"].astype(float)
    values = np.arange(16, dtype=float)  # "physical" value of each bin = its index
    res = predict_store(model, test_store, "tok_t_c", codec=values, progress=False)
    assert np.array_equal(res["id"], ids)
    mae_model = np.abs(res["mean"] - truth).mean()
    mae_median = np.abs(median - truth).mean()
    assert mae_model < 0.6 * mae_median, (mae_model, mae_median)
    assert (res["std"] > 0).all() and res["token"].max() < 16


def test_predict_value_protocols_agree(trained, test_store):
    model, _, _ = trained
    _, cols = read_token_store(test_store)
    x = {k: (v[0][: v[1][16]], v[1][:17]) if isinstance(v, tuple) else v[:16] for k, v in cols.items()}
    values = np.linspace(10.0, 25.0, 16)

    class Tok:
        def token_values(self, key):
            assert key == "tok_t_c"
            return np.append(values, np.nan)

    ref = model.predict_value(x, "tok_t_c", values)
    for codec in ({"tok_t_c": values}, list(values), Tok()):
        m, s = model.predict_value(x, "tok_t_c", codec)
        assert np.allclose(m, ref[0]) and np.allclose(s, ref[1])
    probs = model.predict(x, "tok_t_c")[:, 0].numpy().astype(float)
    assert np.all(probs[:, 16] == 0)
    mean = probs[:, :16] @ values / probs[:, :16].sum(1)
    assert np.allclose(ref[0], mean, atol=1e-6)
    var = (probs[:, :16] * (values[None] - mean[:, None]) ** 2).sum(1) / probs[:, :16].sum(1)
    assert np.allclose(ref[1], np.sqrt(var), atol=1e-6)
    with pytest.raises(DataError, match="tok_t_c.*15 bin values for 16"):
        model.predict_value(x, "tok_t_c", values[:15])


def test_embed_store_and_similarity(trained, test_store):
    from astromodal_model import cosine_topk

    model, _, _ = trained
    ids, emb = embed_store(model, test_store, batch_size=64, progress=False)
    assert emb.shape == (300, 64) and np.array_equal(ids, np.arange(10_000, 10_300))
    assert np.isfinite(emb).all()
    ids2, emb2 = embed_store(model, test_store, batch_size=128, progress=False)
    assert np.allclose(emb, emb2, atol=1e-5)  # batching does not change embeddings
    scores, idx = cosine_topk(emb[:5], emb, k=3, backend="numpy")
    assert np.allclose(scores[:, 0], 1, atol=1e-5)  # each row finds itself (or an identical row)
    f_scores, _ = cosine_topk(emb[:5], emb, k=3, backend="faiss")
    assert np.allclose(f_scores, scores, atol=1e-5)


def test_embed_and_predict_stream_batches_and_leave_no_partial_file(trained, test_store, tmp_path, monkeypatch):
    from astromodal_model import write_embeddings, write_predictions

    model, _, _ = trained
    n = write_embeddings(model, test_store, tmp_path / "emb.parquet", batch_size=64, progress=False)
    f = pq.ParquetFile(tmp_path / "emb.parquet")
    assert n == 300 and f.metadata.num_rows == 300
    assert [f.metadata.row_group(i).num_rows for i in range(f.num_row_groups)] == [64] * 4 + [44]  # one per batch
    ids, emb = embed_store(model, test_store, batch_size=64, progress=False)
    t = f.read()
    assert np.array_equal(t.column("id").to_numpy(), ids)
    assert np.allclose(np.stack(t.column("embedding").to_numpy(zero_copy_only=False)), emb)
    rows, cols = write_predictions(
        model, test_store, "tok_t_c", tmp_path / "pred.parquet", codec=np.arange(16.0), batch_size=100, progress=False
    )
    p = pq.ParquetFile(tmp_path / "pred.parquet")
    assert rows == 300 and cols == ["id", "token", "prob", "mean", "std", "median"] and p.num_row_groups == 3
    ref = predict_store(model, test_store, "tok_t_c", codec=np.arange(16.0), batch_size=100, progress=False)
    assert np.allclose(p.read().column("mean").to_numpy(), ref["mean"])
    calls = {"n": 0}
    real = model.embed

    def failing(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("boom in batch 3")
        return real(*a, **k)

    monkeypatch.setattr(model, "embed", failing)
    with pytest.raises(RuntimeError, match="boom"):
        write_embeddings(model, test_store, tmp_path / "fail.parquet", batch_size=64, progress=False)
    assert not (tmp_path / "fail.parquet").exists() and list(tmp_path.glob("*fail*")) == []


def test_store_checks_name_the_key(trained, tmp_path):
    model, _, _ = trained
    other = [k if k.name != "tok_t_seq" else type(k)(**{**k.as_dict(), "vocab_size": 40, "mask_token": 39}) for k in KEYS]
    bad = synthetic_token_store(tmp_path / "other.parquet", 20, keys=other)
    with pytest.raises(IncompatibleKeyError, match="tok_t_seq.*vocab_size=33.*vocab_size=40"):
        embed_store(model, bad, progress=False)
    refp = synthetic_token_store(tmp_path / "fp.parquet", 20, fingerprints={**FINGERPRINTS, "tok_t_a": "ffff"})
    with pytest.raises(IncompatibleKeyError, match="tok_t_a.*fingerprint"):
        predict_store(model, refp, "tok_t_c", progress=False)
    small = {**KEYMAP, "tok_t_seq": type(KEYMAP["tok_t_seq"])(**{**KEYMAP["tok_t_seq"].as_dict(), "vocab_size": 20, "mask_token": None})}
    with pytest.raises(DataError, match=r"other.parquet: column 'tok_t_seq'.*row id \d+: token \d+ outside \[0, 20\)"):
        list(iter_dense_chunks(bad, small))
    (tmp_path / "empty.parquet").write_bytes(b"")
    with pytest.raises(DataError, match="empty.parquet"):
        embed_store(model, tmp_path / "empty.parquet", progress=False)


def test_resume_continues_the_same_run(store, tmp_path, train_config, one_thread):
    cfg = train_config
    cfg["train"].update(steps=6, batch_size=8, warmup_steps=2, checkpoint_every=3, val_every=3)
    _, full = train_model(store, cfg, tmp_path / "full", progress=False)
    cfg3 = {"model": cfg["model"], "train": dict(cfg["train"], steps=3)}
    train_model(store, cfg3, tmp_path / "split", progress=False)
    model, resumed = train_model(store, cfg, tmp_path / "split", progress=False)
    assert resumed["step"] == list(range(6))
    assert np.allclose(resumed["loss"], full["loss"], rtol=1e-5)
    ref = AstroModel.from_pretrained(tmp_path / "full" / "model", strict=False)
    for (n, a), (_, b) in zip(ref.state_dict().items(), model.state_dict().items()):
        assert torch.allclose(a, b, atol=1e-6), n


def test_ddp_two_processes_match_one(store, tmp_path, train_config, one_thread):
    cfg = train_config
    cfg["train"].update(steps=4, batch_size=8, warmup_steps=1, val_fraction=0.0)
    _, single = train_model(store, cfg, tmp_path / "one", progress=False)
    ddp = spawn_cpu_training(store, cfg, tmp_path / "two", world_size=2)
    assert ddp["step"] == single["step"]
    assert np.allclose(ddp["loss"], single["loss"], rtol=1e-4, atol=1e-5), (ddp["loss"], single["loss"])


def test_cli_train_embed_predict(store, test_store, tmp_path):
    cfg = tmp_path / "model.yaml"
    cfg.write_text(
        "preset: tiny\ndim: 32\nsteps: 3\nbatch_size: 8\nwarmup_steps: 1\ninput_budget: 16\n"
        "target_budget: 8\nval_fraction: 0.1\nval_every: 3\n"
    )
    _load_plugin_commands()
    runner = CliRunner()
    r = runner.invoke(cli, ["train", "--tokens", str(store), "--config", str(cfg), "--out", str(tmp_path / "run"), "--quiet", "--json"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.output)
    assert summary["steps"] == 3 and set(summary["token_keys"]) == set(KEYMAP)
    r = runner.invoke(cli, ["embed", "--model", str(tmp_path / "run" / "model"), "--tokens", str(test_store), "--out", str(tmp_path / "emb.parquet"), "--batch-size", "100", "--quiet"])
    assert r.exit_code == 0, r.output
    assert "wrote 300 embeddings of dimension 32" in r.output
    t = pq.read_table(tmp_path / "emb.parquet")
    assert t.column_names == ["id", "embedding"] and t.num_rows == 300
    assert pq.ParquetFile(tmp_path / "emb.parquet").num_row_groups == 3  # streamed batch by batch
    np.save(tmp_path / "values.npy", np.arange(16.0))
    r = runner.invoke(cli, ["predict", "--model", str(tmp_path / "run" / "model"), "--tokens", str(test_store), "--target", "tok_t_c", "--values", str(tmp_path / "values.npy"), "--out", str(tmp_path / "pred.parquet"), "--quiet", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["columns"] == ["id", "token", "prob", "mean", "std", "median"]
    assert pq.read_table(tmp_path / "pred.parquet").num_rows == 300
    other = [k if k.name != "tok_t_seq" else type(k)(**{**k.as_dict(), "vocab_size": 40, "mask_token": 39}) for k in KEYS]
    bad = synthetic_token_store(tmp_path / "other.parquet", 20, keys=other)
    r = runner.invoke(cli, ["embed", "--model", str(tmp_path / "run" / "model"), "--tokens", str(bad), "--out", str(tmp_path / "e2.parquet"), "--quiet"])
    assert r.exit_code != 0 and "tok_t_seq" in str(r.exception)
    assert not (tmp_path / "e2.parquet").exists()
    cfg.write_text("preset: tiny\nsteps: 3\nbogus: 1\n")
    r = runner.invoke(cli, ["train", "--tokens", str(store), "--config", str(cfg), "--out", str(tmp_path / "r2")])
    assert r.exit_code != 0 and "bogus" in str(r.exception)


def test_predict_exclude_leaves_keys_out_of_the_inputs(trained, test_store, tmp_path):
    model, _, out = trained
    full = predict_store(model, test_store, "tok_t_c", codec=np.arange(16.0), progress=False)
    without = predict_store(model, test_store, "tok_t_c", codec=np.arange(16.0), progress=False,
                            exclude=["tok_t_a", "tok_t_b"])
    # the same as asking the model with those keys absent
    _, cols = read_token_store(test_store)
    direct = model.predict({k: v for k, v in cols.items() if k not in ("tok_t_a", "tok_t_b", "tok_t_c")},
                           "tok_t_c")[:, 0].numpy()
    assert np.array_equal(without["token"], direct.argmax(1))
    assert np.allclose(without["prob"], direct.max(1), atol=1e-5)
    assert not np.allclose(full["mean"], without["mean"])
    with pytest.raises(DataError, match="exclude: unknown token key 'tok_nope'"):
        predict_store(model, test_store, "tok_t_c", progress=False, exclude=["tok_nope"])
    _load_plugin_commands()
    r = CliRunner().invoke(cli, [
        "predict", "--model", str(out / "model"), "--tokens", str(test_store), "--target", "tok_t_c",
        "--out", str(tmp_path / "p.parquet"), "--exclude", "tok_t_a", "--exclude", "tok_t_b", "--quiet", "--json"])
    assert r.exit_code == 0, r.output
    assert np.array_equal(pq.read_table(tmp_path / "p.parquet").column("token").to_numpy(), without["token"])


def test_smoothing_on_a_store_without_ordinal_keys_warns(store, tmp_path):
    with pytest.warns(UserWarning, match="ordinal_smoothing has no effect"):
        train_model(store, "tiny", tmp_path / "run", train_config={"steps": 1, "ordinal_smoothing": 1.0},
                    progress=False)


def test_a_model_cast_to_bfloat16_embeds_ordinal_keys():
    from astromodal_core import TokenKey

    keys = {"tok_o": TokenKey("tok_o", 9, "scalar", mask_token=8, ordinal=True)}
    model = AstroModel.from_registry("tiny", token_keys=list(keys.values())).to(torch.bfloat16)
    out = model.embed({"tok_o": torch.tensor([1, 5])})
    assert out.dtype == torch.bfloat16 and out.shape == (2, 64)
