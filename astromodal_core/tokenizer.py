"""The Tokenizer base class: the tokenizer contract as code.

A tokenizer trains on datacube files, encodes whole files into token columns, and saves its
fitted state without pickle. A subclass supplies a small set of methods; the base provides
everything else, the same way for every plugin:

=========================================  =================================================
a subclass supplies                        the base provides
=========================================  =================================================
``name`` (registered name), ``kind``       ``from_config`` (its own section; ``ConfigError``
``__init__`` keyword settings              naming the key), ``settings()``
``sample_file(path)`` (a bounded sample)   ``train(files)`` / ``fit_from_samples(states)``:
``merge_samples(a, b)`` (if not BottomK)   one bounded sample folded across all files
``_fit(sample)``
``iter_token_batches(path)`` or            ``encode(path)`` (``{key: tokens, "ids"...}``),
``input_columns()`` + ``_encode_batch``    ``encode_to_store(path, out)`` (streamed through
                                           :class:`~astromodal_core.store.TokenStoreWriter`)
``_state()`` / ``_companions()``           ``save`` / ``load`` (file + companions as one
``_from_state(config, arrays, parts)``     atomic unit), ``fingerprint``
``token_keys`` (from the fitted state)     ``token_key(name)``, ``check_fitted``
``token_values(key)`` (ordinal keys)       the value protocol ``predict`` uses
=========================================  =================================================

Saving. ``save(path)`` writes ``path`` (an ``.npz`` read with ``allow_pickle=False``) and one
safetensors companion per entry of ``_companions()``, named after its content
(``<stem>.<part>.<fingerprint>.safetensors``). Companions are written first under their new
names, then the ``.npz`` is renamed into place (the commit), then companions no longer
referenced are removed. A kill at any moment leaves the old or the new tokenizer loadable.
Concurrent saves into one directory are serialised by a flock on the directory (no lock file).
"""

from __future__ import annotations

import abc
import contextlib
import inspect
import os
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np

from .errors import CodecFormatError, ConfigError, DataError, NotFittedError, TokenKeyError
from .modality import TokenKey

PathLike = str | os.PathLike[str]
T = TypeVar("T", bound="Tokenizer")

#: a companion part name: lower-case letters, digits and underscores
PART_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")
_FP_PATTERN = re.compile(r"^[0-9a-f]{16}$")
_RESERVED = ("__tokenizer__", "__companions__")


def as_file_list(sources: PathLike | Sequence[PathLike]) -> list[Path]:
    """One path or a sequence of paths as a list; every one must be an existing file."""
    items = [sources] if isinstance(sources, (str, os.PathLike)) else list(sources)
    if not items:
        raise DataError("no input files given")
    paths = [Path(p) for p in items]
    for p in paths:
        if not p.is_file():
            raise DataError(f"{p}: file not found" if not p.is_dir() else f"{p}: is a directory, expected a file")
    return paths


_HELD: dict[str, int] = {}
_HELD_GUARD = threading.RLock()


@contextlib.contextmanager
def directory_lock(directory: PathLike) -> Iterator[None]:
    """An exclusive lock on writes into ``directory`` (flock on the directory itself, so no
    lock file is ever left behind). Re-entrant within a process; other processes wait."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    key = str(directory.resolve())
    with _HELD_GUARD:
        if _HELD.get(key):
            _HELD[key] += 1
            try:
                yield
            finally:
                _HELD[key] -= 1
            return
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: renames are still atomic
            fcntl = None  # type: ignore[assignment]
        fd = os.open(directory, os.O_RDONLY)
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            _HELD[key] = 1
            try:
                yield
            finally:
                _HELD.pop(key, None)
        finally:
            os.close(fd)  # closing releases the lock


def save_lock(path: PathLike) -> Any:
    """The lock held while saving to ``path``: its directory's :func:`directory_lock`."""
    return directory_lock(Path(path).parent)


def companion_path(path: PathLike, part: str, fp: str) -> Path:
    """Where ``save(path)`` writes companion ``part`` whose arrays have fingerprint ``fp``."""
    path = Path(path)
    return path.with_name(f"{_stem(path)}.{part}.{fp}.safetensors")


