"""The Tokenizer base: from_config, save/load as one atomic unit, streaming, the kit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from astromodal_core import CodecFormatError, ConfigError, NotFittedError, TokenKeyError
from astromodal_core.store import read_token_store
from astromodal_core.testing import (
    TokenizerCheckError,
    TokenizerChecks,
    check_layouts,
    check_save_is_atomic,
    check_tokenizer,
    check_value_protocol,
    parametrize_with_checks,
)

DATA = Path(__file__).parent
sys.path.insert(0, str(DATA))
from toy_tokenizer import ToyTokenizer, write_toy_cube  # noqa: E402


@pytest.fixture(scope="module")
def cubes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("toy")
    return {"a": write_toy_cube(d / "a.parquet", 300, 1), "b": write_toy_cube(d / "b.parquet", 200, 2),
            "test": write_toy_cube(d / "test.parquet", 150, 3, first_missing=True)}


def test_from_config_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"^tokenizers\.toy\.nbins: unknown setting; known: \['batch_size'"):
        ToyTokenizer.from_config({"nbins": 3})
    with pytest.raises(ConfigError, match=r"^tokenizers\.toy: n_bins must be in \[2, 1000\], got 1$"):
        ToyTokenizer.from_config({"n_bins": 1})
    with pytest.raises(ConfigError, match="expected a mapping"):
        ToyTokenizer.from_config(["n_bins"])  # type: ignore[arg-type]
    assert ToyTokenizer.from_config({"n_bins": 4}).settings()["n_bins"] == 4


def test_encode_streams_and_store_matches(cubes: dict[str, Path], tmp_path: Path) -> None:
    tok = ToyTokenizer(n_bins=4).train([cubes["a"], cubes["b"]])
    res = tok.encode(cubes["test"])
    assert res["id_col"] == "id" and len(res["ids"]) == 150
    assert res["tok_toy_x"][0] == 4  # NaN -> mask token
    flat, indptr = res["tok_toy_xs"]
    assert indptr[0] == 0 and indptr[1] == 0 and len(indptr) == 151 and indptr[-1] == len(flat)
    # batches of 64 rows: the joined ragged column equals one pass over the file
    whole = tok.encode(cubes["test"], batch_size=10_000)
    np.testing.assert_array_equal(whole["tok_toy_xs"][0], flat)
    np.testing.assert_array_equal(whole["tok_toy_xs"][1], indptr)
    out = tok.encode_to_store(cubes["test"], tmp_path / "s.tokens.parquet")
    ids, cols = read_token_store(out)
    np.testing.assert_array_equal(ids, res["ids"])
    np.testing.assert_array_equal(cols["tok_toy_x"], res["tok_toy_x"])


def test_save_load_pair_and_stale_companions(cubes: dict[str, Path], tmp_path: Path) -> None:
    path = tmp_path / "toy_tokenizer_config.npz"
    a = ToyTokenizer(n_bins=4).train(cubes["a"])
    a.save(path)
    comp_a = sorted(p.name for p in tmp_path.glob("*.safetensors"))
    assert comp_a == [f"toy_tokenizer_config.edges.{_companion_fp(a)}.safetensors"]
    b = ToyTokenizer(n_bins=6).train(cubes["b"])
    b.save(path)
    assert ToyTokenizer.load(path).fingerprint == b.fingerprint != a.fingerprint
    # the old companion is gone, the new one is the only one left
    assert sorted(p.name for p in tmp_path.glob("*.safetensors")) == [
        f"toy_tokenizer_config.edges.{_companion_fp(b)}.safetensors"]
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]


def _companion_fp(tok: ToyTokenizer) -> str:
    from astromodal_core.serialize import fingerprint

    return fingerprint({}, {"edges": np.ascontiguousarray(tok.edges)})


def test_load_refuses_bad_state(cubes: dict[str, Path], tmp_path: Path) -> None:
    from astromodal_core.serialize import load_npz, save_npz, save_safetensors

    path = tmp_path / "toy_tokenizer_config.npz"
    tok = ToyTokenizer(n_bins=4).train(cubes["a"])
    tok.save(path)
    config, arrays, _ = load_npz(path)
    # descending edges, re-fingerprinted so only the validation can catch them
    comp = config["__companions__"]["edges"]
    bad = tok.edges[:, ::-1].copy()
    fp = save_safetensors(tmp_path / "bad.safetensors", {"edges": bad})
    comp.update(file="bad.safetensors", fingerprint=fp)
    save_npz(path, config, arrays, kind="toy_tokenizer")
    with pytest.raises(CodecFormatError, match="toy edges: bin edges are not in increasing order"):
        ToyTokenizer.load(path)
    comp.update(file="../bad.safetensors")
    save_npz(path, config, arrays, kind="toy_tokenizer")
    with pytest.raises(CodecFormatError, match="companion 'edges' names '../bad.safetensors', not a plain file name"):
        ToyTokenizer.load(path)
    (tmp_path / "random.npz").write_bytes(os.urandom(2000))
    with pytest.raises(CodecFormatError, match=r"random\.npz: truncated or corrupt file \(not an \.npz zip archive\)"):
        ToyTokenizer.load(tmp_path / "random.npz")
    with pytest.raises(NotFittedError):
        ToyTokenizer().save(path)
    with pytest.raises(IsADirectoryError):
        tok.save(tmp_path)


def test_value_protocol_and_unknown_key(cubes: dict[str, Path]) -> None:
    tok = ToyTokenizer(n_bins=4).train(cubes["a"])
    v = tok.token_values("tok_toy_x")
    assert v.shape == (5,) and np.isnan(v[4]) and np.all(np.diff(v[:4]) > 0)
    with pytest.raises(TokenKeyError, match=r"writes no token key 'tok_nope'; it writes \['tok_toy_x', 'tok_toy_xs'\]"):
        tok.token_values("tok_nope")


# the conformance kit: one pytest id per check ------------------------------------------------
_CUBES: dict[str, Path] = {}


def _lazy(name: str) -> Path:
    if not _CUBES:
        import tempfile

        d = Path(tempfile.mkdtemp(prefix="toykit"))
        _CUBES.update(a=write_toy_cube(d / "a.parquet", 300, 1),
                      test=write_toy_cube(d / "test.parquet", 150, 3, first_missing=True))
    return _CUBES[name]


class _LazyPath(os.PathLike):
    def __init__(self, name: str):
        self.name = name

    def __fspath__(self) -> str:
        return str(_lazy(self.name))


@parametrize_with_checks(lambda: ToyTokenizer(n_bins=8), [_LazyPath("a")], _LazyPath("test"),
                         missing_file=_LazyPath("test"))
def test_toy_tokenizer_conforms(check) -> None:
    check()


def test_check_tokenizer_returns_the_checks(cubes: dict[str, Path]) -> None:
    done = check_tokenizer(lambda: ToyTokenizer(n_bins=8), [cubes["a"]], cubes["test"], missing_file=cubes["test"])
    assert done[:3] == ["check_unfitted_raises", "check_from_config", "check_token_keys"]
    assert "check_save_is_atomic" in done and "check_value_protocol" in done


def test_kit_catches_dense_output_for_a_ragged_key(cubes: dict[str, Path]) -> None:
    class Dense(ToyTokenizer):
        def _encode_batch(self, batch, path):  # type: ignore[no-untyped-def]
            ids, cols = super()._encode_batch(batch, path)
            flat, indptr = cols["tok_toy_xs"]
            cols["tok_toy_xs"] = np.full((len(ids), 16), 8, dtype=np.uint16)
            return ids, cols

    ctx = TokenizerChecks(Dense, [cubes["a"]], cubes["test"])
    with pytest.raises(TokenizerCheckError, match="Dense fails check_layouts: tok_toy_xs: a ragged key must be"):
        check_layouts(ctx)


def test_kit_catches_non_atomic_save(cubes: dict[str, Path]) -> None:
    from astromodal_core.serialize import save_npz, save_safetensors

    class Unsafe(ToyTokenizer):
        def save(self, path):  # type: ignore[no-untyped-def]
            # the old two-step save: companion overwritten in place, then the npz
            save_safetensors(Path(path).with_suffix(".safetensors"), {"edges": self.edges})
            save_npz(path, self.settings(), {}, kind=self.kind)

        @classmethod
        def load(cls, path, **kw):  # type: ignore[no-untyped-def]
            from astromodal_core.serialize import load_npz, load_safetensors

            config, _, _ = load_npz(path)
            tok = cls(**config)
            tok.edges = load_safetensors(Path(path).with_suffix(".safetensors"))[0]["edges"]
            return tok

    ctx = TokenizerChecks(Unsafe, [cubes["a"]], cubes["test"])
    with pytest.raises(TokenizerCheckError, match="Unsafe fails check_save_is_atomic"):
        check_save_is_atomic(ctx)


def test_kit_catches_values_out_of_order(cubes: dict[str, Path]) -> None:
    class Shuffled(ToyTokenizer):
        def token_values(self, key: str) -> np.ndarray:
            v = super().token_values(key)
            v[[0, 1]] = v[[1, 0]]
            return v

    with pytest.raises(TokenizerCheckError, match="tok_toy_x: values are not ordered like the ids"):
        check_value_protocol(TokenizerChecks(Shuffled, [cubes["a"]], cubes["test"]))


# fault injection: kill -9 at random moments of repeated saves -----------------------------------
_SAVER = textwrap.dedent("""
    import sys
    sys.path.insert(0, {root!r})
    from toy_tokenizer import ToyTokenizer
    toks = [ToyTokenizer(n_bins=n).train({cube!r}) for n in (4, 6, 8)]
    print("ready", flush=True)
    i = 0
    while True:
        toks[i % 3].save({path!r})
        i += 1
