"""The model assembled from a fitted tokenizer set, strict loading by fingerprint, and the value
protocol (``token_values``) through ``astromodal predict --tokenizers`` / ``--tokenizer``.

A tiny quantile tokenizer defined here (registered as ``mtest_q``) stands in for the survey
tokenizers: its plugin registers default keys of 1025 ids, its fitted state writes 65.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from astromodal_model import (
    AstroModel,
    FingerprintMismatchWarning,
    IncompatibleKeyError,
    train_model,
)
from astromodal_model.inference import embed_store, predict_store
from astromodal_model.values import token_values
from click.testing import CliRunner

import astromodal_core
from astromodal_core import CodecFormatError, DataError, TokenKey, hookimpl
from astromodal_core.cli import _load_plugin_commands, cli
from astromodal_core.io import id_column, iter_batches, numeric_column
from astromodal_core.sampling import BottomK, hash_keys
from astromodal_core.store import store_metadata
from astromodal_core.tokenizer import Tokenizer
from astromodal_core.tokenizer_set import TokenizerSet

PLUGIN = "astromodal-model-test-fitted"
COLUMNS = ("x", "y", "z")
CONFIG = {
    "model": {"preset": "tiny", "dim": 32, "encoder_depth": 1, "decoder_depth": 1},
    "train": {"steps": 3, "batch_size": 16, "warmup_steps": 1, "input_budget": 3, "target_budget": 2,
              "val_fraction": 0.0, "checkpoint_every": 100, "seed": 0},
}


class QuantileTok(Tokenizer):
    """Quantile bins of some columns; token ``i`` stands for the sample's (i + 0.5) / n quantile."""

    name = "mtest_q"
    kind = "mtest_q_tokenizer"

    def __init__(self, n_bins: int = 1024, columns: tuple[str, ...] = COLUMNS, id_col: str = "id"):
        if n_bins < 2:
            raise ValueError(f"n_bins must be >= 2, got {n_bins}")
        self.n_bins, self.columns, self.id_col = n_bins, tuple(columns), id_col
        self.edges: np.ndarray | None = None
        self.centres: np.ndarray | None = None

    @property
    def is_fitted(self) -> bool:
        return self.edges is not None

    @property
    def token_keys(self) -> tuple[TokenKey, ...]:
        return tuple(TokenKey(f"tok_m_{c}", self.n_bins + 1, mask_token=self.n_bins, ordinal=True)
                     for c in self.columns)

    def sample_file(self, path):
        sample = {c: BottomK(2000) for c in self.columns}
        for b in iter_batches(path, [self.id_col, *self.columns]):
            h = hash_keys(id_column(b, self.id_col, path), 0)
            for c in self.columns:
                sample[c].add(h, numeric_column(b, c, path))
        return sample

    def _fit(self, sample):
        q = np.linspace(0, 1, self.n_bins + 1)
        vals = [sample[c].sample() for c in self.columns]
        self.edges = np.stack([np.quantile(v, q[1:-1]) for v in vals])
        self.centres = np.stack([np.quantile(v, (np.arange(self.n_bins) + 0.5) / self.n_bins) for v in vals])

    def _state(self):
        return {"n_bins": self.n_bins, "columns": list(self.columns), "id_col": self.id_col}, {}

    def _companions(self):
        return {"bins": ({"edges": self.edges, "centres": self.centres}, {})}

    @classmethod
    def _from_state(cls, config, arrays, companions, **kw):
        t = cls(config["n_bins"], tuple(config["columns"]), config["id_col"])
        t.edges, t.centres = companions["bins"]["edges"], companions["bins"]["centres"]
        return t

    def input_columns(self, path):
        return [self.id_col, *self.columns]

    def _encode_batch(self, b, path):
        ids = id_column(b, self.id_col, path)
        return ids, {f"tok_m_{c}": np.searchsorted(self.edges[i], numeric_column(b, c, path)).astype(np.uint16)
                     for i, c in enumerate(self.columns)}

    def token_values(self, key):
        self.token_key(key)  # unknown key: TokenKeyError naming it
        if key == "tok_m_z":  # pretend z has no physical values
            return super().token_values(key)
        out = np.full(self.n_bins + 1, np.nan)
        out[: self.n_bins] = self.centres[self.columns.index(key[len("tok_m_"):])]
        return out


