"""Shared by the reliability tests and their subprocess driver: two registrable toy tokenizers.

``toy`` is the core tests' :class:`ToyTokenizer` (a ``.npz`` + safetensors companion pair, a
scalar and a ragged key); ``toy2`` is the same tokenizer writing ``tok_toy2_*`` keys, so a set
can hold two members and a torn set (one member old, one new) is detectable.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import attrs
import numpy as np

CORE_TESTS = Path(__file__).resolve().parent.parent / "core"
if str(CORE_TESTS) not in sys.path:
    sys.path.insert(0, str(CORE_TESTS))

from toy_tokenizer import ToyTokenizer, write_toy_cube  # noqa: E402

import astromodal_core  # noqa: E402
from astromodal_core import TokenKey, hookimpl  # noqa: E402

PLUGIN_NAME = "reliability-toys"

__all__ = ["PLUGIN_NAME", "ToyTokenizer", "ToyTwoTokenizer", "ToysPlugin", "register", "write_toy_cube"]


class ToyTwoTokenizer(ToyTokenizer):
    """:class:`ToyTokenizer` under another registered name, writing ``tok_toy2_*`` keys."""

    name = "toy2"
    kind = "toy2_tokenizer"

    @property
    def token_keys(self) -> tuple[TokenKey, ...]:
        return tuple(attrs.evolve(k, name=k.name.replace("tok_toy_", "tok_toy2_"))
                     for k in super().token_keys)

    def _encode_batch(self, batch: Any, path: Any) -> tuple[np.ndarray, dict[str, Any]]:
        ids, cols = super()._encode_batch(batch, path)
        return ids, {k.replace("tok_toy_", "tok_toy2_"): v for k, v in cols.items()}

    def token_values(self, key: str) -> np.ndarray:
        self.token_key(key)
        assert self.edges is not None
        e = self.edges[0 if key == "tok_toy2_x" else 1]
        return np.concatenate([[e[0]], (e[:-1] + e[1:]) / 2, [e[-1]], [np.nan]])


class ToysPlugin:
    """Registers ``toy`` and ``toy2`` in-process."""

    @hookimpl
    def astromodal_register_tokenizers(self, register: Any) -> None:
        register("toy", ToyTokenizer)
        register("toy2", ToyTwoTokenizer)


def register() -> None:
    """Register the toys (idempotent: a registered copy is replaced)."""
    astromodal_core.unregister(PLUGIN_NAME)
    astromodal_core.register_plugin(ToysPlugin(), name=PLUGIN_NAME)


# checks shared by the tests -------------------------------------------------------------------
def temps(directory: Path) -> list[str]:
    """Names of temporary files (``.<name>.<pid>.<random>.tmp*``) under ``directory``."""
    return sorted(str(p.relative_to(directory)) for p in Path(directory).rglob("*") if ".tmp" in p.name)


def set_state(directory: Path) -> dict[str, str]:
    """Load every member of the set in ``directory``; ``{name: fingerprint}`` of what loaded
    (each checked against the manifest by :meth:`TokenizerSet.load`)."""
    from astromodal_core.tokenizer_set import TokenizerSet

    tset = TokenizerSet.read(directory)
    return {name: tok.fingerprint for name, tok in tset.tokenizers().items()}


def set_files(directory: Path, state: dict[str, str]) -> set[str]:
    """The files a set directory holds right after writing ``state`` (``{name: fp}``)."""
    from astromodal_core.tokenizer_set import TokenizerSet

    tset = TokenizerSet.read(directory)
    assert {m.name: m.fingerprint for m in tset} == state
    out = {"tokenizers.json"}
    for m in tset:
        out.add(m.file)
        out.update(tokenizer_files(Path(directory) / m.file))
    return out


def tokenizer_files(path: Path) -> set[str]:
    """The companion file names the tokenizer file ``path`` references."""
    from astromodal_core.serialize import load_npz

    config, _, _ = load_npz(path)
    return {ref["file"] for ref in config["__companions__"].values()}


def load_members(members: dict[str, str]) -> dict[str, Any]:
    """``{name: fitted toy}`` from ``{name: saved state path}``."""
    classes = {"toy": ToyTokenizer, "toy2": ToyTwoTokenizer}
    return {n: classes[n].load(p) for n, p in members.items()}


def same_tokens(a: tuple[np.ndarray, dict[str, Any]], b: tuple[np.ndarray, dict[str, Any]]) -> bool:
    """True when two ``read_token_store`` results hold the same ids and tokens."""
    if not np.array_equal(a[0], b[0]) or set(a[1]) != set(b[1]):
        return False
    for k, va in a[1].items():
        vb = b[1][k]
        pairs = zip(va, vb) if isinstance(va, tuple) else [(va, vb)]
        if not all(np.array_equal(x, y) and np.asarray(x).dtype == np.asarray(y).dtype for x, y in pairs):
            return False
    return True


def store_state(path: Path, candidates: list[dict[str, Any]]) -> int:
    """Which of ``candidates`` (``{"fps": key fingerprints, "tokens": read_token_store result}``)
    the token store ``path`` holds whole; an AssertionError when it is none of them (torn)."""
    from astromodal_core.store import read_token_store, store_metadata

    meta = store_metadata(path)
    got = read_token_store(path)
    for i, c in enumerate(candidates):
        if meta["fingerprints"] == c["fps"] and same_tokens(got, c["tokens"]):
            return i
    raise AssertionError(f"{path}: holds none of the expected states (fingerprints {meta['fingerprints']})")
