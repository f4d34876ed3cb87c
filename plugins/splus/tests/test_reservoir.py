"""KeyedSample keeps exactly the values astromodal_core.sampling.BottomK keeps."""

from __future__ import annotations

import numpy as np
import pytest
from astromodal_splus.reservoir import KeyedSample

from astromodal_core.sampling import BottomK, hash_keys


@pytest.mark.parametrize("k", [1, 7, 500, 5000])
def test_same_set_as_bottom_k_whatever_the_chunking(k):
    rng = np.random.default_rng(k)
    ids = rng.permutation(20_000)
    values = rng.normal(size=20_000)
    keys = hash_keys(ids, seed=3, salt="mag_pstotal_r")
    ref = BottomK(k)
    ref.add(keys, values)
    mine = KeyedSample(k)
    for chunk in np.array_split(np.arange(20_000), 13):
        mine.add(keys[chunk], values[chunk])
    got_keys, got_values = mine.arrays()
    assert len(mine) == min(k, 20_000)
    ref_values = ref.sample()  # sorts the reservoir by key
    np.testing.assert_array_equal(np.sort(got_keys), ref.keys)
    np.testing.assert_array_equal(np.sort(got_values), np.sort(ref_values))


def test_merge_of_parts_equals_one_pass():
    rng = np.random.default_rng(0)
    keys = hash_keys(np.arange(9000), seed=0)
    values = rng.random(9000)
    whole = KeyedSample(1000)
    whole.add(keys, values)
    parts = [KeyedSample(1000) for _ in range(3)]
    for p, idx in zip(parts, np.array_split(np.arange(9000), 3)):
        p.add(keys[idx], values[idx])
    merged = KeyedSample(1000)
    for p in parts[::-1]:
        merged.add(*p.arrays())
    np.testing.assert_array_equal(np.sort(merged.arrays()[1]), np.sort(whole.arrays()[1]))


def test_bad_arguments():
    with pytest.raises(ValueError, match=">= 1"):
        KeyedSample(0)
    with pytest.raises(ValueError, match="differ in length"):
        KeyedSample(3).add(np.zeros(2, dtype=np.uint64), np.zeros(3))
    assert len(KeyedSample(3)) == 0
