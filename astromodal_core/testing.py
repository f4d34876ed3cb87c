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


# --------------------------------------------------------------------------------- tokenizers
class TokenizerCheckError(AssertionError):
    """A tokenizer broke the contract; the message names the check and the token key."""


class TokenizerChecks:
    """The inputs the tokenizer checks share, and a fitted tokenizer trained once.

    ``make`` builds an unfitted tokenizer (called once per check that needs a fresh one);
    ``train_files`` are datacubes to fit on; ``encode_file`` a datacube to encode (at least two
    rows with different values); ``missing_file``, if given, a datacube whose FIRST row has no
    valid value for any of the tokenizer's columns.
    """

    def __init__(self, make: Callable[[], Any], train_files: Any, encode_file: Any, *,
                 missing_file: Any = None, tmp_dir: str | Path | None = None):
        self.make = make
        self.train_files = train_files
        self.encode_file = encode_file
        self.missing_file = missing_file
        self.tmp_dir = tmp_dir
        self._fitted: Any = None

    @property
    def name(self) -> str:
        return type(self.make()).__name__

    def fitted(self) -> Any:
        if self._fitted is None:
            self._fitted = self.make().train(self.train_files)
        return self._fitted

    def batches(self, tok: Any, path: Any = None) -> list[tuple[np.ndarray, dict[str, Any]]]:
        return list(tok.iter_token_batches(path or self.encode_file))

    def fail(self, check: str, message: str) -> TokenizerCheckError:
        return TokenizerCheckError(f"{self.name} fails {check}: {message}")


def _joined(tok: Any, batches: list[tuple[np.ndarray, dict[str, Any]]]) -> tuple[np.ndarray, dict[str, Any]]:
    from .store import concat_columns

    keys = {k.name: k for k in tok.token_keys}
    ids = np.concatenate([np.asarray(i, dtype=np.int64) for i, _ in batches]) if batches else np.empty(0, np.int64)
    return ids, {k: concat_columns(keys[k], [c[k] for _, c in batches]) for k in keys if all(k in c for _, c in batches)}


def _tokens_equal(tok: Any, a: list[tuple[np.ndarray, dict[str, Any]]],
                  b: list[tuple[np.ndarray, dict[str, Any]]]) -> bool:
    """The same rows and tokens, whatever the batch boundaries (batch_size is not state)."""
    (ia, ca), (ib, cb) = _joined(tok, a), _joined(tok, b)
    return np.array_equal(ia, ib) and _same(ca, cb)


def check_unfitted_raises(c: TokenizerChecks) -> None:
    """Encoding, saving or asking the fingerprint before training raises NotFittedError."""
    tok = c.make()
    if tok.is_fitted:
        raise c.fail("check_unfitted_raises", "a new tokenizer says it is fitted")
    for what, call in (("iter_token_batches", lambda: list(tok.iter_token_batches(c.encode_file))),
                       ("fingerprint", lambda: tok.fingerprint)):
        try:
            call()
        except NotFittedError:
            continue
        raise c.fail("check_unfitted_raises", f"{what} before train did not raise NotFittedError")


def check_from_config(c: TokenizerChecks) -> None:
    """``from_config`` rebuilds from ``settings()`` and refuses an unknown key by name."""
    from .errors import ConfigError

    tok = c.make()
    cls = type(tok)
    try:
        cls.from_config({"no_such_setting_xyz": 1})
    except ConfigError as exc:
        if "no_such_setting_xyz" not in str(exc):
            raise c.fail("check_from_config", f"the error for an unknown key does not name it: {exc}") from exc
    else:
        raise c.fail("check_from_config", "from_config accepted an unknown key")
    import json

    settings = tok.settings()
    try:
        json.dumps(settings)
    except TypeError as exc:
        raise c.fail("check_from_config", f"settings() is not JSON-able ({exc})") from exc
    again = cls.from_config(json.loads(json.dumps(settings)))
    if again.settings() != json.loads(json.dumps(settings)):
        raise c.fail("check_from_config", "from_config(settings()) gives other settings")


