"""Fixtures of the reliability tests: an isolated registry holding the toys, toy datacubes,
fitted toy states, and the fault driver subprocess (see ``fault_driver.py``)."""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from astromodal_core import registry

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from reliability_toys import (  # noqa: E402
    PLUGIN_NAME,
    ToyTokenizer,
    ToyTwoTokenizer,
    load_members,
    register,
    write_toy_cube,
)


@contextlib.contextmanager
def toys_only() -> Iterator[None]:
    """A registry holding no installed plugin, only the toys (``toy``, ``toy2``)."""
    import astromodal_core

    old = os.environ.get(registry.ENV_VAR)
    os.environ[registry.ENV_VAR] = ""
    registry.reset()
    register()
    try:
        yield
    finally:
        astromodal_core.unregister(PLUGIN_NAME)
        registry.reset()
        if old is None:
            del os.environ[registry.ENV_VAR]
        else:
            os.environ[registry.ENV_VAR] = old


@pytest.fixture(autouse=True)
def toys_registry() -> Any:
    """Every test sees only the toys in the registry."""
    with toys_only():
        yield


@pytest.fixture(scope="session")
def cubes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("cubes")
    return {"a": write_toy_cube(d / "a.parquet", 300, 1), "b": write_toy_cube(d / "b.parquet", 200, 2)}


@pytest.fixture(scope="session")
def states(cubes: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Fitted toy states saved once: ``{"toy": [path...], "toy2": [path...]}`` (n_bins 4, 6, 8)
    and their fingerprints ``{"fp": {"toy": [...], "toy2": [...]}}``."""
    d = tmp_path_factory.mktemp("states")
    out: dict[str, Any] = {"toy": [], "toy2": [], "fp": {"toy": [], "toy2": []}}
    for name, cls in (("toy", ToyTokenizer), ("toy2", ToyTwoTokenizer)):
        for n in (4, 6, 8) if name == "toy" else (5, 7, 9):
            tok = cls(n_bins=n).train([cubes["a"], cubes["b"]])
            out[name].append(str(tok.save(d / f"{name}_{n}.npz")))
            out["fp"][name].append(tok.fingerprint)
    return out


class Driver:
    """The fault driver subprocess: ``request(mode=..., op=..., ...)`` -> its JSON reply."""

    def __init__(self) -> None:
        env = {**os.environ, registry.ENV_VAR: ""}
        self.proc = subprocess.Popen([sys.executable, str(HERE / "fault_driver.py")], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=env, cwd=HERE)
        ready = self._read(120)
        assert "ready" in ready, ready

    def _read(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            self.proc.kill()
            raise AssertionError(f"fault driver gave no answer in {timeout} s (a hung child?)")
        line = self.proc.stdout.readline()
        if not line:
            raise AssertionError(f"fault driver exited with {self.proc.wait()}")
        return json.loads(line)

    def request(self, timeout: float = 60, **req: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        reply = self._read(timeout)
        assert reply.get("status") != "driver-error", reply
        return reply

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="session")
def driver() -> Any:
    if not hasattr(os, "fork"):
        pytest.skip("the fault driver forks its children (POSIX only)")
    d = Driver()
    yield d
    d.close()


#: sets used by the tests: indices into states["toy"] and states["toy2"]; the last shares its
#: ``toy`` member with the first, so a set write must keep a file both sets reference
SET_CHOICES = ((0, 0), (1, 1), (2, 2), (0, 1))


@pytest.fixture(scope="session")
def sets(states: dict[str, Any]) -> list[dict[str, Any]]:
    """``[{"members": {name: state path}, "fp": {name: fingerprint}}]`` per SET_CHOICES."""
    return [{"members": {"toy": states["toy"][i], "toy2": states["toy2"][j]},
             "fp": {"toy": states["fp"]["toy"][i], "toy2": states["fp"]["toy2"][j]}}
            for i, j in SET_CHOICES]


@pytest.fixture(scope="session")
def encoded(cubes: dict[str, Path], sets: list[dict[str, Any]],
            tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """Sets 0 and 1 written, both cubes encoded with each, and each store merged; with the
    tokens every part and merged file must hold."""
    from astromodal_core.pipeline import LocalEngine, encode_files, merge_store, store_path_for
    from astromodal_core.store import read_token_store
    from astromodal_core.tokenizer_set import TokenizerSet

    d = tmp_path_factory.mktemp("encoded")
    out = []
    with toys_only():
        for i in (0, 1):
            tdir = d / f"tok{i}"
            tset = TokenizerSet.write(tdir, load_members(sets[i]["members"]))
            sdir = d / f"store{i}"
            encode_files([cubes["a"], cubes["b"]], tdir, sdir, engine=LocalEngine(1), progress=False)
            merged = merge_store(sdir, d / f"merged{i}.tokens.parquet")
            fps = tset.key_fingerprints()
            out.append({
                "tokdir": tdir, "store": sdir, "merged": merged,
                "parts": {c: {"fps": fps, "tokens": read_token_store(store_path_for(sdir, cubes[c]))}
                          for c in ("a", "b")},
                "merged_state": {"fps": fps, "tokens": read_token_store(merged)},
            })
    return out
