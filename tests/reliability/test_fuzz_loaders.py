"""Property-based fuzzing of every core loader.

Each loader is fed random bytes, truncated / bit-flipped valid files, and structurally valid
files with odd content (zips with odd members, metadata of random JSON shapes, versions that
are not integers, configs and companions that pass the fingerprint check but hold nonsense).
The only allowed outcomes are success (a well-formed result) or a ``CodecFormatError``,
``DataError`` or ``ConfigError`` whose message names the file. Any other exception escaping a
loader is a bug.

``ASTROMODAL_FUZZ_EXAMPLES`` raises the number of examples per test (default: a few seconds'
worth); ``ASTROMODAL_FUZZ_RANDOM=1`` draws new examples each run instead of the fixed ones.
"""

from __future__ import annotations

import copy
import io
import json
import os
import struct
import sys
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reliability_toys import ToyTokenizer, load_members  # noqa: E402

from astromodal_core import CodecFormatError, ConfigError, DataError, TokenKey  # noqa: E402
from astromodal_core.serialize import (  # noqa: E402
    fingerprint,
    load_npz,
    load_safetensors,
    save_npz,
    save_safetensors,
)
from astromodal_core.store import (  # noqa: E402
    STORE_META_KEY,
    iter_token_store,
    read_token_store,
    store_metadata,
    write_token_store,
)
from astromodal_core.tokenizer import companion_path  # noqa: E402
from astromodal_core.tokenizer_set import MANIFEST, TokenizerSet  # noqa: E402

ALLOWED = (CodecFormatError, DataError, ConfigError)
FUZZ = settings(
    deadline=None,
    max_examples=int(os.environ.get("ASTROMODAL_FUZZ_EXAMPLES", "40")),
    database=None,
    derandomize=os.environ.get("ASTROMODAL_FUZZ_RANDOM", "") != "1",
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                           HealthCheck.data_too_large, HealthCheck.large_base_example],
)

DEEP_JSON = "[" * 100_000 + "]" * 100_000  # json.loads raises RecursionError
HUGE_INT_JSON = "9" * 5000  # json.loads raises ValueError (int digit limit), not JSONDecodeError


def outcome(fn: Callable[[], Any], path: Path) -> Any:
    """``fn()``, or None when it raised an allowed error naming ``path``; anything else escapes."""
    try:
        return fn()
    except ALLOWED as exc:
        assert str(path) in str(exc), f"{type(exc).__name__} does not name {path}: {exc}"
        return None


# strategies ------------------------------------------------------------------------------------
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=16,
)


@st.composite
def mutated(draw: Any, data: bytes) -> bytes:
    """``data`` truncated, bit-flipped, overwritten in a slice, or cut and spliced."""
    kind = draw(st.sampled_from(["truncate", "flip", "overwrite", "splice"]))
    b = bytearray(data)
    if kind == "truncate":
        return bytes(b[: draw(st.integers(0, len(b) - 1))])
    if kind == "flip":
        for _ in range(draw(st.integers(1, 8))):
            i = draw(st.integers(0, len(b) - 1))
            b[i] ^= 1 << draw(st.integers(0, 7))
        return bytes(b)
    if kind == "overwrite":
        i = draw(st.integers(0, len(b) - 1))
        patch = draw(st.binary(min_size=1, max_size=64))
        b[i : i + len(patch)] = patch
        return bytes(b)
    i, j = sorted(draw(st.lists(st.integers(0, len(b)), min_size=2, max_size=2)))
    return bytes(b[:i] + draw(st.binary(max_size=32)) + b[j:])