class OtherTok(QuantileTok):
    """A second registered tokenizer, for ``--tokenizer`` picking the one that writes the target."""

    name = "mtest_w"
    kind = "mtest_w_tokenizer"

    @property
    def token_keys(self):
        return (TokenKey("tok_w", self.n_bins + 1, mask_token=self.n_bins, ordinal=True),)


class _Plugin:
    @hookimpl
    def astromodal_register_tokenizers(self, register):
        register("mtest_q", QuantileTok)
        register("mtest_w", OtherTok)

    @hookimpl
    def astromodal_register_token_keys(self, register):  # the plugin's DEFAULT keys: 1024 bins
        for k in QuantileTok().token_keys:
            register(k)


def _catalogue(path, n, seed, first_id=0):
    g = np.random.default_rng(seed)
    x = g.uniform(0.0, 10.0, n)
    pq.write_table(pa.table({"id": np.arange(first_id, first_id + n, dtype=np.int64), "x": x,
                             "y": x + g.normal(0, 0.1, n), "z": 2 * x + g.normal(0, 0.1, n)}), path)
    return path


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """Two fitted sets (the same settings, different training samples) and their stores."""
    astromodal_core.register_plugin(_Plugin(), PLUGIN)
    d = tmp_path_factory.mktemp("fitted")
    try:
        data = _catalogue(d / "cat.parquet", 400, 0)
        other = _catalogue(d / "other.parquet", 400, 7, first_id=1000)
        tok1 = QuantileTok(n_bins=64).train(data)
        tok2 = QuantileTok(n_bins=64).train(other)  # retrained: same keys, another fingerprint
        assert tok1.fingerprint != tok2.fingerprint
        set1 = TokenizerSet.write(d / "set1", {"mtest_q": tok1})
        set2 = TokenizerSet.write(d / "set2", {"mtest_q": tok2})
        yield {
            "dir": d, "tok1": tok1, "tok2": tok2, "set1": set1, "set2": set2,
            "store1": tok1.encode_to_store(data, d / "s1.parquet"),
            "store2": tok2.encode_to_store(data, d / "s2.parquet"),
        }
    finally:
        astromodal_core.unregister(PLUGIN)