""")


def test_kill_during_saves_leaves_a_loadable_pair(cubes: dict[str, Path], tmp_path: Path) -> None:
    """SIGKILL a process that saves three states in a loop over one path, at random moments:
    the path always loads one whole state, and the next save leaves no temporary file."""
    root = str(DATA)
    path = tmp_path / "toy_tokenizer_config.npz"
    expected = {ToyTokenizer(n_bins=n).train(cubes["a"]).fingerprint for n in (4, 6, 8)}
    rng = np.random.default_rng(0)
    script = _SAVER.format(root=root, cube=str(cubes["a"]), path=str(path))
    kills = 0
    for _ in range(12):
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, cwd=root)
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
        import time

        time.sleep(float(rng.uniform(0.0, 0.15)))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        if path.exists():
            assert ToyTokenizer.load(path).fingerprint in expected
    assert kills == 12
    ToyTokenizer(n_bins=4).train(cubes["a"]).save(path)
    leftovers = [p.name for p in tmp_path.iterdir() if ".tmp" in p.name]
    assert leftovers == []
    assert len(list(tmp_path.glob("*.safetensors"))) == 1


def test_a_tokenizer_without_a_way_to_encode_fails_where_it_is_defined() -> None:
    from astromodal_core.tokenizer import Tokenizer

    with pytest.raises(TypeError, match=r"^NoEncode must implement iter_token_batches, or input_columns "
                                        r"and _encode_batch \(missing: _encode_batch\)$"):
        class NoEncode(ToyTokenizer):  # the base's iter_token_batches needs both hooks
            _encode_batch = None

    class Intermediate(Tokenizer):  # still abstract: checked in its concrete subclasses
        name = "intermediate"

    class WithHooks(ToyTokenizer):  # the batch hooks serve the base's iter_token_batches
        def input_columns(self, path):
            return ["id"]

        def _encode_batch(self, batch, path):
            return np.asarray(batch.column(0)), {}

    assert WithHooks.iter_token_batches is Tokenizer.iter_token_batches