@st.composite
def mutated_json(draw: Any, doc: Any) -> Any:
    """``doc`` with 1-3 random edits (replace / delete / add) at random places."""
    doc = copy.deepcopy(doc)
    for _ in range(draw(st.integers(1, 3))):
        node, key, parent = doc, None, None
        while isinstance(node, (dict, list)) and node and draw(st.booleans()):
            keys = list(node) if isinstance(node, dict) else list(range(len(node)))
            parent, key = node, draw(st.sampled_from(keys))
            node = node[key]
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if parent is None:
            if action == "replace" or not isinstance(doc, (dict, list)):
                doc = draw(json_values)
            elif isinstance(doc, dict):
                doc[draw(st.text(max_size=8))] = draw(json_values)
            else:
                doc.append(draw(json_values))
        elif action == "delete":
            del parent[key]
        elif action == "add" and isinstance(node, dict):
            node[draw(st.text(max_size=8))] = draw(json_values)
        else:
            parent[key] = draw(json_values)
    return doc


small_arrays = st.one_of(
    st.lists(st.floats(), max_size=6).map(lambda v: np.array(v, dtype=np.float64)),
    st.lists(st.integers(-(2**63), 2**63 - 1), max_size=6).map(lambda v: np.array(v, dtype=np.int64)),
    st.lists(st.text(max_size=5), max_size=4).map(lambda v: np.array(v, dtype=str)),
    st.lists(st.booleans(), max_size=4).map(np.array),
    st.just(np.zeros((2, 0, 3), dtype=np.float32)),
    st.just(np.arange(6, dtype=">i4").reshape(2, 3)),
    st.just(np.asfortranarray(np.arange(6.0).reshape(2, 3))),
)


def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def _npy_header(shape: tuple[int, ...], descr: str = "<f8") -> bytes:
    """A .npy header declaring ``shape`` and ``descr``, with no data after it."""
    header = ("{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + repr(shape) + ", }").encode("latin1")
    header += b" " * (63 - (len(header) + 10) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header


member_contents = st.one_of(
    st.binary(max_size=200),
    small_arrays.map(_npy),
    st.just(_npy_header((1,), "|O") + b"\x80\x04N."),  # an object array: pickled bytes follow
    st.sampled_from([(1 << 40,), (1 << 62,), (2**64 + 5,), (-1,), (3, -2)]).map(_npy_header),  # lies
    st.sampled_from(["<q16", "O", "|V0", "<U0", "bogus"]).map(lambda d: _npy_header((2,), d)),
    st.just(b"\x93NUMPY\x01\x00\xff\xff{"),
)
member_names = st.one_of(
    st.sampled_from(["__config__.npy", "__format_version__.npy", "__kind__.npy", "__fingerprint__.npy",
                     "edges.npy", "x", "x.npy", "a/b.npy", "dir/", "../up.npy", "/abs.npy", ".npy"]),
    st.text(max_size=12),
)
compressions = st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA])


