"""The conformance kit passes a good codec and catches deliberately broken ones."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from astromodal_core.testing import CodecCheckError, check_codec

TRAIN = np.linspace(0.0, 8.0, 200)


def _sample(toy: Any) -> Any:
    return toy.ToyValue(value=[0.5, 3.5, 7.5])


def _missing(toy: Any) -> Any:
    return toy.ToyValue(value=[np.nan, 1.0])


def test_good_codec_passes_every_check(toy: Any) -> None:
    done = check_codec(toy.ToyCodec(), TRAIN, _sample(toy), missing=_missing(toy))
    assert done == [
        "check_unfitted", "check_train", "check_token_keys", "check_keys", "check_dtype",
        "check_range", "check_rows", "check_layout", "check_deterministic", "check_not_collapsed",
        "check_fingerprint", "check_save_load", "check_decode", "check_missing_masked",
    ]


def test_catches_out_of_range_tokens(toy: Any) -> None:
    class OutOfRange(toy.ToyCodec):
        def encode(self, modality: Any) -> dict[str, Any]:
            out = super().encode(modality)
            out["tok_toy"] = out["tok_toy"] + np.uint16(5)
            return out

    with pytest.raises(CodecCheckError, match=r"OutOfRange fails check_range: tok_toy: tokens in \[5, 12\]"):
        check_codec(OutOfRange(), TRAIN, _sample(toy))


def test_catches_non_deterministic_encode(toy: Any) -> None:
    class Noisy(toy.ToyCodec):
        calls = 0

        def encode(self, modality: Any) -> dict[str, Any]:
            out = super().encode(modality)
            Noisy.calls += 1
            out["tok_toy"] = (out["tok_toy"] + np.uint16(Noisy.calls % 2)) % np.uint16(8)
            return out

    with pytest.raises(CodecCheckError, match="Noisy fails check_deterministic"):
        check_codec(Noisy(), TRAIN, _sample(toy))


def test_catches_save_load_drift(toy: Any) -> None:
    class Drifting(toy.ToyCodec):
        def save(self, path: Any) -> None:
            self.edges_ = self.edges_ * 1.5
            super().save(path)
            self.edges_ = self.edges_ / 1.5

    with pytest.raises(CodecCheckError, match="Drifting fails check_save_load: fingerprint"):
        check_codec(Drifting(), TRAIN, _sample(toy))


def test_catches_collapse(toy: Any) -> None:
    class Collapsed(toy.ToyCodec):
        def encode(self, modality: Any) -> dict[str, Any]:
            self.check_fitted()
            return {"tok_toy": np.zeros(len(modality), np.uint16)}

    with pytest.raises(CodecCheckError, match="Collapsed fails check_not_collapsed: all 3 inputs"):
        check_codec(Collapsed(), TRAIN, _sample(toy))


def test_catches_encode_before_train(toy: Any) -> None:
    class Eager(toy.ToyCodec):
        def encode(self, modality: Any) -> dict[str, Any]:
            if not self.is_fitted:
                return {"tok_toy": np.zeros(len(modality), np.uint16)}
            return super().encode(modality)

    with pytest.raises(CodecCheckError, match="Eager fails check_unfitted"):
        check_codec(Eager(), TRAIN, _sample(toy))


def test_catches_wrong_dtype_and_unmasked_missing(toy: Any) -> None:
    class Wide(toy.ToyCodec):
        def encode(self, modality: Any) -> dict[str, Any]:
            return {"tok_toy": super().encode(modality)["tok_toy"].astype(np.int64)}

    with pytest.raises(CodecCheckError, match="vocab 9 fits uint16, got int64"):
        check_codec(Wide(), TRAIN, _sample(toy))

    class NanAsValue(toy.ToyCodec):
        def encode(self, modality: Any) -> dict[str, Any]:
            out = super().encode(modality)
            out["tok_toy"][out["tok_toy"] == 8] = 0
            return out

    with pytest.raises(CodecCheckError, match="check_missing_masked: tok_toy: a row with no valid value"):
        check_codec(NanAsValue(), TRAIN, _sample(toy), missing=_missing(toy))
