"""Fixtures for the core tests: an isolated registry and a toy plugin with a real codec."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import attrs
import numpy as np
import pytest

import astromodal_core
from astromodal_core import Codec, Modality, TokenKey, array_field, hookimpl, registry
from astromodal_core.serialize import load_npz, save_npz


@attrs.define(kw_only=True, eq=False)
class ToyValue(Modality):
    """A batch of scalars; NaN = missing."""

    token_key: ClassVar[str] = "tok_toy"
    value: Any = array_field()


@attrs.define(kw_only=True, eq=False)
class ToySubValue(ToyValue):
    """A subclass: the codec for ToyValue must handle it too."""


class ToyCodec(Codec):
    """Uniform bins between the training min and max; NaN -> mask token."""

    modalities: ClassVar[tuple[type[Modality], ...]] = (ToyValue,)

    def __init__(self, n_bins: int = 8):
        self.n_bins = n_bins
        self.edges_: np.ndarray | None = None

    def train(self, sources: Any, **kwargs: Any) -> ToyCodec:
        x = np.asarray(sources, dtype=np.float64)
        x = x[np.isfinite(x)]
        self.edges_ = np.linspace(x.min(), x.max(), self.n_bins + 1)
        return self

    @property
    def key(self) -> TokenKey:
        return TokenKey("tok_toy", self.n_bins + 1, mask_token=self.n_bins, modality="ToyValue")

    @property
    def token_keys(self) -> tuple[TokenKey, ...]:
        return (self.key,)

    @property
    def is_fitted(self) -> bool:
        return self.edges_ is not None

    def encode(self, modality: Modality) -> dict[str, Any]:
        self.check_fitted()
        x = np.asarray(modality.value, dtype=np.float64)
        tok = np.searchsorted(self.edges_[1:-1], x, side="right").astype(np.uint16)
        tok[~np.isfinite(x)] = self.n_bins
        return {"tok_toy": tok}

    def decode(self, tokens: Any, **metadata: Any) -> ToyValue:
        self.check_fitted()
        tok = np.asarray(tokens["tok_toy"]).astype(np.int64)
        mid = (self.edges_[:-1] + self.edges_[1:]) / 2
        values = np.where(tok == self.n_bins, np.nan, mid[np.minimum(tok, self.n_bins - 1)])
        return ToyValue(value=values)

    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {"n_bins": self.n_bins}, {"edges": self.edges_}

    def save(self, path: Any) -> None:
        self.check_fitted()
        config, arrays = self._state()
        save_npz(path, config, arrays, kind="toy")

    @classmethod
    def load(cls, path: Any, **kwargs: Any) -> ToyCodec:
        config, arrays, _ = load_npz(path, kind="toy")
        codec = cls(config["n_bins"])
        codec.edges_ = arrays["edges"]
        return codec


class ToyPlugin:
    """A plugin object registered in-process."""

    @hookimpl
    def astromodal_register_modalities(self, register: Any) -> None:
        register(ToyValue)

    @hookimpl
    def astromodal_register_codecs(self, register: Any) -> None:
        register(ToyCodec)

    @hookimpl
    def astromodal_register_token_keys(self, register: Any) -> None:
        register(ToyCodec().key)


@pytest.fixture(autouse=True)
def isolated_registry(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Load no installed plugin; start and end with a fresh registry."""
    monkeypatch.setenv(registry.ENV_VAR, "")
    registry.reset()
    yield
    registry.reset()


@pytest.fixture
def toy_plugin() -> Any:
    astromodal_core.register_plugin(ToyPlugin(), name="toy")
    try:
        yield ToyPlugin
    finally:
        astromodal_core.unregister("toy")


@pytest.fixture
def fake_dists(monkeypatch: pytest.MonkeyPatch) -> Path:
    """Put tests/core/fake_dists (real dist-info folders with entry points) on sys.path."""
    import importlib
    import sys

    root = Path(__file__).parent / "fake_dists"
    monkeypatch.syspath_prepend(str(root))
    importlib.invalidate_caches()
    for mod in [m for m in sys.modules if m.startswith("astromodal_fake")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setenv(registry.ENV_VAR, "astromodal-fake-ok,astromodal-fake-broken")
    return root


@pytest.fixture
def toy() -> SimpleNamespace:
    """The toy classes (test modules cannot import conftest under importlib mode)."""
    return SimpleNamespace(
        ToyValue=ToyValue, ToySubValue=ToySubValue, ToyCodec=ToyCodec, ToyPlugin=ToyPlugin
    )