def _zip(members: list[tuple[str, bytes, int]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # duplicate member names are the point
        for name, content, comp in members:
            info = zipfile.ZipInfo(name or "_")
            info.compress_type = comp
            zf.writestr(info, content)
    return buf.getvalue()


def _valid_npz_members(config: Any = None, version: np.ndarray | None = None, kind: Any = "toy_tokenizer",
                       fp: Any = None, arrays: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    config = {"n_bins": 4} if config is None else config
    arrays = {"edges": np.arange(3.0)} if arrays is None else arrays
    return {"__config__": np.array(json.dumps(config, allow_nan=True)),
            "__format_version__": np.array(1) if version is None else version,
            "__kind__": np.array(kind), "__fingerprint__": np.array(fingerprint(config, arrays) if fp is None else fp),
            **arrays}


def _savez(members: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **members)
    return buf.getvalue()


def _unsupported_compression(data: bytes) -> bytes:
    """Set every compression method field of a zip to 99 (unknown)."""
    b = bytearray(data)
    for sig, off in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):
        i = b.find(sig)
        while i >= 0:
            b[i + off : i + off + 2] = struct.pack("<H", 99)
            i = b.find(sig, i + 4)
    return bytes(b)


def _encrypted(data: bytes) -> bytes:
    """Set the 'encrypted' flag bit on every member of a zip."""
    b = bytearray(data)
    for sig, off in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        i = b.find(sig)
        while i >= 0:
            b[i + off] |= 1
            i = b.find(sig, i + 4)
    return bytes(b)


VERSIONS = st.one_of(
    st.floats().map(lambda f: np.array(f)),
    st.sampled_from([np.array("1"), np.array(True), np.array([1, 1]), np.array(-1, dtype=np.int8),
                     np.array(2**64 - 1, dtype=np.uint64), np.array(1 + 1j), np.array(b"1"),
                     np.zeros((0,), dtype=np.int64), np.array(2**62)]),
)


# fixtures --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def toy_files(states: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A saved toy tokenizer's bytes: its .npz, its companion, the config and arrays inside."""
    d = tmp_path_factory.mktemp("toyfiles")
    path = ToyTokenizer.load(states["toy"][0]).save(d / "toy_tokenizer_config.npz")
    config, arrays, _ = load_npz(path)
    (part, ref), = config["__companions__"].items()
    return {"npz": path.read_bytes(), "companion_name": ref["file"], "part": part,
            "companion": (d / ref["file"]).read_bytes(), "config": config, "arrays": arrays}


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def _fresh(directory: Path, name: str) -> Path:
    """An empty directory ``name`` under ``directory`` (emptied when it exists)."""
    d = directory / name
    d.mkdir(exist_ok=True)
    for p in d.iterdir():
        p.unlink()
    return d


def _check_npz_result(result: Any) -> None:
    if result is not None:
        config, arrays, fp = result
        assert isinstance(config, dict) and isinstance(fp, str)
        assert all(isinstance(a, np.ndarray) for a in arrays.values())


# load_npz --------------------------------------------------------------------------------------
@FUZZ
@given(data=st.one_of(st.binary(max_size=2048), st.binary(max_size=512).map(lambda b: b"PK\x03\x04" + b)))
def test_load_npz_random_bytes(fuzz_dir: Path, data: bytes) -> None:
    path = _fresh(fuzz_dir, "npz_random") / "x.npz"
    path.write_bytes(data)
    _check_npz_result(outcome(lambda: load_npz(path), path))


@FUZZ
@given(data=st.data())
def test_load_npz_mutated_valid_file(fuzz_dir: Path, toy_files: dict[str, Any], data: Any) -> None:
    path = _fresh(fuzz_dir, "npz_mutated") / "x.npz"
    path.write_bytes(data.draw(mutated(toy_files["npz"])))
    _check_npz_result(outcome(lambda: load_npz(path, kind="toy_tokenizer"), path))


@FUZZ
@given(members=st.lists(st.tuples(member_names, member_contents, compressions), max_size=6),
       with_meta=st.booleans(), tweak=st.sampled_from([None, "compression", "encrypted"]))
@example(members=[("edges.npy", _npy_header((1 << 62,)), zipfile.ZIP_STORED)], with_meta=True, tweak=None)
@example(members=[("big.npy", _npy_header((2**64 + 5,)), zipfile.ZIP_STORED)], with_meta=True, tweak=None)
@example(members=[("x", b"not an array", zipfile.ZIP_STORED)], with_meta=True, tweak=None)
@example(members=[], with_meta=True, tweak="compression")
@example(members=[], with_meta=True, tweak="encrypted")
def test_load_npz_zips_with_odd_members(fuzz_dir: Path, members: list[tuple[str, bytes, int]], with_meta: bool,
                                        tweak: str | None) -> None:
    if with_meta:  # the four metadata members, valid, then the odd ones (which may shadow them)
        members = [(f"{k}.npy", _npy(v), zipfile.ZIP_STORED) for k, v in _valid_npz_members().items()] + members
    data = _zip(members)
    data = _unsupported_compression(data) if tweak == "compression" else _encrypted(data) if tweak == "encrypted" else data
    path = _fresh(fuzz_dir, "npz_zips") / "x.npz"
    path.write_bytes(data)
    _check_npz_result(outcome(lambda: load_npz(path), path))


@FUZZ
@given(version=VERSIONS, config=json_values, kind=st.one_of(st.just("toy_tokenizer"), st.integers(), st.text(max_size=5)),
       right_fp=st.booleans())
@example(version=np.array(1.0), config={"n_bins": 4}, kind="toy_tokenizer", right_fp=True)
@example(version=np.array(1), config=[1, 2], kind="toy_tokenizer", right_fp=True)
@example(version=np.array(1), config="a string", kind="toy_tokenizer", right_fp=True)
def test_load_npz_odd_metadata(fuzz_dir: Path, version: np.ndarray, config: Any, kind: Any, right_fp: bool) -> None:
    path = _fresh(fuzz_dir, "npz_meta") / "x.npz"
    path.write_bytes(_savez(_valid_npz_members(config=config, version=version, kind=kind,
                                               fp=None if right_fp else "0" * 16)))
    _check_npz_result(outcome(lambda: load_npz(path), path))


@pytest.mark.parametrize("raw", [DEEP_JSON, HUGE_INT_JSON, "[" * 5000 + "]" * 5000])
def test_load_npz_hostile_config_json(fuzz_dir: Path, raw: str) -> None:
    path = _fresh(fuzz_dir, "npz_json") / "x.npz"
    members = _valid_npz_members()
    members["__config__"] = np.array(raw)
    path.write_bytes(_savez(members))
    with pytest.raises(CodecFormatError, match=f"^{path}: "):
        load_npz(path)


# load_safetensors ------------------------------------------------------------------------------
def _check_st_result(result: Any) -> None:
    if result is not None:
        arrays, meta = result
        assert all(isinstance(a, np.ndarray) for a in arrays.values())
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items())


@FUZZ
@given(data=st.binary(max_size=2048))
def test_load_safetensors_random_bytes(fuzz_dir: Path, data: bytes) -> None:
    path = _fresh(fuzz_dir, "st_random") / "x.safetensors"
    path.write_bytes(data)
    _check_st_result(outcome(lambda: load_safetensors(path), path))


@FUZZ
@given(data=st.data(), expect=st.booleans())
def test_load_safetensors_mutated_valid_file(fuzz_dir: Path, toy_files: dict[str, Any], data: Any,
                                             expect: bool) -> None:
    path = _fresh(fuzz_dir, "st_mutated") / "x.safetensors"
    path.write_bytes(data.draw(mutated(toy_files["companion"])))
    fp = toy_files["config"]["__companions__"][toy_files["part"]]["fingerprint"] if expect else None
    _check_st_result(outcome(lambda: load_safetensors(path, expected_fingerprint=fp), path))


st_meta_values = st.one_of(st.text(max_size=20), json_values.map(json.dumps),
                           st.sampled_from(["1", "1.0", " 2 ", "x", "", "١", "1_000", HUGE_INT_JSON, "-5"]))


@FUZZ
@given(arrays=st.dictionaries(st.text(min_size=1, max_size=6), small_arrays.filter(lambda a: a.dtype.kind in "fiub"),
                              max_size=3),
       meta=st.dictionaries(st.one_of(st.sampled_from(["astromodal", "format_version", "fingerprint"]),
                                      st.text(max_size=6)), st_meta_values, max_size=4),
       packed=st.one_of(st.none(), st.dictionaries(st.sampled_from(["format_version", "fingerprint", "part"]),
                                                   st_meta_values, max_size=3).map(json.dumps),
                        json_values.map(json.dumps), st.sampled_from([DEEP_JSON, HUGE_INT_JSON]),
                        st.text(max_size=20)))
@example(arrays={}, meta={}, packed=HUGE_INT_JSON)
@example(arrays={}, meta={}, packed=DEEP_JSON)
@example(arrays={}, meta={}, packed=json.dumps({"format_version": HUGE_INT_JSON}))
@example(arrays={}, meta={"format_version": "1.5"}, packed=None)
def test_load_safetensors_odd_metadata(fuzz_dir: Path, arrays: dict[str, np.ndarray], meta: dict[str, str],
                                       packed: str | None) -> None:
    from safetensors.numpy import save

    if packed is not None:
        meta = {**meta, "astromodal": packed}
    path = _fresh(fuzz_dir, "st_meta") / "x.safetensors"
    path.write_bytes(save({k: np.ascontiguousarray(v) for k, v in arrays.items()}, metadata=meta))
    _check_st_result(outcome(lambda: load_safetensors(path), path))


@FUZZ
@given(header=st.one_of(json_values, st.dictionaries(st.text(max_size=6), st.fixed_dictionaries(
    {"dtype": st.sampled_from(["F64", "F32", "I64", "U8", "BOOL", "BF16", "F8_E4M3", "X"]),
     "shape": st.lists(st.integers(-2, 2**40), max_size=3),
     "data_offsets": st.lists(st.integers(-1, 64), min_size=0, max_size=3)}), max_size=3)),
       body=st.binary(max_size=128), declared=st.one_of(st.none(), st.integers(0, 2**64 - 1)))
def test_load_safetensors_crafted_header(fuzz_dir: Path, header: Any, body: bytes, declared: int | None) -> None:
    raw = json.dumps(header).encode()
    path = _fresh(fuzz_dir, "st_header") / "x.safetensors"
    path.write_bytes(struct.pack("<Q", len(raw) if declared is None else declared) + raw + body)
    _check_st_result(outcome(lambda: load_safetensors(path), path))


# Tokenizer.load ----------------------------------------------------------------------------------
def _write_pair(d: Path, toy_files: dict[str, Any], npz: bytes | None = None, companion: bytes | None = None) -> Path:
    path = d / "toy_tokenizer_config.npz"
    path.write_bytes(toy_files["npz"] if npz is None else npz)
    (d / toy_files["companion_name"]).write_bytes(toy_files["companion"] if companion is None else companion)
    return path


def _check_tokenizer(tok: Any) -> None:
    if tok is not None:
        assert tok.is_fitted
        assert len(tok.fingerprint) == 16
        assert [k.name for k in tok.token_keys] == ["tok_toy_x", "tok_toy_xs"]


@FUZZ
@given(data=st.data(), which=st.sampled_from(["npz", "companion"]))
def test_tokenizer_load_mutated_files(fuzz_dir: Path, toy_files: dict[str, Any], data: Any, which: str) -> None:
    d = _fresh(fuzz_dir, "tok_mutated")
    bad = data.draw(mutated(toy_files[which]))
    path = _write_pair(d, toy_files, **{which: bad})
    _check_tokenizer(outcome(lambda: ToyTokenizer.load(path), d))


@FUZZ
@given(data=st.data())
@example(data=None)
def test_tokenizer_load_odd_config(fuzz_dir: Path, toy_files: dict[str, Any], data: Any) -> None:
    """Configs that pass the fingerprint check (re-saved) but hold random edits."""
    d = _fresh(fuzz_dir, "tok_config")
    config = data.draw(mutated_json(toy_files["config"])) if data is not None else [1, 2]
    _write_pair(d, toy_files)
    path = d / "toy_tokenizer_config.npz"
    save_npz(path, config, toy_files["arrays"], kind=ToyTokenizer.kind)
    _check_tokenizer(outcome(lambda: ToyTokenizer.load(path), d))


@FUZZ
@given(edges=st.one_of(
    st.lists(st.floats(), min_size=0, max_size=8).map(lambda v: np.array(v).reshape(-1)),
    st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=6, max_size=6).map(
        lambda v: np.array(v).reshape(2, 3)),
    st.sampled_from([np.zeros((2, 3), dtype=np.int64), np.zeros((2, 3), dtype=np.bool_), np.zeros((3, 2)),
                     np.array([[1.0, np.nan, 3.0], [1.0, 2.0, 3.0]]), np.array([[3.0, 2.0, 1.0]] * 2),
                     np.zeros((2, 3), dtype=np.uint8), np.zeros((2, 3, 1))])),
    extra=st.booleans())
