"""CodecManager: AION-style encode(*modalities) / decode(tokens, cls, **metadata)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from astromodal_core import CodecManager, ModalityTypeError, NotFittedError, TokenKeyError


def _fitted(toy: Any) -> Any:
    return toy.ToyCodec().train(np.linspace(0, 8, 100))


def test_encode_decode_round_trip(toy: Any) -> None:
    manager = CodecManager(device=None, codecs=[_fitted(toy)])
    tokens = manager.encode(toy.ToyValue(value=[0.5, 7.5, np.nan]))
    np.testing.assert_array_equal(tokens["tok_toy"], [0, 7, 8])
    back = manager.decode(tokens, toy.ToyValue)
    np.testing.assert_allclose(back.value[:2], [0.5, 7.5])
    assert np.isnan(back.value[2])


def test_torch_tensors_on_the_device(toy: Any) -> None:
    torch = pytest.importorskip("torch")
    manager = CodecManager(device="cpu", codecs=[_fitted(toy)])
    tokens = manager.encode(toy.ToySubValue(value=torch.tensor([1.5, 2.5])))
    assert isinstance(tokens["tok_toy"], torch.Tensor)
    assert tokens["tok_toy"].tolist() == [1, 2]
    assert manager.decode(tokens, toy.ToyValue).value.shape == (2,)


def test_errors_name_what_is_missing(toy: Any) -> None:
    manager = CodecManager(device=None, codecs=[_fitted(toy)])
    with pytest.raises(ModalityTypeError, match="is not a Modality"):
        manager.encode(3.0)
    with pytest.raises(TokenKeyError, match=r"needs one of the token keys \['tok_toy'\]; got \['tok_z'\]"):
        manager.decode({"tok_z": np.zeros(1)}, toy.ToyValue)
    with pytest.raises(NotFittedError, match="ToyCodec is not fitted"):
        CodecManager(codecs=[toy.ToyCodec()])
    empty = CodecManager(device=None)
    with pytest.raises(ModalityTypeError, match="no fitted codec handles modality 'ToyValue'"):
        empty.encode(toy.ToyValue(value=[1.0]))


def test_from_files_loads_through_the_registry(toy: Any, tmp_path: Path) -> None:
    import astromodal_core
    from astromodal_core import hookimpl
    from astromodal_core.serialize import save_npz

    class ToyTokenizer:
        def __init__(self, codec: Any) -> None:
            self.codec = codec

        def codecs(self) -> list[Any]:
            return [self.codec]

        @classmethod
        def load(cls, path: Any) -> Any:
            return cls(toy.ToyCodec.load(Path(path).with_suffix(".codec.npz")))

    class P:
        @hookimpl
        def astromodal_register_tokenizers(self, register: Any) -> None:
            register("toy", ToyTokenizer)

    codec = _fitted(toy)
    codec.save(tmp_path / "toy_config.codec.npz")
    save_npz(tmp_path / "toy_config.npz", {"tokenizer": "toy"}, {}, kind="toy-tokenizer")
    astromodal_core.register_plugin(P(), name="toytok")
    try:
        manager = CodecManager.from_files(tmp_path / "toy_config.npz", device=None)
        assert manager.codecs[0].fingerprint == codec.fingerprint
    finally:
        astromodal_core.unregister("toytok")