def _stem(path: Path) -> str:
    return path.name[: -len(".npz")] if path.name.endswith(".npz") else path.name


def merge_bottomk(a: Any, b: Any) -> Any:
    """Merge two samples made of reservoirs: a ``BottomK`` (or anything with ``merge``), or a
    dict / list / tuple of them (recursively); returns the merged ``a``."""
    if hasattr(a, "merge"):
        return a.merge(b)
    if isinstance(a, Mapping):
        if set(a) != set(b):
            raise DataError(f"cannot merge samples with different parts: {sorted(a)} vs {sorted(b)}")
        return type(a)({k: merge_bottomk(a[k], b[k]) for k in a}) if not isinstance(a, dict) else {
            k: merge_bottomk(a[k], b[k]) for k in a}
    if isinstance(a, (list, tuple)):
        if len(a) != len(b):
            raise DataError(f"cannot merge samples of {len(a)} and {len(b)} parts")
        return type(a)(merge_bottomk(x, y) for x, y in zip(a, b))
    raise TypeError(f"cannot merge samples of type {type(a).__name__}; override merge_samples")


class Tokenizer(abc.ABC):
    """Base class of every tokenizer (see the module docstring for the contract)."""

    #: the registered name, which is also the config section (``tokenizers.<name>``)
    name: ClassVar[str] = ""
    #: the kind recorded in saved files; loading a file of another kind is an error
    kind: ClassVar[str] = ""
    #: the id column read from datacubes (an instance attribute in most tokenizers)
    id_col: str = "id"
    #: rows per record batch when encoding (a subclass whose ``batch_size`` means something
    #: else, e.g. a training mini-batch, overrides :attr:`encode_batch_size` instead)
    batch_size: int = 65_536

    @property
    def encode_batch_size(self) -> int:
        """Rows per record batch when encoding; the pipeline reads a file in batches of the
        smallest value among a set's tokenizers."""
        return int(self.batch_size)

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def config_options(cls) -> tuple[str, ...]:
        """The keyword settings ``from_config`` accepts: the parameters of ``__init__``."""
        params = inspect.signature(cls.__init__).parameters.values()
        return tuple(p.name for p in params if p.name != "self"
                     and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))

    @classmethod
    def from_config(cls: type[T], section: Mapping[str, Any] | None = None) -> T:
        """Build from the ``tokenizers.<name>`` section of a config.

        An unknown key, or a value the constructor refuses, is a :class:`ConfigError` naming
        ``tokenizers.<name>.<key>``.
        """
        where = f"tokenizers.{cls.name or cls.__name__}"
        if section is None:
            section = {}
        if hasattr(section, "to_dict"):
            section = section.to_dict()
        if not isinstance(section, Mapping):
            raise ConfigError(f"{where}: expected a mapping of settings, got {type(section).__name__}")
        known = cls.config_options()
        for key in section:
            if key not in known:
                raise ConfigError(f"{where}.{key}: unknown setting; known: {sorted(known)}")
        try:
            return cls(**dict(section))
        except ConfigError as exc:
            msg = str(exc)
            raise ConfigError(msg if msg.startswith(where) else f"{where}: {msg}") from exc
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{where}: {exc}") from exc

    def settings(self) -> dict[str, Any]:
        """The constructor settings of this instance (what ``from_config`` would take)."""
        return {k: getattr(self, k) for k in self.config_options() if hasattr(self, k)}

    # -- what a subclass supplies ------------------------------------------------------------
    @property
    @abc.abstractmethod
    def is_fitted(self) -> bool:
        """True once trained or loaded."""

    @property
    @abc.abstractmethod
    def token_keys(self) -> tuple[TokenKey, ...]:
        """The token keys this tokenizer writes, from its fitted state (real vocabularies)."""

    @abc.abstractmethod
    def sample_file(self, path: PathLike) -> Any:
        """A bounded training sample of one file, mergeable with :meth:`merge_samples`."""

    def merge_samples(self, a: Any, b: Any) -> Any:
        """Fold sample ``b`` into ``a`` (default: reservoirs, or dicts / lists of them)."""
        return merge_bottomk(a, b)

    @abc.abstractmethod
    def _fit(self, sample: Any) -> None:
        """Fit the state from one merged sample."""

    @abc.abstractmethod
    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """``(config, arrays)`` saved in the ``.npz``: JSON-able settings and small arrays."""

    def _companions(self) -> dict[str, tuple[dict[str, np.ndarray], dict[str, Any]]]:
        """Large state saved beside the ``.npz``: ``{part: (arrays, metadata)}``."""
        return {}

    @classmethod
    @abc.abstractmethod
    def _from_state(cls: type[T], config: dict[str, Any], arrays: dict[str, np.ndarray],
                    companions: dict[str, dict[str, np.ndarray]], **kwargs: Any) -> T:
        """A fitted tokenizer from what :meth:`save` wrote; validate it (``CodecFormatError``)."""

    #: the batch hooks of the default :meth:`iter_token_batches`, which a subclass defines
    #: unless it overrides that method: the columns needed from ``path`` (with the id
    #: column), and ``(ids, {token key: tokens})`` of one record batch, every row
    input_columns: Callable[[PathLike], list[str]]
    _encode_batch: Callable[[Any, PathLike], tuple[np.ndarray, dict[str, Any]]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A concrete subclass without a way to encode fails where it is defined."""
        super().__init_subclass__(**kwargs)
        abstract = any(getattr(getattr(cls, n, None), "__isabstractmethod__", False) for n in dir(cls))
        if abstract or cls.iter_token_batches is not Tokenizer.iter_token_batches:
            return
        missing = [h for h in ("input_columns", "_encode_batch") if not callable(getattr(cls, h, None))]
        if missing:
            raise TypeError(
                f"{cls.__name__} must implement iter_token_batches, or input_columns and "
                f"_encode_batch (missing: {', '.join(missing)})"
            )

    def token_values(self, key: str) -> np.ndarray:
        """The value protocol: a float64 array ``(vocab_size,)`` giving the physical value of
        each token id of an ordinal ``key`` (NaN at the mask token and at ids with no value).

        ``astromodal predict`` reads a distribution over ids as a distribution over these
        values. Tokenizers with ordinal keys override this.
        """
        k = self.token_key(key)
        raise TokenKeyError(
            f"{type(self).__name__}: token key {k.name!r} has no physical values "
            f"({'ordinal, but token_values is not implemented' if k.ordinal else 'not an ordinal key'})"
        )

    def codecs(self) -> list[Any]:
        """The fitted codecs (one per modality covered), for :class:`CodecManager`."""
        return []

    # -- training ----------------------------------------------------------------------------
    def fit_from_samples(self: T, states: Iterable[Any]) -> T:
        """Fold per-file samples (from any worker, in any order) into one, then fit."""
        merged: Any = None
        for state in states:
            merged = state if merged is None else self.merge_samples(merged, state)
        if merged is None:
            raise DataError(f"{type(self).__name__}: no samples to fit on")
        self._fit(merged)
        return self

    def train(self: T, sources: PathLike | Sequence[PathLike], *, progress: bool = False) -> T:
        """Fit on one or more sources (parquet / FITS files, directories, ``hats://`` catalogues,
        astropy tables: see :mod:`astromodal_core.sources`), one file or partition at a time;
        memory holds one merged sample and one file's."""
        from tqdm.auto import tqdm

        from .sources import source_list

        files = source_list(sources)
        bar = tqdm(files, desc=f"{self.name or type(self).__name__}: sampling", unit="file",
                   disable=not progress, leave=False)
        return self.fit_from_samples(self.sample_file(f) for f in bar)

    # -- encoding ----------------------------------------------------------------------------
    def iter_token_batches(self, path: PathLike, *, batch_size: int | None = None,
                           progress: bool = False) -> Iterator[tuple[np.ndarray, dict[str, Any]]]:
        """Yield ``(ids, {token key: tokens})`` per record batch, every row of the file in order.

        Tokens follow the store's layouts: ``(n,)`` scalar, ``(n, L)`` sequence, ``(n, H, W)``
        grid, ``(flat, indptr)`` ragged; a row with no data holds the mask token (or an empty
        ragged row). Memory is bounded by ``batch_size``.
        """
        from tqdm.auto import tqdm

        from .io import iter_batches, num_rows
        from .sources import source_arg

        self.check_fitted()
        path = source_arg(path)
        size = int(batch_size or self.encode_batch_size)
        total = -(-num_rows(path) // size)
        batches = iter_batches(path, self.input_columns(path), batch_size=size)
        for batch in tqdm(batches, total=total, desc=f"{self.name}: encoding", unit="batch",
                          disable=not progress, leave=False):
            yield self._encode_batch(batch, path)

    def encode(self, path: PathLike, *, batch_size: int | None = None,
               progress: bool = False) -> dict[str, Any]:
        """Tokens of a whole file: ``{token key: tokens, "ids": int64, "id_col": str}``."""
        from .sources import source_arg
        from .store import concat_columns

        path = source_arg(path)
        ids, parts = [], []
        for batch_ids, cols in self.iter_token_batches(path, batch_size=batch_size, progress=progress):
            ids.append(np.asarray(batch_ids, dtype=np.int64))
            parts.append(cols)
        keys = {k.name: k for k in self.token_keys}
        out: dict[str, Any] = {name: concat_columns(keys[name], [p[name] for p in parts])
                               for name in keys if all(name in p for p in parts)}
        out["ids"] = np.concatenate(ids) if ids else np.empty(0, dtype=np.int64)
        out["id_col"] = self.id_col
        return out

    def encode_to_store(self, path: PathLike, out: PathLike, *, batch_size: int | None = None,
                        progress: bool = False) -> Path:
        """Stream a file's tokens into a token store at ``out`` (atomic: all or nothing)."""
        from .sources import source_arg
        from .store import TokenStoreWriter, source_info

        path = source_arg(path)
        fp = self.fingerprint
        with TokenStoreWriter(out, self.token_keys, id_col=self.id_col,
                              fingerprints={k.name: fp for k in self.token_keys},
                              extra={"tokenizers": {self.name: fp}, "source": source_info(path)}) as w:
            for ids, cols in self.iter_token_batches(path, batch_size=batch_size, progress=progress):
                w.write(ids, cols)
        return Path(out)

    # -- state -------------------------------------------------------------------------------
    def check_fitted(self) -> None:
        """Raise :class:`NotFittedError` unless fitted."""
        if not self.is_fitted:
            raise NotFittedError(f"{type(self).__name__} is not fitted: call train(...) or load(...) first")

    def token_key(self, name: str) -> TokenKey:
        """One of :attr:`token_keys` by name (:class:`TokenKeyError` naming the known ones)."""
        keys = {k.name: k for k in self.token_keys}
        if name not in keys:
            raise TokenKeyError(f"{type(self).__name__} writes no token key {name!r}; it writes {sorted(keys)}")
        return keys[name]

    def _full_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray],
                                   dict[str, tuple[dict[str, np.ndarray], dict[str, Any], str]]]:
        from .serialize import fingerprint

        self.check_fitted()
        config, arrays = self._state()
        for r in _RESERVED:
            if r in config:
                raise ValueError(f"{type(self).__name__}._state: config key {r!r} is reserved")
        parts = {}
        for part, (tensors, meta) in self._companions().items():
            if not PART_PATTERN.match(part):
                raise ValueError(f"{type(self).__name__}: companion part name {part!r} must match [a-z][a-z0-9_]*")
            tensors = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
            parts[part] = (tensors, dict(meta), fingerprint({}, tensors))
        full = {**config, "__tokenizer__": self.name,
                "__companions__": {p: {"fingerprint": v[2]} for p, v in sorted(parts.items())}}
        return full, arrays, parts

    @property
    def fingerprint(self) -> str:
        """A short hash of the fitted state (config, arrays and companions)."""
        from .serialize import fingerprint

        full, arrays, _ = self._full_state()
        return fingerprint(full, arrays)

    def save(self, path: PathLike) -> Path:
        """Write the fitted state to ``path`` and its companions, as one atomic unit."""
        from .serialize import save_npz, save_safetensors

        path = Path(path)
        if path.is_dir():
            raise IsADirectoryError(f"{path}: is a directory; give a file name such as {self.name}_tokenizer_config.npz")
        full, arrays, parts = self._full_state()
        with save_lock(path):
            for part, (tensors, meta, fp) in parts.items():
                full["__companions__"][part]["file"] = companion_path(path, part, fp).name
                save_safetensors(companion_path(path, part, fp), tensors, {**meta, "part": part})
            save_npz(path, full, arrays, kind=self.kind)
            keep = {v["file"] for v in full["__companions__"].values()}
            remove_stale_companions(path, keep)
        return path

    @classmethod
    def load(cls: type[T], path: PathLike, **kwargs: Any) -> T:
        """Read a tokenizer written by :meth:`save` (never unpickles)."""
        from .serialize import load_npz, load_safetensors

        path = Path(path)
        if path.is_dir():
            raise CodecFormatError(f"{path}: is a directory, not a tokenizer file")
        config, arrays, _ = load_npz(path, kind=cls.kind)
        name = config.pop("__tokenizer__", cls.name)
        if cls.name and name != cls.name:
            raise CodecFormatError(f"{path}: holds a {name!r} tokenizer, expected {cls.name!r}")
        refs = config.pop("__companions__", {})
        if not isinstance(refs, Mapping):
            raise CodecFormatError(f"{path}: companion table is not a mapping")
        companions: dict[str, dict[str, np.ndarray]] = {}
        for part, ref in refs.items():
            if not isinstance(part, str) or not PART_PATTERN.match(part) or not isinstance(ref, Mapping):
                raise CodecFormatError(f"{path}: bad companion entry {part!r}")
            file, fp = ref.get("file"), ref.get("fingerprint")
            if not isinstance(file, str) or file != Path(file).name or file in ("", ".", ".."):
                raise CodecFormatError(f"{path}: companion {part!r} names {file!r}, not a plain file name")
            if not isinstance(fp, str) or not _FP_PATTERN.match(fp):
                raise CodecFormatError(f"{path}: companion {part!r} has a malformed fingerprint {fp!r}")
            companions[part], _ = load_safetensors(path.with_name(file), expected_fingerprint=fp)
        try:
            return cls._from_state(config, arrays, companions, **kwargs)
        except CodecFormatError as exc:
            msg = str(exc)
            if str(path) in msg:
                raise
            raise CodecFormatError(f"{path}: {msg}") from exc
        except NotFittedError:
            raise
        except (KeyError, ValueError, TypeError, IndexError) as exc:
            raise CodecFormatError(f"{path}: invalid {cls.__name__} state ({type(exc).__name__}: {exc})") from exc

    def __repr__(self) -> str:
        state = "fitted" if self.is_fitted else "not fitted"
        return f"{type(self).__name__}({self.name!r}, {state})"