def check_token_keys(c: TokenizerChecks) -> None:
    """A fitted tokenizer lists unique TokenKey records with a mask token for dense layouts."""
    keys = c.fitted().token_keys
    if not keys:
        raise c.fail("check_token_keys", "token_keys is empty")
    names = [k.name for k in keys]
    if len(set(names)) != len(names):
        raise c.fail("check_token_keys", f"duplicate token keys in {names}")
    for k in keys:
        if not isinstance(k, TokenKey):
            raise c.fail("check_token_keys", f"{k!r} is not a TokenKey")
        if k.layout != "ragged" and k.mask_token is None:
            raise c.fail("check_token_keys", f"{k.name}: a {k.layout} key needs a mask_token for missing rows")


def check_dtype_and_range(c: TokenizerChecks) -> None:
    """Tokens have the key's dtype (uint16 where the vocabulary fits) and lie in [0, vocab)."""
    tok = c.fitted()
    keys = {k.name: k for k in tok.token_keys}
    for _, cols in c.batches(tok):
        for name, value in cols.items():
            if name not in keys:
                raise c.fail("check_dtype_and_range", f"wrote {name!r}, not in token_keys {sorted(keys)}")
            flat = np.asarray(value[0] if isinstance(value, tuple) else value)
            if flat.dtype != keys[name].dtype:
                raise c.fail("check_dtype_and_range", f"{name}: dtype {flat.dtype}, expected {keys[name].dtype}")
            if flat.size and (int(flat.min()) < 0 or int(flat.max()) >= keys[name].vocab_size):
                raise c.fail("check_dtype_and_range",
                             f"{name}: tokens in [{flat.min()}, {flat.max()}], outside [0, {keys[name].vocab_size})")


def check_layouts(c: TokenizerChecks) -> None:
    """Every key is written in its layout: (n,), (n, L), (n, H, W) or (flat, indptr); dense
    output for a ragged key is refused, and every key appears in every batch."""
    tok = c.fitted()
    keys = {k.name: k for k in tok.token_keys}
    for ids, cols in c.batches(tok):
        n = len(ids)
        missing = sorted(set(keys) - set(cols))
        if missing:
            raise c.fail("check_layouts", f"a batch lacks token keys {missing}")
        for name, value in cols.items():
            k = keys[name]
            if k.layout == "ragged":
                if not (isinstance(value, tuple) and len(value) == 2):
                    raise c.fail("check_layouts", f"{name}: a ragged key must be (flat, indptr), got dense output")
                flat, indptr = (np.asarray(v) for v in value)
                if len(indptr) != n + 1 or indptr[0] != 0 or np.any(np.diff(indptr) < 0) or indptr[-1] != len(flat):
                    raise c.fail("check_layouts", f"{name}: indptr is not a valid offsets array for {n} rows")
                if np.any(np.diff(indptr) > k.max_length):
                    raise c.fail("check_layouts", f"{name}: a row is longer than max_length {k.max_length}")
                continue
            if isinstance(value, tuple):
                raise c.fail("check_layouts", f"{name}: layout {k.layout} but a (flat, indptr) pair")
            shape = np.shape(value)
            want = {"scalar": (n,), "sequence": (n, k.max_length), "grid": (n, *(k.shape or ()))}[k.layout]
            if shape != want:
                raise c.fail("check_layouts", f"{name}: shape {shape}, expected {want} for layout {k.layout}")


def check_rows_follow_file(c: TokenizerChecks) -> None:
    """Batches cover every row of the file once, in file order, with the file's ids."""
    from .io import iter_batches

    tok = c.fitted()
    got = np.concatenate([np.asarray(i, dtype=np.int64) for i, _ in c.batches(tok)])
    want = np.concatenate([b.column(0).to_numpy(zero_copy_only=False).astype(np.int64)
                           for b in iter_batches(c.encode_file, [tok.id_col])])
    if not np.array_equal(got, want):
        raise c.fail("check_rows_follow_file", f"ids {got[:5].tolist()}... differ from the file's {want[:5].tolist()}...")