def test_tokenizer_load_odd_companion_arrays(fuzz_dir: Path, toy_files: dict[str, Any], edges: np.ndarray,
                                             extra: bool) -> None:
    """Companions whose fingerprints match the config but whose arrays are nonsense."""
    d = _fresh(fuzz_dir, "tok_companion")
    path = d / "toy_tokenizer_config.npz"
    part = toy_files["part"]
    tensors = {"edges": edges, **({"other": np.zeros(2)} if extra else {})}
    fp = save_safetensors(d / "tmp.safetensors", tensors)
    comp = companion_path(path, part, fp)
    (d / "tmp.safetensors").rename(comp)
    config = copy.deepcopy(toy_files["config"])
    config["__companions__"][part] = {"fingerprint": fp, "file": comp.name}
    save_npz(path, config, toy_files["arrays"], kind=ToyTokenizer.kind)
    _check_tokenizer(outcome(lambda: ToyTokenizer.load(path), d))


# TokenizerSet.read -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def set_dir(sets: list[dict[str, Any]], tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("fuzzset")
    TokenizerSet.write(d, load_members(sets[0]["members"]))
    return d


def _read_set(d: Path) -> Any:
    tset = TokenizerSet.read(d)
    tset.tokenizers()
    tset.token_keys()
    tset.key_fingerprints()
    return tset