@pytest.fixture(scope="module")
def run(fitted, tmp_path_factory):
    """A tiny model trained on store1 with the set it was encoded with."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("run")
    try:
        model, _ = train_model(fitted["store1"], CONFIG, out, tokenizers=fitted["dir"] / "set1", progress=False)
        yield model, out / "model"
    finally:
        torch.set_num_threads(threads)


def test_keys_and_vocabularies_come_from_the_fitted_set_not_the_registry(fitted, tmp_path):
    assert astromodal_core.get_registry().token_key("tok_m_x").vocab_size == 1025  # the default
    model = AstroModel.from_tokenizer_set(fitted["dir"] / "set1", "tiny")
    assert model.key_names == ["tok_m_x", "tok_m_y", "tok_m_z"]
    # ordinal keys: value inputs and a mixture head over the fitted 64 bins (+ the mask id)
    assert model.ordinal_table("tok_m_x").shape == (65, 5) and model.heads["tok_m_y"].out_features == 3 * 8
    legacy = AstroModel.from_tokenizer_set(fitted["dir"] / "set1", {"preset": "tiny", "ordinal_inputs": "id",
                                                                       "ordinal_head": "categorical"})
    assert legacy.token_embed["tok_m_x"].num_embeddings == 65 and legacy.heads["tok_m_y"].out_features == 65
    assert model.token_keys["tok_m_z"] == TokenKey("tok_m_z", 65, mask_token=64, ordinal=True)
    fp = fitted["tok1"].fingerprint
    assert model.fingerprints == {k: fp for k in model.key_names} and model.tokenizers == {"mtest_q": fp}
    sub = AstroModel.from_tokenizer_set(fitted["set1"], "tiny", token_keys=["tok_m_y"])
    assert sub.key_names == ["tok_m_y"] and sub.fingerprints == {"tok_m_y": fp}
    with pytest.raises(IncompatibleKeyError, match="token key 'tok_q': tokenizer set .*set1 has no such key"):
        AstroModel.from_tokenizer_set(fitted["set1"], "tiny", token_keys=["tok_q"])
    from_store = AstroModel.from_store(fitted["store1"], "tiny")
    assert from_store.token_keys == model.token_keys
    assert from_store.fingerprints == model.fingerprints and from_store.tokenizers == {"mtest_q": fp}
    model.save_pretrained(tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert cfg["vocab_sizes"] == {k: 65 for k in model.key_names}
    assert cfg["fingerprints"] == model.fingerprints and cfg["tokenizers"] == {"mtest_q": fp}
    assert AstroModel.from_pretrained(tmp_path / "m").tokenizers == {"mtest_q": fp}


def test_a_store_that_records_import_paths_gives_no_tokenizer_names(fitted, tmp_path):
    from astromodal_core.store import read_token_store, write_token_store

    ids, cols = read_token_store(fitted["store1"])
    meta = store_metadata(fitted["store1"])
    old = write_token_store(tmp_path / "old.parquet", ids, cols, meta["token_keys"], fingerprints=meta["fingerprints"],
                            extra={"tokenizers": {"scalar": "astromodal_splus.tokenizer:ScalarTokenizer"}})
    m = AstroModel.from_store(old, "tiny")
    assert m.tokenizers == {} and m.fingerprints == meta["fingerprints"]


def test_a_set_member_manifest_and_file_must_agree(fitted, tmp_path):
    import shutil

    shutil.copytree(fitted["dir"] / "set1", tmp_path / "bad")
    manifest = json.loads((tmp_path / "bad" / "tokenizers.json").read_text())
    manifest["tokenizers"][0]["fingerprint"] = "0" * 16
    (tmp_path / "bad" / "tokenizers.json").write_text(json.dumps(manifest))
    with pytest.raises(CodecFormatError, match="manifest expects 0000000000000000"):
        AstroModel.from_tokenizer_set(tmp_path / "bad", "tiny")


def test_load_against_a_retrained_tokenizer_fails_naming_both_fingerprints(fitted, run):
    _, model_dir = run
    fp1, fp2 = fitted["tok1"].fingerprint, fitted["tok2"].fingerprint
    assert AstroModel.from_pretrained(model_dir, tokens=fitted["store1"], tokenizers=fitted["set1"]).fingerprints[
        "tok_m_x"] == fp1
    msg = (f"token key 'tok_m_x': tokenizer fingerprint {fp1} recorded by the model, {fp2} in token store "
           f".*s2.parquet \\(and 2 more: tok_m_y, tok_m_z\\).*allow_mismatch=True")
    with pytest.raises(IncompatibleKeyError, match=msg):
        AstroModel.from_pretrained(model_dir, tokens=fitted["store2"])
    with pytest.raises(IncompatibleKeyError, match=f"tok_m_x.*{fp1} recorded by the model, {fp2} in tokenizer set"):
        AstroModel.from_pretrained(model_dir, tokenizers=fitted["dir"] / "set2")
    with pytest.raises(IncompatibleKeyError, match=f"tokenizer 'mtest_q': tokenizer fingerprint {fp1} .*{fp2}"):
        AstroModel.from_pretrained(model_dir, fingerprints={"mtest_q": fp2})
    with pytest.warns(FingerprintMismatchWarning, match=f"'tok_m_x', 'tok_m_y', 'tok_m_z'.*{fp1}, {fp2}"):
        model = AstroModel.from_pretrained(model_dir, tokens=fitted["store2"], allow_mismatch=True)
    with pytest.raises(IncompatibleKeyError, match=f"tok_m_x.*{fp1}.*{fp2}"):
        embed_store(model, fitted["store2"], progress=False)  # every use checks the store again
    with pytest.warns(FingerprintMismatchWarning, match="tok_m_x"):
        ids, emb = embed_store(model, fitted["store2"], progress=False, allow_mismatch=True)
    assert emb.shape == (400, 32)
    x = {"tok_m_x": np.arange(4)}
    with pytest.raises(IncompatibleKeyError, match=f"tok_m_y.*{fp1}.*{fp2} in the tokenizer giving the values"):
        model.predict_value(x, "tok_m_y", fitted["tok2"])
    mean, _ = model.predict_value(x, "tok_m_y", fitted["set1"])
    assert mean.shape == (4,) and np.isfinite(mean).all()
    bigger = {k: TokenKey(k, 129, mask_token=128, ordinal=True) for k in ("tok_m_x", "tok_m_y", "tok_m_z")}
    with pytest.raises(IncompatibleKeyError, match="tok_m_x.*vocab_size=65.*vocab_size=129"):
        AstroModel.from_pretrained(model_dir, token_keys=bigger, allow_mismatch=True)  # never allowed


def test_training_checks_the_store_against_the_set_and_the_checkpoint(fitted, tmp_path, one_thread):
    with pytest.raises(IncompatibleKeyError, match="tok_m_x.*in token store .*s1.parquet"):
        train_model(fitted["store1"], CONFIG, tmp_path / "a", tokenizers=fitted["set2"], progress=False)
    assert not (tmp_path / "a" / "model").exists()
    with pytest.warns(FingerprintMismatchWarning, match="tok_m_x"):
        model, _ = train_model(fitted["store1"], CONFIG, tmp_path / "a", tokenizers=fitted["set2"],
                               allow_mismatch=True, progress=False)
    assert model.fingerprints["tok_m_x"] == fitted["tok2"].fingerprint  # the set's, as asked
    short = {"model": CONFIG["model"], "train": dict(CONFIG["train"], steps=2, checkpoint_every=1)}
    train_model(fitted["store1"], short, tmp_path / "b", progress=False)
    with pytest.raises(IncompatibleKeyError, match="tok_m_x.*resuming .*checkpoint.safetensors"):
        train_model(fitted["store2"], CONFIG, tmp_path / "b", progress=False)


def test_values_come_from_token_values(fitted):
    tok, key = fitted["tok1"], TokenKey("tok_m_x", 65, mask_token=64, ordinal=True)
    vals = token_values(tok, key)
    assert np.array_equal(vals, tok.token_values("tok_m_x"), equal_nan=True) and np.isnan(vals[64])
    assert np.array_equal(token_values(fitted["set1"], key), vals, equal_nan=True)
    with pytest.raises(DataError, match="token key 'tok_m_z': no physical values: QuantileTok: token key 'tok_m_z'"):
        token_values(tok, TokenKey("tok_m_z", 65, mask_token=64, ordinal=True))
    with pytest.raises(DataError, match="token key 'tok_m_x': QuantileTok.token_values gives shape \\(65,\\), "
                                        "the key has vocab_size 129"):
        token_values(tok, TokenKey("tok_m_x", 129, mask_token=128, ordinal=True))
    with pytest.raises(DataError, match="token key 'tok_m_x': object gives no physical values"):
        token_values(object(), key)


def test_cli_predict_with_a_fitted_set_gives_physical_values(fitted, run, tmp_path):
    model, model_dir = run
    _load_plugin_commands()
    runner = CliRunner()
    base = ["predict", "--model", str(model_dir), "--tokens", str(fitted["store1"]), "--target", "tok_m_y",
            "--quiet", "--json"]
    r = runner.invoke(cli, [*base, "--tokenizers", str(fitted["dir"] / "set1"), "--out", str(tmp_path / "p.parquet")])
    assert r.exit_code == 0, (r.output, r.exception)
    assert json.loads(r.output)["columns"] == ["id", "token", "prob", "mean", "std", "median"]
    got = pq.read_table(tmp_path / "p.parquet")
    centres = fitted["tok1"].centres[1]
    ref = predict_store(model, fitted["store1"], "tok_m_y", codec=centres, progress=False)
    assert np.allclose(got.column("mean").to_numpy(), ref["mean"])
    assert np.isin(got.column("median").to_numpy(), centres).all()  # a physical value of a bin
    mean = got.column("mean").to_numpy()
    assert (mean >= centres[0]).all() and (mean <= centres[-1]).all()
    tok_path = str(fitted["dir"] / "set1" / fitted["set1"].member("mtest_q").file)
    other = tmp_path / "w.npz"
    OtherTok(n_bins=4).train(fitted["dir"] / "cat.parquet").save(other)
    r = runner.invoke(cli, [*base, "--tokenizer", f"mtest_w={other}", "--tokenizer", f"mtest_q={tok_path}",
                            "--out", str(tmp_path / "p2.parquet")])
    assert r.exit_code == 0, (r.output, r.exception)
    assert np.allclose(pq.read_table(tmp_path / "p2.parquet").column("mean").to_numpy(), ref["mean"])
    # values from a retrained tokenizer would be wrong: refused unless allowed
    r = runner.invoke(cli, [*base, "--tokenizers", str(fitted["dir"] / "set2"), "--out", str(tmp_path / "p3.parquet")])
    assert r.exit_code != 0 and isinstance(r.exception, IncompatibleKeyError)
    assert "the tokenizer giving the values of 'tok_m_y'" in str(r.exception) and not (tmp_path / "p3.parquet").exists()
    r = runner.invoke(cli, [*base, "--target", "tok_m_z", "--tokenizers", str(fitted["dir"] / "set1"),
                            "--out", str(tmp_path / "p4.parquet")])
    assert r.exit_code != 0 and "token key 'tok_m_z': no physical values" in str(r.exception)
    r = runner.invoke(cli, [*base, "--tokenizer", f"nosuch={tok_path}", "--out", str(tmp_path / "p5.parquet")])
    assert r.exit_code == 2 and "no installed plugin registers a tokenizer named 'nosuch'" in r.output
    r = runner.invoke(cli, [*base, "--tokenizer", f"mtest_w={other}", "--out", str(tmp_path / "p5.parquet")])
    assert r.exit_code == 2 and "none of the tokenizers given writes the target 'tok_m_y'" in r.output
    r = runner.invoke(cli, [*base, "--tokenizers", str(fitted["dir"] / "set1"), "--values", "v.npy",
                            "--out", str(tmp_path / "p5.parquet")])
    assert r.exit_code == 2 and "not --values and --tokenizers" in r.output


def test_cli_embed_and_train_are_strict_unless_allowed(fitted, run, tmp_path):
    _, model_dir = run
    _load_plugin_commands()
    runner = CliRunner()
    embed = ["embed", "--model", str(model_dir), "--tokens", str(fitted["store2"]), "--quiet",
             "--out", str(tmp_path / "e.parquet")]
    r = runner.invoke(cli, embed)
    assert r.exit_code != 0 and isinstance(r.exception, IncompatibleKeyError)
    assert fitted["tok1"].fingerprint in str(r.exception) and fitted["tok2"].fingerprint in str(r.exception)
    assert not (tmp_path / "e.parquet").exists()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = runner.invoke(cli, [*embed, "--allow-fingerprint-mismatch"])
    assert r.exit_code == 0, (r.output, r.exception)
    allowed = [str(w.message) for w in caught if w.category is FingerprintMismatchWarning]
    assert len(allowed) == 1 and "'tok_m_x', 'tok_m_y', 'tok_m_z'" in allowed[0]  # warned once, not per check
    assert pq.read_table(tmp_path / "e.parquet").num_rows == 400
    cfg = tmp_path / "model.yaml"
    cfg.write_text(json.dumps(CONFIG))
    train = ["train", "--tokens", str(fitted["store1"]), "--config", str(cfg), "--tokenizers",
             str(fitted["dir"] / "set2"), "--out", str(tmp_path / "run"), "--quiet"]
    r = runner.invoke(cli, train)
    assert r.exit_code != 0 and isinstance(r.exception, IncompatibleKeyError)
    with pytest.warns(FingerprintMismatchWarning):
        r = runner.invoke(cli, [*train, "--allow-fingerprint-mismatch"])
    assert r.exit_code == 0, (r.output, r.exception)