def check_missing_masked(c: TokenizerChecks) -> None:
    """A row with no valid value encodes to the mask token (or an empty ragged row) for every key."""
    if c.missing_file is None:
        return
    tok = c.fitted()
    keys = {k.name: k for k in tok.token_keys}
    _, cols = c.batches(tok, c.missing_file)[0]
    for name, value in cols.items():
        row0 = _rows(value)[0]
        k = keys[name]
        ok = (row0.size == 0 or (k.mask_token is not None and np.all(row0 == k.mask_token))) if k.layout == "ragged" \
            else (k.mask_token is not None and np.all(row0 == k.mask_token))
        if not ok:
            raise c.fail("check_missing_masked",
                         f"{name}: a row with no valid value encoded to {row0[:8].tolist()}, not the mask token {k.mask_token}")


def check_not_collapsed(c: TokenizerChecks) -> None:
    """Different inputs do not all encode to one token sequence."""
    tok = c.fitted()
    ids, cols = c.batches(tok)[0]
    n = len(ids)
    rows = {tuple(np.concatenate([_rows(cols[k])[i].astype(np.int64) for k in sorted(cols)]).tolist()) for i in range(n)}
    if n >= 2 and len(rows) == 1:
        raise c.fail("check_not_collapsed", f"all {n} rows encode to one token sequence")


def check_deterministic(c: TokenizerChecks) -> None:
    """Two tokenizers trained on the same files with the same settings are identical."""
    a, b = c.fitted(), c.make().train(c.train_files)
    if a.fingerprint != b.fingerprint:
        raise c.fail("check_deterministic", f"two trainings gave fingerprints {a.fingerprint} and {b.fingerprint}")
    if not _tokens_equal(a, c.batches(a), c.batches(b)):
        raise c.fail("check_deterministic", "two trainings encode the same file differently")


def check_save_load(c: TokenizerChecks) -> None:
    """``load(save(t))`` has the same fingerprint and encodes identically."""
    tok = c.fitted()
    with tempfile.TemporaryDirectory(dir=c.tmp_dir) as tmp:
        path = Path(tmp) / "tok_tokenizer_config.npz"
        tok.save(path)
        loaded = type(tok).load(path)
        if loaded.fingerprint != tok.fingerprint:
            raise c.fail("check_save_load", f"fingerprint {tok.fingerprint} became {loaded.fingerprint} after load")
        if not _tokens_equal(tok, c.batches(tok), c.batches(loaded)):
            raise c.fail("check_save_load", "the loaded tokenizer encodes differently")


def check_save_is_atomic(c: TokenizerChecks) -> None:
    """A save killed before its commit leaves the previous save loadable, whole."""
    from unittest import mock

    from . import serialize

    tok = c.fitted()
    with tempfile.TemporaryDirectory(dir=c.tmp_dir) as tmp:
        path = Path(tmp) / "tok_tokenizer_config.npz"
        tok.save(path)
        before = type(tok).load(path).fingerprint
        other = c.make().train(c.encode_file)  # another fitted state (other training data)
        # interrupt the second save at its commit (the .npz write): the old pair must load
        with mock.patch.object(serialize, "save_npz", side_effect=KeyboardInterrupt("killed")):
            try:
                other.save(path)
            except KeyboardInterrupt:
                pass
        if type(tok).load(path).fingerprint != before:
            raise c.fail("check_save_is_atomic", "an interrupted save changed what loads")
        leftovers = [p.name for p in Path(tmp).iterdir() if ".tmp" in p.name]
        if leftovers:
            raise c.fail("check_save_is_atomic", f"an interrupted save left temporary files {leftovers}")


