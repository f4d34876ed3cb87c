"""Bottom-k reservoirs: bounded, deterministic, order-independent, mergeable, uniform."""

from __future__ import annotations

import numpy as np
import pytest

from astromodal_core.sampling import BottomK, hash_keys


def _fill(chunks: list[tuple[np.ndarray, np.ndarray]], k: int, seed: int = 0) -> BottomK:
    r = BottomK(k)
    for ids, values in chunks:
        r.add(hash_keys(ids, seed, "col"), values)
    return r


def test_reservoir_is_bounded_and_counts_what_it_saw() -> None:
    ids = np.arange(10_000)
    r = _fill([(ids, ids * 1.0)], k=100)
    assert len(r) == 100 and r.seen == 10_000


def test_same_sample_whatever_the_order() -> None:
    ids = np.arange(5000)
    chunks = [(ids[i : i + 700], ids[i : i + 700] * 2.0) for i in range(0, 5000, 700)]
    a = _fill(chunks, 300).sample()
    b = _fill(chunks[::-1], 300).sample()
    np.testing.assert_array_equal(a, b)


def test_merge_equals_single_pass() -> None:
    ids = np.arange(8000)
    whole = _fill([(ids, ids * 1.0)], 500)
    left = _fill([(ids[:3000], ids[:3000] * 1.0)], 500)
    right = _fill([(ids[3000:], ids[3000:] * 1.0)], 500)
    merged = left.merge(right)
    np.testing.assert_array_equal(merged.sample(), whole.sample())
    assert merged.seen == whole.seen == 8000


def test_seed_and_salt_change_the_sample() -> None:
    ids = np.arange(2000)
    assert not np.array_equal(hash_keys(ids, 0, "a"), hash_keys(ids, 1, "a"))
    assert not np.array_equal(hash_keys(ids, 0, "a"), hash_keys(ids, 0, "b"))
    assert not np.array_equal(hash_keys(ids, 0, "a", sub=np.zeros(2000)), hash_keys(ids, 0, "a", sub=np.ones(2000)))


def test_sample_is_close_to_uniform() -> None:
    ids = np.arange(200_000)
    s = _fill([(ids, ids / 200_000)], 20_000).sample()
    counts, _ = np.histogram(s, bins=10, range=(0, 1))
    assert counts.min() > 1800 and counts.max() < 2200


def test_vector_rows() -> None:
    r = BottomK(10, width=3)
    ids = np.arange(50)
    r.add(hash_keys(ids, 0), np.repeat(ids[:, None], 3, axis=1).astype(float))
    s = r.sample()
    assert s.shape == (10, 3) and np.all(s[:, 0] == s[:, 2])


def test_duplicate_ids_across_files_do_not_make_order_matter() -> None:
    ids = np.arange(100)
    a = (ids, ids * 1.0)
    b = (ids, ids * 1.0 + 0.5)  # the same ids again, other values
    np.testing.assert_array_equal(_fill([a, b], 37).sample(), _fill([b, a], 37).sample())
    np.testing.assert_array_equal(_fill([a, b], 3).sample(), _fill([b, a], 3).sample())


@pytest.mark.parametrize("k", [1, 7, 500, 5000])
def test_chunking_never_changes_the_kept_set(k: int) -> None:
    rng = np.random.default_rng(k)
    ids = rng.permutation(20_000)
    values = rng.normal(size=20_000)
    keys = hash_keys(ids, seed=3, salt="mag_pstotal_r")
    whole = BottomK(k)
    whole.add(keys, values)
    chunked = BottomK(k)
    for chunk in np.array_split(np.arange(20_000), 13):
        chunked.add(keys[chunk], values[chunk])
    got_keys, _ = chunked.arrays()
    assert len(got_keys) == min(k, 20_000)
    np.testing.assert_array_equal(chunked.sample(), whole.sample())
