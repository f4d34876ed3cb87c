"""Disk full: writes past a file size limit fail cleanly and leave the previous state.

Each write runs in a child of the fault driver under ``RLIMIT_FSIZE`` (with SIGXFSZ ignored,
so a write past the limit fails with EFBIG, as on a full disk), for limits from 0 bytes to
more than the largest file the write makes. Each run either completes (the new state loads)
or raises an ``OSError`` or ``AstromodalError`` naming the file it was writing; the previous
state still loads, and no temporary file is left.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
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

from astromodal_core.pipeline import LocalEngine, encode_files, merge_store, store_path_for  # noqa: E402
from astromodal_core.tokenizer_set import TokenizerSet  # noqa: E402

#: file size limits (bytes): nothing, parts of a companion / member / manifest / store part, all
LIMITS = (0, 100, 260, 700, 1500, 2070, 3000, 6000, 10_000, 12_500, 30_000, 10_000_000)


def _run_limited(driver: Any, op: str, make_args: Any, state_of: Any, where: Path) -> Counter:
    """Run ``op`` under each limit, writing a state other than the current one each time."""
    outcomes: Counter = Counter()
    current = state_of()
    for limit in LIMITS:
        args, target = make_args(current)
        reply = driver.request(mode="fsize", op=op, args=args, limit=limit)
        now = state_of()
        if reply["status"] == "completed":
            assert now == target, (limit, now, target)
        else:
            assert reply["status"] == "error", reply
            assert "OSError" in reply["mro"] or "AstromodalError" in reply["mro"], reply["traceback"]
            assert str(where) in reply["msg"], f"{reply['type']}: {reply['msg']!r} names no path under {where}"
            assert now == current, (limit, now, current)
        assert temps(where) == [], (limit, reply)
        outcomes[reply["status"]] += 1
        current = now
    assert outcomes["error"] >= 3 and outcomes["completed"] >= 1, outcomes
    return outcomes


def test_disk_full_tokenizer_save(driver: Any, states: dict[str, Any], tmp_path: Path) -> None:
    """Tokenizer.save over an existing file + companion pair."""
    path = tmp_path / "toy_tokenizer_config.npz"
    ToyTokenizer.load(states["toy"][0]).save(path)
    fps = states["fp"]["toy"]

    def make_args(current: str) -> tuple[dict[str, Any], str]:
        j = (fps.index(current) + 1) % len(fps)
        return {"src": states["toy"][j], "dst": str(path)}, fps[j]

    _run_limited(driver, "save", make_args, lambda: ToyTokenizer.load(path).fingerprint, tmp_path)
    ToyTokenizer.load(states["toy"][0]).save(path)  # the next run leaves the pair alone
    assert sorted(os.listdir(tmp_path)) == sorted([path.name, *tokenizer_files(path)])


def test_disk_full_set_write(driver: Any, sets: list[dict[str, Any]], tmp_path: Path) -> None:
    """TokenizerSet.write into an existing set."""
    d = tmp_path / "set"
    TokenizerSet.write(d, load_members(sets[0]["members"]))
    fps = [s["fp"] for s in sets]

    def make_args(current: dict[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
        j = (fps.index(current) + 1) % len(fps)
        return {"dir": str(d), "members": sets[j]["members"]}, fps[j]

    _run_limited(driver, "set_write", make_args, lambda: set_state(d), d)
    TokenizerSet.write(d, load_members(sets[0]["members"]))
    assert set(os.listdir(d)) == set_files(d, fps[0])


def test_disk_full_encode(driver: Any, encoded: list[dict[str, Any]], cubes: dict[str, Path],
                          tmp_path: Path) -> None:
    """pipeline.encode_files into an existing store: a part is old or new, never torn."""
    store = tmp_path / "store"
    files = [str(cubes["b"]), str(cubes["a"])]  # the smaller part first: some limits fit only it
    encode_files(files, encoded[0]["tokdir"], store, engine=LocalEngine(1), progress=False)
    parts = {c: store_path_for(store, cubes[c]) for c in ("a", "b")}

    def state() -> tuple[int, ...]:
        return tuple(store_state(parts[c], [e["parts"][c] for e in encoded]) for c in ("a", "b"))

    outcomes: Counter = Counter()
    for limit in LIMITS:
        before = state()
        j = 1 - before[0]
        reply = driver.request(mode="fsize", op="encode", limit=limit, args={
            "files": files, "tokdir": str(encoded[j]["tokdir"]), "store": str(store)})
        now = state()
        for c in (0, 1):
            assert now[c] in (before[c], j), (limit, before, now)
        if reply["status"] == "completed":
            assert now == (j, j)
        else:
            assert reply["status"] == "error", reply
            assert "OSError" in reply["mro"] or "AstromodalError" in reply["mro"], reply["traceback"]
            assert str(store) in reply["msg"], f"{reply['type']}: {reply['msg']!r} names no store part"
        assert temps(store) == [], (limit, reply)
        outcomes[(reply["status"], now)] += 1
    assert outcomes[("completed", (0, 0))] + outcomes[("completed", (1, 1))] >= 1, outcomes
    assert outcomes[("error", (0, 1))] + outcomes[("error", (1, 0))] >= 1, outcomes  # b new, a old
    assert sum(n for (s, _), n in outcomes.items() if s == "error") >= 3, outcomes
    encode_files(files, encoded[0]["tokdir"], store, engine=LocalEngine(1), progress=False)
    assert state() == (0, 0)
    assert sorted(os.listdir(store)) == sorted(p.name for p in parts.values())


def test_disk_full_merge(driver: Any, encoded: list[dict[str, Any]], tmp_path: Path) -> None:
    """store_dir.merge_store over an existing merged file."""
    out = tmp_path / "all.tokens.parquet"
    merge_store(encoded[0]["store"], out)
    candidates = [e["merged_state"] for e in encoded]

    def make_args(current: int) -> tuple[dict[str, Any], int]:
        return {"store": str(encoded[1 - current]["store"]), "out": str(out)}, 1 - current

    _run_limited(driver, "merge", make_args, lambda: store_state(out, candidates), tmp_path)
    assert os.listdir(tmp_path) == [out.name]