def check_encode_to_store(c: TokenizerChecks) -> None:
    """``encode_to_store`` writes the same tokens as ``iter_token_batches``, with fingerprints."""
    from .store import read_token_store, store_metadata

    tok = c.fitted()
    with tempfile.TemporaryDirectory(dir=c.tmp_dir) as tmp:
        out = tok.encode_to_store(c.encode_file, Path(tmp) / "t.tokens.parquet")
        meta = store_metadata(out)
        if set(meta["fingerprints"].values()) != {tok.fingerprint}:
            raise c.fail("check_encode_to_store", f"the store records fingerprints {meta['fingerprints']}")
        ids, cols = read_token_store(out)
        parts = c.batches(tok)
        want_ids = np.concatenate([p[0] for p in parts])
        if not np.array_equal(ids, want_ids):
            raise c.fail("check_encode_to_store", "the store's ids differ from the batches'")
        from .store import concat_columns

        keys = {k.name: k for k in tok.token_keys}
        want = {k: concat_columns(keys[k], [p[1][k] for p in parts]) for k in keys}
        if not _same(cols, want):
            raise c.fail("check_encode_to_store", "the store's tokens differ from the batches'")


def check_value_protocol(c: TokenizerChecks) -> None:
    """For each ordinal key, ``token_values`` gives (vocab_size,) float values, NaN at the mask
    token, finite and non-decreasing over the real ids that the file uses."""
    tok = c.fitted()
    ordinal = [k for k in tok.token_keys if k.ordinal]
    if not ordinal:
        return
    _, cols = c.batches(tok)[0]
    for k in ordinal:
        v = np.asarray(tok.token_values(k.name), dtype=np.float64)
        if v.shape != (k.vocab_size,):
            raise c.fail("check_value_protocol", f"{k.name}: token_values has shape {v.shape}, expected ({k.vocab_size},)")
        if k.mask_token is not None and not np.isnan(v[k.mask_token]):
            raise c.fail("check_value_protocol", f"{k.name}: the mask token has value {v[k.mask_token]}, expected NaN")
        used = np.unique(np.asarray(cols[k.name][0] if isinstance(cols[k.name], tuple) else cols[k.name]))
        used = used[used != (k.mask_token if k.mask_token is not None else -1)].astype(np.int64)
        if used.size and not np.all(np.isfinite(v[used])):
            raise c.fail("check_value_protocol", f"{k.name}: ids the file uses have no finite value")
        real = v[np.isfinite(v)]
        if k.layout in ("scalar",) and real.size > 1 and np.any(np.diff(real) < 0):
            raise c.fail("check_value_protocol", f"{k.name}: values are not ordered like the ids")


TOKENIZER_CHECKS: tuple[Callable[[TokenizerChecks], None], ...] = (
    check_unfitted_raises,
    check_from_config,
    check_token_keys,
    check_dtype_and_range,
    check_layouts,
    check_rows_follow_file,
    check_missing_masked,
    check_not_collapsed,
    check_deterministic,
    check_save_load,
    check_save_is_atomic,
    check_encode_to_store,
    check_value_protocol,
)


def check_tokenizer(make: Callable[[], Any], train_files: Any, encode_file: Any, *,
                    missing_file: Any = None, tmp_dir: str | Path | None = None) -> list[str]:
    """Run every tokenizer check; return the names of the checks run.

    ``make`` builds an unfitted tokenizer (a class works: ``check_tokenizer(MyTokenizer, ...)``).
    """
    ctx = TokenizerChecks(make, train_files, encode_file, missing_file=missing_file, tmp_dir=tmp_dir)
    for check in TOKENIZER_CHECKS:
        check(ctx)
    return [c.__name__ for c in TOKENIZER_CHECKS]


def parametrize_with_checks(make: Callable[[], Any], train_files: Any, encode_file: Any, *,
                            missing_file: Any = None) -> Any:
    """A ``pytest.mark.parametrize`` over every tokenizer check, one test id per check::

        @parametrize_with_checks(MyTokenizer, [TRAIN], TEST, missing_file=MISSING)
        def test_contract(check):
            check()

    The tokenizer is trained once and shared by the checks of one test module.
    """
    import pytest

    ctx = TokenizerChecks(make, train_files, encode_file, missing_file=missing_file)

    def bind(check: Callable[[TokenizerChecks], None]) -> Callable[[], None]:
        def run() -> None:
            check(ctx)

        run.__name__ = check.__name__
        return run

    return pytest.mark.parametrize("check", [bind(c) for c in TOKENIZER_CHECKS],
                                   ids=[c.__name__ for c in TOKENIZER_CHECKS])
