"""Conformance checks every codec author runs, like scikit-learn's ``check_estimator``.

    from astromodal_core.testing import check_codec

    def test_my_codec_conforms(tmp_path):
        check_codec(MyCodec(), train_data, sample, missing=sample_with_a_missing_row)
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .codec import Codec
from .errors import NotFittedError
from .modality import Modality, TokenKey


class CodecCheckError(AssertionError):
    """A codec broke the contract; the message names the check and the token key."""


def _rows(value: Any) -> list[np.ndarray]:
    if isinstance(value, tuple):
        flat, indptr = (np.asarray(v) for v in value)
        return [flat[indptr[i] : indptr[i + 1]] for i in range(len(indptr) - 1)]
    arr = np.asarray(value)
    return [arr[i].ravel() for i in range(arr.shape[0])]


def _same(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    if set(a) != set(b):
        return False
    for k in a:
        ra, rb = _rows(a[k]), _rows(b[k])
        if len(ra) != len(rb) or any(not np.array_equal(x, y) for x, y in zip(ra, rb)):
            return False
    return True


def _fail(check: str, codec: Codec, message: str) -> CodecCheckError:
    return CodecCheckError(f"{type(codec).__name__} fails {check}: {message}")


def check_codec(
    codec: Codec | Callable[[], Codec],
    train_data: Any,
    sample: Modality,
    *,
    missing: Modality | None = None,
    decode_metadata: Mapping[str, Any] | None = None,
    tmp_dir: str | Path | None = None,
) -> list[str]:
    """Run every contract check on an unfitted codec; return the names of the checks run.

    ``sample`` must hold at least two rows with different values. ``missing``, if given, is a
    modality whose first row has no valid value at all: its tokens must be the mask token
    (or an empty ragged row) for every key.
    """
    codec = codec() if not isinstance(codec, Codec) else codec
    done: list[str] = []

    if codec.is_fitted:
        raise _fail("check_unfitted", codec, "pass an unfitted codec")
    try:
        codec.encode(sample)
    except NotFittedError:
        pass
    else:
        raise _fail("check_unfitted", codec, "encode before train did not raise NotFittedError")
    done.append("check_unfitted")

    codec.train(train_data)
    if not codec.is_fitted:
        raise _fail("check_train", codec, "is_fitted is False after train")
    keys: dict[str, TokenKey] = {k.name: k for k in codec.token_keys}
    if not keys:
        raise _fail("check_token_keys", codec, "token_keys is empty")
    done += ["check_train", "check_token_keys"]

    tokens = codec.encode(sample)
    n = len(sample)
    for name, value in tokens.items():
        if name not in keys:
            raise _fail("check_keys", codec, f"encode returned {name!r}, not in token_keys {sorted(keys)}")
        key = keys[name]
        parts = value if isinstance(value, tuple) else (value,)
        flat = np.asarray(parts[0])
        if not np.issubdtype(flat.dtype, np.integer):
            raise _fail("check_dtype", codec, f"{name}: tokens have dtype {flat.dtype}, expected integers")
        if key.vocab_size <= 65536 and flat.dtype != np.uint16:
            raise _fail("check_dtype", codec, f"{name}: vocab {key.vocab_size} fits uint16, got {flat.dtype}")
        if flat.size and (flat.min() < 0 or flat.max() >= key.vocab_size):
            raise _fail(
                "check_range", codec,
                f"{name}: tokens in [{flat.min()}, {flat.max()}], outside [0, {key.vocab_size})",
            )
        if len(_rows(value)) != n:
            raise _fail("check_rows", codec, f"{name}: {len(_rows(value))} rows of tokens for {n} inputs")
        if key.layout != "ragged" and isinstance(value, tuple):
            raise _fail("check_layout", codec, f"{name}: layout {key.layout} but a ragged (flat, indptr) pair")
        if key.layout == "ragged" and not isinstance(value, tuple):
            raise _fail("check_layout", codec, f"{name}: layout ragged needs (flat, indptr)")
        if key.layout != "ragged" and any(len(r) > key.max_length for r in _rows(value)):
            raise _fail("check_layout", codec, f"{name}: rows longer than max_length {key.max_length}")
    done += ["check_keys", "check_dtype", "check_range", "check_rows", "check_layout"]

    if not _same(tokens, codec.encode(sample)):
        raise _fail("check_deterministic", codec, "the same input gave different tokens")
    done.append("check_deterministic")

    if n >= 2:
        rows = [tuple(np.concatenate([_rows(tokens[k])[i] for k in sorted(tokens)]).tolist()) for i in range(n)]
        if len(set(rows)) == 1:
            raise _fail("check_not_collapsed", codec, f"all {n} inputs encode to one token sequence")
        done.append("check_not_collapsed")

    fp = codec.fingerprint
    if fp != codec.fingerprint:
        raise _fail("check_fingerprint", codec, "fingerprint changes between calls")
    with tempfile.TemporaryDirectory(dir=tmp_dir) as tmp:
        path = Path(tmp) / "codec_config.npz"
        codec.save(path)
        loaded = type(codec).load(path)
        if loaded.fingerprint != fp:
            raise _fail("check_save_load", codec, f"fingerprint {fp} became {loaded.fingerprint} after load")
        if not _same(tokens, loaded.encode(sample)):
            raise _fail("check_save_load", codec, "loaded codec encodes differently")
    done += ["check_fingerprint", "check_save_load"]

    decoded = codec.decode(tokens, **dict(decode_metadata or {}))
    if not isinstance(decoded, Modality):
        raise _fail("check_decode", codec, f"decode returned {type(decoded).__name__}, not a Modality")
    if not codec.handles(decoded):
        raise _fail("check_decode", codec, f"decode returned {type(decoded).__name__}, which it does not handle")
    if len(decoded) != n:
        raise _fail("check_decode", codec, f"decode returned {len(decoded)} rows for {n}")
    done.append("check_decode")

    if missing is not None:
        mtokens = codec.encode(missing)
        for name, value in mtokens.items():
            key = keys[name]
            row0 = _rows(value)[0]
            if key.layout == "ragged":
                ok = row0.size == 0 or (key.mask_token is not None and np.all(row0 == key.mask_token))
            else:
                ok = key.mask_token is not None and np.all(row0 == key.mask_token)
            if not ok:
                raise _fail(
                    "check_missing_masked", codec,
                    f"{name}: a row with no valid value encoded to {row0[:8].tolist()}, "
                    f"not the mask token {key.mask_token}",
                )
        done.append("check_missing_masked")
    return done