@FUZZ
@given(raw=st.one_of(st.binary(max_size=512), json_values.map(lambda v: json.dumps(v).encode()),
                     st.sampled_from([DEEP_JSON.encode(), HUGE_INT_JSON.encode(), b"\xff\xfe{", b""])))
@example(raw=DEEP_JSON.encode())
@example(raw=HUGE_INT_JSON.encode())
@example(raw=b'{"tokenizers": [], "format_version": 1e400}')
def test_set_read_random_manifest(set_dir: Path, raw: bytes) -> None:
    d = set_dir / "random"
    d.mkdir(exist_ok=True)
    (d / MANIFEST).write_bytes(raw)
    outcome(lambda: _read_set(d), d)


@FUZZ
@given(data=st.data())
@example(data="inf")
def test_set_read_mutated_manifest(set_dir: Path, data: Any) -> None:
    """A valid manifest with random edits; on success every member still loads or fails
    with an allowed error (the member files are the real ones)."""
    doc = json.loads((set_dir / MANIFEST).read_text())
    if data == "inf":
        doc["tokenizers"][0]["token_keys"][0]["vocab_size"] = float("inf")
    else:
        doc = data.draw(mutated_json(doc))
    manifest = set_dir / MANIFEST
    original = manifest.read_bytes()
    try:
        manifest.write_text(json.dumps(doc))
        outcome(lambda: _read_set(set_dir), set_dir)
    finally:
        manifest.write_bytes(original)


