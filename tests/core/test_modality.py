"""TokenKey validation and the Modality base."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from astromodal_core import TokenKey


def test_token_key_validation() -> None:
    with pytest.raises(ValueError, match="'Tok_R' must match"):
        TokenKey("Tok_R", 10)
    with pytest.raises(ValueError, match="vocab_size must be >= 1"):
        TokenKey("tok_r", 0)
    with pytest.raises(ValueError, match="'layout' must be in"):
        TokenKey("tok_r", 10, layout="cube")
    with pytest.raises(ValueError, match=r"mask_token 10 outside \[0, 10\)"):
        TokenKey("tok_r", 10, mask_token=10)
    with pytest.raises(ValueError, match="a grid key needs shape"):
        TokenKey("tok_img", 10, layout="grid", max_length=4)
    with pytest.raises(ValueError, match="does not hold max_length"):
        TokenKey("tok_img", 10, layout="grid", max_length=4, shape=(3, 3))
    with pytest.raises(ValueError, match="a scalar key has max_length 1"):
        TokenKey("tok_r", 10, max_length=3)


def test_token_key_dtype_and_dict_round_trip() -> None:
    k = TokenKey("tok_img", 70000, layout="grid", max_length=4, shape=[2, 2])
    assert k.shape == (2, 2) and k.dtype == np.uint32
    assert TokenKey("tok_r", 65536).dtype == np.uint16
    assert TokenKey.from_dict(k.as_dict()) == k


def test_modality_base(toy: Any) -> None:
    m = toy.ToyValue(value=[1.0, 2.0, 3.0])
    assert isinstance(m.value, np.ndarray) and len(m) == 3
    assert m.as_dict().keys() == {"value"}
    assert toy.ToyValue.name == "ToyValue" and toy.ToySubValue.name == "ToySubValue"
    assert toy.ToyValue.token_key == "tok_toy"


def test_modality_keeps_torch_tensors(toy: Any) -> None:
    torch = pytest.importorskip("torch")
    m = toy.ToyValue(value=torch.arange(4.0))
    assert isinstance(m.value, torch.Tensor) and len(m) == 4


def test_optional_array_field() -> None:
    import attrs

    from astromodal_core import Modality, array_field

    @attrs.define(kw_only=True, eq=False)
    class WithMask(Modality):
        flux: Any = array_field()
        mask: Any = array_field(optional=True)

    assert WithMask(flux=[1.0]).mask is None
    assert WithMask(flux=[1.0], mask=[True]).mask.dtype == bool