def remove_stale_companions(path: PathLike, keep: Iterable[str]) -> list[Path]:
    """Remove ``<stem>.<part>.<fingerprint>.safetensors`` files beside ``path`` not in ``keep``,
    and the temporary files killed saves left for any companion of ``path``."""
    from .serialize import clean_stale_temps_in

    path = Path(path)
    keep = set(keep)
    pattern = re.compile(re.escape(_stem(path)) + r"\.[a-z][a-z0-9_]*\.[0-9a-f]{16}\.safetensors$")
    removed = clean_stale_temps_in(path.parent, pattern)
    for entry in path.parent.iterdir() if path.parent.is_dir() else ():
        if entry.name not in keep and pattern.match(entry.name):
            with contextlib.suppress(OSError):
                entry.unlink()
                removed.append(entry)
    return removed


def check_edges(edges: np.ndarray, where: str) -> np.ndarray:
    """Validate loaded bin edges: finite and non-decreasing along the last axis."""
    edges = np.asarray(edges)
    if edges.size and not np.all(np.isfinite(edges)):
        raise CodecFormatError(f"{where}: bin edges hold NaN or infinite values")
    if edges.shape[-1:] and edges.shape[-1] > 1 and np.any(np.diff(edges, axis=-1) < 0):
        raise CodecFormatError(f"{where}: bin edges are not in increasing order")
    return edges