# store_metadata -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def store_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("fuzzstore") / "s.tokens.parquet"
    keys = [TokenKey("tok_a", 9, mask_token=8), TokenKey("tok_r", 5, layout="ragged", max_length=4)]
    write_token_store(path, np.arange(4), {"tok_a": np.array([0, 1, 8, 2]),
                                           "tok_r": (np.array([1, 2, 3, 0, 4]), np.array([0, 2, 2, 4, 5]))},
                      keys, fingerprints={"tok_a": "a" * 16, "tok_r": "b" * 16})
    return path


def _read_store(path: Path) -> Any:
    meta = store_metadata(path)
    assert isinstance(meta["token_keys"], dict) and "id_col" in meta
    assert all(isinstance(k, TokenKey) for k in meta["token_keys"].values())
    read_token_store(path)
    for _ in iter_token_store(path):
        pass
    return meta


def _with_metadata(src: Path, dst: Path, metadata: dict[bytes, bytes]) -> None:
    table = pq.read_table(src)
    pq.write_table(table.replace_schema_metadata(metadata), dst)


@FUZZ
@given(raw=st.one_of(st.binary(max_size=256), json_values.map(lambda v: json.dumps(v).encode()),
                     st.sampled_from([DEEP_JSON.encode(), HUGE_INT_JSON.encode()])),
       others=st.dictionaries(st.binary(max_size=8), st.binary(max_size=16), max_size=2))
