"""kill -9 during the core's writes: the old or the new state loads, never a mix.

Each write runs in a child of the fault driver, which SIGKILLs it just before its k-th I/O
event (every open / write / fsync / rename / unlink / parquet batch of one run, swept in
turn) and after random delays into a loop of writes. After every kill the output must load
whole, as the state it held before or the state being written; the next ordinary run leaves
no temporary file. (Tokenizer.save itself is covered by tests/core/test_tokenizer_base.py.)
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reliability_toys import load_members, set_files, set_state, store_state, temps  # noqa: E402

from astromodal_core.pipeline import LocalEngine, encode_files, merge_store, store_path_for  # noqa: E402
from astromodal_core.tokenizer_set import TokenizerSet  # noqa: E402


def _sweep(driver: Any, op: str, make_args: Any, state_of: Any, n_kills: int, step: int = 1,
           where: Path | None = None) -> tuple[Counter, list[int]]:
    """Kill run i of ``op`` (arguments ``make_args(i, current state)``) before its k-th event,
    for k = 0, step, 2 step... past the end of one run; check the state after each kill.

    ``make_args`` returns ``(args, target)``; ``state_of()`` the state now on disk. Returns the
    counts of (driver status, whether the target state is on disk), and the k whose kill left
    a temporary file in ``where``."""
    seen: Counter = Counter()
    left_temps = []
    current = state_of()
    for i, k in enumerate(range(0, n_kills, step)):
        args, target = make_args(i, current)
        assert target != current
        reply = driver.request(mode="kill_at", op=op, args=args, k=k)
        assert reply["status"] in ("killed", "completed"), reply
        now = state_of()
        assert now in (current, target), f"kill before event {k}: {now} is neither {current} nor {target}"
        seen[(reply["status"], now == target)] += 1
        if where is not None and temps(where):
            left_temps.append(k)
        current = now
    return seen, left_temps


def _leave_temps(driver: Any, op: str, args: dict[str, Any], ks: list[int], where: Path) -> None:
    """Kill ``op`` at the first of ``ks`` that leaves a temporary file in ``where``."""
    for k in ks:
        driver.request(mode="kill_at", op=op, args=args, k=k)
        if temps(where):
            return
    raise AssertionError(f"no kill of {op} at {ks} left a temporary file")


def _events(driver: Any, op: str, args: dict[str, Any]) -> int:
    reply = driver.request(mode="count", op=op, args=args)
    assert reply["status"] == "completed", reply
    return int(reply["events"])


def _timed(driver: Any, op: str, args_list: list[dict[str, Any]], state_of: Any, allowed: list[Any],
           seed: int, n: int = 5) -> None:
    """SIGKILL a loop of writes after random delays; the output always holds an allowed state."""
    rng = np.random.default_rng(seed)
    for delay in rng.uniform(0.0, 0.3, n):
        assert driver.request(mode="timed", op=op, args_list=args_list, delay=float(delay))["status"] == "killed"
        assert state_of() in allowed


def _next_target(i: int, current: Any, choices: list[Any]) -> int:
    j = i % len(choices)
    return j if choices[j] != current else (j + 1) % len(choices)


def test_kill_set_write(driver: Any, sets: list[dict[str, Any]], tmp_path: Path) -> None:
    """TokenizerSet.write into an existing set: both members old or both new."""
    d = tmp_path / "set"
    TokenizerSet.write(d, load_members(sets[0]["members"]))
    fps = [s["fp"] for s in sets]

    def make_args(i: int, current: dict[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
        j = _next_target(i, current, fps)
        return {"dir": str(d), "members": sets[j]["members"]}, fps[j]

    n = _events(driver, "set_write", make_args(1, fps[0])[0])
    seen, left = _sweep(driver, "set_write", make_args, lambda: set_state(d), n + 2, where=d)
    assert seen[("killed", False)] and seen[("killed", True)] and seen[("completed", True)], seen
    _timed(driver, "set_write", [{"dir": str(d), "members": s["members"]} for s in sets],
           lambda: set_state(d), fps, seed=1)
    # a killed write of a set sharing no file with the next run's set leaves a temporary file
    _leave_temps(driver, "set_write", {"dir": str(d), "members": sets[2]["members"]}, left, d)
    TokenizerSet.write(d, load_members(sets[0]["members"]))  # the next run
    assert temps(d) == []
    assert set(os.listdir(d)) == set_files(d, fps[0])


def test_kill_train_tokenizers(driver: Any, sets: list[dict[str, Any]], cubes: dict[str, Path],
                               tmp_path: Path) -> None:
    """pipeline.train_tokenizers into an existing set directory."""
    d = tmp_path / "tok"
    files = [str(cubes["a"]), str(cubes["b"])]
    configs = [{"tokenizers": {"toy": {"n_bins": a}, "toy2": {"n_bins": b}}} for a, b in ((4, 5), (6, 7), (8, 9))]
    fps = [s["fp"] for s in sets[:3]]  # the states fixture trains the same settings on the same files
    TokenizerSet.write(d, load_members(sets[0]["members"]))

    def make_args(i: int, current: dict[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
        j = _next_target(i, current, fps)
        return {"config": configs[j], "files": files, "dir": str(d)}, fps[j]

    n = _events(driver, "train", make_args(1, fps[0])[0])
    assert set_state(d) == fps[1]
    seen, left = _sweep(driver, "train", make_args, lambda: set_state(d), n + 2, step=2, where=d)
    assert seen[("killed", False)] and seen[("killed", True)], seen
    _timed(driver, "train", [{"config": c, "files": files, "dir": str(d)} for c in configs],
           lambda: set_state(d), fps, seed=2, n=4)
    _leave_temps(driver, "train", {"config": configs[2], "files": files, "dir": str(d)}, left, d)
    TokenizerSet.write(d, load_members(sets[0]["members"]))
    assert temps(d) == []
    assert set(os.listdir(d)) == set_files(d, fps[0])


def test_kill_encode_files(driver: Any, encoded: list[dict[str, Any]], cubes: dict[str, Path],
                           tmp_path: Path) -> None:
    """pipeline.encode_files into an existing store: each part is its old or its new whole
    parquet; the next ordinary (not forced) run leaves no temporary file."""
    store = tmp_path / "store"
    files = [str(cubes["a"]), str(cubes["b"])]
    encode_files(files, encoded[0]["tokdir"], store, engine=LocalEngine(1), progress=False)
    parts = {c: store_path_for(store, cubes[c]) for c in ("a", "b")}

    def state() -> tuple[int, int]:
        return tuple(store_state(parts[c], [e["parts"][c] for e in encoded]) for c in ("a", "b"))

    def make_args(i: int, current: tuple[int, int]) -> tuple[dict[str, Any], tuple[int, int]]:
        j = 1 - current[0] if current[0] == current[1] else i % 2
        return {"files": files, "tokdir": str(encoded[j]["tokdir"]), "store": str(store)}, (j, j)

    assert state() == (0, 0)
    n = _events(driver, "encode", make_args(0, (0, 0))[0])
    assert state() == (1, 1)
    seen: Counter = Counter()
    current = state()
    left = []
    for i, k in enumerate(range(0, n + 2, 2)):
        args, target = make_args(i, current)
        reply = driver.request(mode="kill_at", op="encode", args=args, k=k)
        assert reply["status"] in ("killed", "completed"), reply
        now = state()
        for c in (0, 1):  # each part on its own: old or new
            assert now[c] in (current[c], target[c]), (k, now, current, target)
        seen[(reply["status"], now)] += 1
        if temps(store):
            left.append(k)
        current = now
    assert len({s for _, s in seen}) >= 3, seen  # old, new, and one part of each
    _timed(driver, "encode", [{"files": files, "tokdir": str(e["tokdir"]), "store": str(store)} for e in encoded],
           state, [(0, 0), (0, 1), (1, 0), (1, 1)], seed=3, n=4)
    encode_files(files, encoded[0]["tokdir"], store, engine=LocalEngine(1), progress=False)
    # a killed re-encode with the other set leaves a temporary part; the next run skips that
    # part (it is up to date) and must still remove the temporary file
    _leave_temps(driver, "encode", {"files": files, "tokdir": str(encoded[1]["tokdir"]), "store": str(store)},
                 left, store)
    assert state() == (0, 0)
    encode_files(files, encoded[0]["tokdir"], store, engine=LocalEngine(1), progress=False)  # next run
    assert state() == (0, 0)
    assert temps(store) == []
    assert sorted(os.listdir(store)) == sorted(p.name for p in parts.values())


def test_kill_merge_store(driver: Any, encoded: list[dict[str, Any]], tmp_path: Path) -> None:
    """store_dir.merge_store over an existing merged file."""
    out = tmp_path / "all.tokens.parquet"
    merge_store(encoded[0]["store"], out)
    candidates = [e["merged_state"] for e in encoded]

    def make_args(i: int, current: int) -> tuple[dict[str, Any], int]:
        return {"store": str(encoded[1 - current]["store"]), "out": str(out)}, 1 - current

    n = _events(driver, "merge", make_args(0, 0)[0])
    seen, left = _sweep(driver, "merge", make_args, lambda: store_state(out, candidates), n + 2,
                        where=tmp_path)
    assert seen[("killed", False)] and seen[("completed", True)], seen
    _timed(driver, "merge", [{"store": str(e["store"]), "out": str(out)} for e in encoded],
           lambda: store_state(out, candidates), [0, 1], seed=4)
    _leave_temps(driver, "merge", {"store": str(encoded[1]["store"]), "out": str(out)}, left, tmp_path)
    merge_store(encoded[0]["store"], out)
    assert store_state(out, candidates) == 0
    assert temps(tmp_path) == []
    assert os.listdir(tmp_path) == [out.name]
