"""Concurrent writers to one output: two processes write different states in loops; afterwards
the output loads whole as one of the states, and no temporary or unreferenced file is left."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reliability_toys import (  # noqa: E402
    ToyTokenizer,
    load_members,
    set_files,
    set_state,
    store_state,
    temps,
    tokenizer_files,
)

from astromodal_core.pipeline import LocalEngine, encode_files, store_path_for  # noqa: E402
from astromodal_core.tokenizer_set import TokenizerSet  # noqa: E402


def _run(driver: Any, *jobs: tuple[str, list[dict[str, Any]], int]) -> None:
    reply = driver.request(mode="concurrent", timeout=120,
                           jobs=[{"op": op, "args_list": args, "n": n} for op, args, n in jobs])
    assert [s["status"] for s in reply["statuses"]] == ["completed"] * len(jobs), reply


def test_concurrent_tokenizer_saves(driver: Any, states: dict[str, Any], tmp_path: Path) -> None:
    """Two processes saving different states over one tokenizer path."""
    path = tmp_path / "toy_tokenizer_config.npz"
    ToyTokenizer.load(states["toy"][0]).save(path)
    save = [{"src": s, "dst": str(path)} for s in states["toy"]]
    _run(driver, ("save", save[:2], 20), ("save", save[2:], 20))
    assert ToyTokenizer.load(path).fingerprint in states["fp"]["toy"]
    assert temps(tmp_path) == []
    assert sorted(os.listdir(tmp_path)) == sorted([path.name, *tokenizer_files(path)])


def test_concurrent_set_writes(driver: Any, sets: list[dict[str, Any]], cubes: dict[str, Path],
                               tmp_path: Path) -> None:
    """Two processes writing different sets into one directory (one by TokenizerSet.write,
    then one by train_tokenizers against a set writer)."""
    d = tmp_path / "set"
    TokenizerSet.write(d, load_members(sets[0]["members"]))
    fps = [s["fp"] for s in sets]
    write = [{"dir": str(d), "members": s["members"]} for s in sets]
    _run(driver, ("set_write", write[:2], 10), ("set_write", write[2:], 10))
    assert set_state(d) in fps
    assert temps(d) == []
    assert set(os.listdir(d)) == set_files(d, set_state(d))

    files = [str(cubes["a"]), str(cubes["b"])]
    train = [{"config": {"tokenizers": {"toy": {"n_bins": 8}, "toy2": {"n_bins": 9}}}, "files": files, "dir": str(d)}]
    _run(driver, ("train", train, 4), ("set_write", write[:2], 8))
    assert set_state(d) in fps[:3]
    assert temps(d) == []
    assert set(os.listdir(d)) == set_files(d, set_state(d))


def test_concurrent_encodes_and_merges(driver: Any, encoded: list[dict[str, Any]], cubes: dict[str, Path],
                                       tmp_path: Path) -> None:
    """Two processes encoding one store with different sets; two merging into one file."""
    store = tmp_path / "store"
    files = [str(cubes["a"]), str(cubes["b"])]
    encode_files(files, encoded[0]["tokdir"], store, engine=LocalEngine(1), progress=False)
    enc = [{"files": files, "tokdir": str(e["tokdir"]), "store": str(store)} for e in encoded]
    _run(driver, ("encode", enc[:1], 4), ("encode", enc[1:], 4))
    for c in ("a", "b"):
        assert store_state(store_path_for(store, cubes[c]), [e["parts"][c] for e in encoded]) in (0, 1)
    assert temps(store) == []

    out = tmp_path / "merged" / "all.tokens.parquet"
    merge = [{"store": str(e["store"]), "out": str(out)} for e in encoded]
    _run(driver, ("merge", merge[:1], 6), ("merge", merge[1:], 6))
    assert store_state(out, [e["merged_state"] for e in encoded]) in (0, 1)
    assert os.listdir(out.parent) == [out.name]