@example(raw=DEEP_JSON.encode(), others={})
@example(raw=HUGE_INT_JSON.encode(), others={})
def test_store_metadata_random_bytes(fuzz_dir: Path, store_file: Path, raw: bytes, others: dict[bytes, bytes]) -> None:
    path = _fresh(fuzz_dir, "store_raw") / "x.tokens.parquet"
    _with_metadata(store_file, path, {**others, STORE_META_KEY: raw})
    outcome(lambda: _read_store(path), path)


@FUZZ
@given(data=st.data())
@example(data="inf")
@example(data="missing-column")
@example(data="wrong-layout")
def test_store_metadata_mutated(fuzz_dir: Path, store_file: Path, data: Any) -> None:
    """The real store's metadata with random edits (token keys the columns do not match...)."""
    doc = json.loads(pq.read_schema(store_file).metadata[STORE_META_KEY])
    if data == "inf":
        doc["token_keys"]["tok_a"]["vocab_size"] = float("inf")
    elif data == "missing-column":
        doc["token_keys"]["tok_b"] = dict(doc["token_keys"]["tok_a"], name="tok_b")
    elif data == "wrong-layout":
        doc["token_keys"]["tok_a"], doc["token_keys"]["tok_r"] = doc["token_keys"]["tok_r"], doc["token_keys"]["tok_a"]
    else:
        doc = data.draw(mutated_json(doc))
    path = _fresh(fuzz_dir, "store_mut") / "x.tokens.parquet"
    _with_metadata(store_file, path, {STORE_META_KEY: json.dumps(doc).encode()})
    outcome(lambda: _read_store(path), path)


@FUZZ
@given(data=st.data())
def test_store_metadata_mutated_file(fuzz_dir: Path, store_file: Path, data: Any) -> None:
    path = _fresh(fuzz_dir, "store_bytes") / "x.tokens.parquet"
    path.write_bytes(data.draw(mutated(store_file.read_bytes())))
    outcome(lambda: _read_store(path), path)


def test_store_metadata_without_arrow_schema(fuzz_dir: Path, store_file: Path) -> None:
    """A parquet file whose embedded arrow schema is garbage."""
    path = _fresh(fuzz_dir, "store_schema") / "x.tokens.parquet"
    table = pq.read_table(store_file)
    meta = {**table.schema.metadata, b"ARROW:schema": b"garbage"}
    pq.write_table(table.replace_schema_metadata(meta), path, store_schema=False)
    outcome(lambda: _read_store(path), path)


def test_store_bit_flip_sweep(fuzz_dir: Path, store_file: Path) -> None:
    """Many seeded 1-3 bit flips of a real store (parquet's footer decoding raises several
    pyarrow error types, and UnicodeDecodeError, that a few examples rarely reach)."""
    data = store_file.read_bytes()
    rng = np.random.default_rng(0)
    path = _fresh(fuzz_dir, "store_flips") / "x.tokens.parquet"
    for _ in range(int(os.environ.get("ASTROMODAL_FUZZ_EXAMPLES", "40")) * 15):
        b = bytearray(data)
        for _ in range(int(rng.integers(1, 4))):
            b[int(rng.integers(0, len(b)))] ^= 1 << int(rng.integers(0, 8))
        path.write_bytes(b)
        outcome(lambda: _read_store(path), path)
