"""Train every tokenizer a config names, and encode many files into a token store.

- :func:`train_tokenizers`: for each section under ``tokenizers:`` of a config (``scalar``,
  ``spectrum``, ``image``... whatever the registry knows), build the tokenizer with
  ``from_config``, run ``sample_file`` on every file as separate tasks, merge the reservoirs
  with ``fit_from_samples`` and save ``<section>_tokenizer_config.npz`` plus a
  ``tokenizers.json`` manifest. The same seed gives the same state on any engine.
- :func:`encode_files`: one task per input file encodes it with every saved tokenizer and
  writes ``<stem>.tokens.parquet`` atomically (a killed run loses nothing already written and
  leaves nothing half-written). A file whose output already records the same tokenizer
  fingerprints and the same source size is skipped.
- Engines: a local process pool (default) or a dask.distributed cluster
  (``scheduler="tcp://host:port"``); both run the same task functions.

Tasks receive plain data (class paths, config dicts, file paths) and return numpy arrays,
so they travel to any worker that has the same packages installed.
"""

from __future__ import annotations

import abc
import importlib
import inspect
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from .errors import ConfigError, DataError
from .modality import TokenKey
from .serialize import atomic_path

PathLike = str | os.PathLike[str]
MANIFEST = "tokenizers.json"
STORE_SUFFIX = ".tokens.parquet"


# engines ----------------------------------------------------------------------------------
class Engine(abc.ABC):
    """Runs a function over items and returns the results in input order."""

    name = "engine"

    @abc.abstractmethod
    def map(self, fn: Callable[[Any], Any], items: Sequence[Any], *, desc: str = "",
            progress: bool = True) -> list[Any]:
        """Apply ``fn`` to every item; results in input order."""

    def close(self) -> None:  # noqa: B027 - engines without workers have nothing to release
        """Release workers."""

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _bar(total: int, desc: str, progress: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="file", disable=not progress, leave=False)


def _init_worker(path: list[str]) -> None:
    """Give a fresh worker process the parent's import path (plugins on sys.path)."""
    import sys

    sys.path[:] = path


class LocalEngine(Engine):
    """A local process pool; ``workers=1`` runs the tasks in this process (no pool).

    Workers start from a fresh interpreter (``forkserver``, or ``spawn`` where there is none),
    never by forking this process: a fork taken after numba, OpenMP or torch started their
    thread pools can deadlock.
    """

    name = "local"

    def __init__(self, workers: int | None = None):
        self.workers = max(1, workers if workers is not None else (os.cpu_count() or 1))
        self._pool: ProcessPoolExecutor | None = None

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any], *, desc: str = "",
            progress: bool = True) -> list[Any]:
        items = list(items)
        results: list[Any] = [None] * len(items)
        with _bar(len(items), desc, progress) as bar:
            if self.workers == 1 or len(items) <= 1:
                for i, item in enumerate(items):
                    results[i] = fn(item)
                    bar.update()
                return results
            if self._pool is None:
                import multiprocessing as mp
                import sys

                method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
                self._pool = ProcessPoolExecutor(
                    max_workers=self.workers, mp_context=mp.get_context(method),
                    initializer=_init_worker, initargs=(list(sys.path),))
            futures = {self._pool.submit(fn, item): i for i, item in enumerate(items)}
            for fut in as_completed(futures):
                results[futures[fut]] = fut.result()
                bar.update()
        return results

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None


class DaskEngine(Engine):
    """The same tasks on a dask.distributed cluster (``address`` of its scheduler)."""

    name = "dask"

    def __init__(self, address: str):
        try:
            from distributed import Client
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ConfigError(
                "--scheduler needs dask.distributed: pip install 'astromodal-core[distributed]'"
            ) from exc
        self.address = address
        self.client = Client(address)

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any], *, desc: str = "",
            progress: bool = True) -> list[Any]:
        from distributed import as_completed as dask_completed

        items = list(items)
        futures = [self.client.submit(fn, item, pure=False) for item in items]
        index = {f.key: i for i, f in enumerate(futures)}
        results: list[Any] = [None] * len(items)
        with _bar(len(items), desc, progress) as bar:
            for fut in dask_completed(futures):
                results[index[fut.key]] = fut.result()
                bar.update()
        return results

    def close(self) -> None:
        self.client.close()


def make_engine(scheduler: str | None = None, workers: int | None = None) -> Engine:
    """A dask engine when ``scheduler`` is an address, else a local process pool."""
    return DaskEngine(scheduler) if scheduler else LocalEngine(workers)


# tokenizers -------------------------------------------------------------------------------
def class_path(cls: type) -> str:
    """``module:QualName`` of a class, importable in another process."""
    return f"{cls.__module__}:{cls.__qualname__}"


def import_class(path: str) -> type:
    """The class named by :func:`class_path`."""
    module, _, qual = path.partition(":")
    obj: Any = importlib.import_module(module)
    for part in qual.split("."):
        obj = getattr(obj, part)
    return obj


def tokenizer_sections(config: Mapping[str, Any], *, only_installed: bool = False) -> dict[str, dict[str, Any]]:
    """``{section: settings}`` under ``tokenizers:`` of a config, each resolved in the registry.

    A section no installed plugin registers is a :class:`ConfigError` naming it, unless
    ``only_installed`` (then it is left out).
    """
    from .config import Config
    from .registry import get_registry

    raw = config.to_dict() if isinstance(config, Config) else dict(config)
    sections = raw.get("tokenizers") or {}
    if not isinstance(sections, Mapping) or not sections:
        raise ConfigError("the config has no 'tokenizers:' section naming what to train")
    reg = get_registry()
    out: dict[str, dict[str, Any]] = {}
    for name, settings in sections.items():
        if name not in reg.tokenizers:
            if only_installed:
                continue
            raise ConfigError(
                f"config section tokenizers.{name}: no installed plugin registers a {name!r} "
                f"tokenizer (installed: {sorted(reg.tokenizers)})"
            )
        out[name] = dict(settings or {})
    return out


@attrs.frozen
class SavedTokenizer:
    """One trained tokenizer on disk."""

    section: str
    cls: str  # class path
    path: str
    fingerprint: str
    token_keys: tuple[TokenKey, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"section": self.section, "class": self.cls, "path": self.path,
                "fingerprint": self.fingerprint, "token_keys": [k.as_dict() for k in self.token_keys]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SavedTokenizer:
        return cls(d["section"], d["class"], d["path"], d["fingerprint"],
                   tuple(TokenKey.from_dict(k) for k in d["token_keys"]))


def _sample_task(args: tuple[str, dict[str, Any], str]) -> Any:
    cls_path, settings, path = args
    tok = import_class(cls_path).from_config(settings)
    return tok.sample_file(path)


def train_tokenizers(
    config: Mapping[str, Any],
    files: Sequence[PathLike],
    out_dir: PathLike,
    *,
    engine: Engine | None = None,
    progress: bool = True,
    only_installed: bool = False,
    on_trained: Callable[[SavedTokenizer, float], None] | None = None,
) -> list[SavedTokenizer]:
    """Train every tokenizer in ``config`` on ``files``; save them and a manifest in ``out_dir``."""
    from .registry import get_registry

    files = [str(Path(f)) for f in files]
    if not files:
        raise DataError("no input files to train on")
    for f in files:
        if not Path(f).is_file():
            raise DataError(f"{f}: file not found")
    sections = tokenizer_sections(config, only_installed=only_installed)
    reg = get_registry()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    own = engine is None
    engine = engine or LocalEngine()
    saved: list[SavedTokenizer] = []
    try:
        for section, settings in sections.items():
            t0 = time.perf_counter()
            cls = reg.tokenizer(section)
            tok = cls.from_config(settings)
            states = engine.map(_sample_task, [(class_path(cls), settings, f) for f in files],
                                desc=f"sample {section}", progress=progress)
            _with_progress(tok.fit_from_samples, states, progress=progress)
            path = out / f"{section}_tokenizer_config.npz"
            tok.save(path)
            item = SavedTokenizer(section, class_path(cls), path.name, tok.fingerprint,
                                  tuple(tok.token_keys))
            saved.append(item)
            if on_trained is not None:
                on_trained(item, time.perf_counter() - t0)
    finally:
        if own:
            engine.close()
    write_manifest(out, saved)
    return saved


def write_manifest(directory: PathLike, saved: Iterable[SavedTokenizer]) -> Path:
    """Write ``tokenizers.json`` (atomically) listing the saved tokenizers."""
    path = Path(directory) / MANIFEST
    data = {"tokenizers": [s.as_dict() for s in saved]}
    with atomic_path(path, suffix=".json") as tmp:
        tmp.write_text(json.dumps(data, indent=2))
    return path


def read_manifest(directory: PathLike) -> list[SavedTokenizer]:
    """The tokenizers a :func:`train_tokenizers` run saved in ``directory``."""
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise ConfigError(
            f"{path}: no tokenizer manifest; run `astromodal tokenizers train --out {directory}` first"
        )
    try:
        data = json.loads(path.read_text())
        return [SavedTokenizer.from_dict(d) for d in data["tokenizers"]]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: unreadable tokenizer manifest ({exc})") from exc


# encoding ---------------------------------------------------------------------------------
_LOADED: dict[tuple[str, str], Any] = {}


def _load_tokenizer(directory: str, spec: SavedTokenizer) -> Any:
    key = (str(Path(directory) / spec.path), spec.fingerprint)
    if key not in _LOADED:
        tok = import_class(spec.cls).load(key[0])
        if tok.fingerprint != spec.fingerprint:
            from .errors import CodecFormatError

            raise CodecFormatError(
                f"{key[0]}: holds state {tok.fingerprint}, the manifest expects {spec.fingerprint}"
            )
        _LOADED[key] = tok
    return _LOADED[key]


def _with_progress(fn: Callable[..., Any], *args: Any, progress: bool) -> Any:
    """Call ``fn(*args)``, passing ``progress=`` when it takes one (by name or ``**kwargs``)."""
    try:
        params = inspect.signature(fn).parameters.values()
        takes = any(p.name == "progress" or p.kind is p.VAR_KEYWORD for p in params)
    except (TypeError, ValueError):
        takes = False
    if not takes:
        return fn(*args)
    try:
        return fn(*args, progress=progress)
    except TypeError as exc:
        if "progress" not in str(exc):
            raise
        return fn(*args)


def _encode_quietly(tok: Any, path: str) -> dict[str, Any]:
    return _with_progress(tok.encode, path, progress=False)


def _fill(key: TokenKey, value: Any, rows: np.ndarray, n: int) -> Any:
    """Place a column's rows at positions ``rows`` of an n-row column, the rest masked."""
    if key.layout == "ragged":
        flat, indptr = value
        lengths = np.zeros(n, dtype=np.int64)
        lengths[rows] = np.diff(indptr)
        order = np.argsort(rows, kind="stable")
        pieces = [flat[indptr[i] : indptr[i + 1]] for i in order]
        new_flat = np.concatenate(pieces) if pieces else np.empty(0, dtype=key.dtype)
        return new_flat.astype(key.dtype), np.concatenate([[0], np.cumsum(lengths)])
    if key.mask_token is None:
        raise DataError(
            f"token key {key.name!r} has no mask token, so rows one tokenizer left out cannot be filled"
        )
    arr = np.asarray(value)
    out = np.full((n, *arr.shape[1:]), key.mask_token, dtype=key.dtype)
    out[rows] = arr
    return out


def encode_one(path: PathLike, directory: PathLike, specs: Sequence[SavedTokenizer]) -> tuple[
        np.ndarray, dict[str, Any], dict[str, TokenKey], str]:
    """Encode one file with every tokenizer: ``(ids, columns, keys, id_col)``, rows aligned."""
    path, directory = str(path), str(directory)
    results = []
    for spec in specs:
        tok = _load_tokenizer(directory, spec)
        res = _encode_quietly(tok, path)
        results.append((tok, res))
    id_col = str(results[0][1].get("id_col", "id"))
    ids = np.asarray(results[0][1]["ids"], dtype=np.int64)
    for _, res in results[1:]:
        other = np.asarray(res["ids"], dtype=np.int64)
        if not np.array_equal(other, ids):
            extra = other[~np.isin(other, ids)]
            ids = np.concatenate([ids, extra])
    pos = {int(v): i for i, v in enumerate(ids)}
    columns: dict[str, Any] = {}
    keys: dict[str, TokenKey] = {}
    for tok, res in results:
        tk = {k.name: k for k in tok.token_keys}
        these = np.asarray(res["ids"], dtype=np.int64)
        aligned = np.array_equal(these, ids)
        rows = None if aligned else np.array([pos[int(v)] for v in these], dtype=np.int64)
        for name, value in tok.to_token_columns(res).items():
            if name in columns:
                raise DataError(f"{path}: two tokenizers write token key {name!r}")
            keys[name] = tk[name]
            columns[name] = value if aligned else _fill(tk[name], value, rows, len(ids))
    return ids, columns, keys, id_col


def _source_info(path: PathLike) -> dict[str, Any]:
    st = Path(path).stat()
    return {"path": str(Path(path).resolve()), "size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns)}


def key_fingerprints(specs: Sequence[SavedTokenizer]) -> dict[str, str]:
    """``{token key: fingerprint of the tokenizer that makes it}``, as a token store records."""
    return {k.name: s.fingerprint for s in specs for k in s.token_keys}


def _encode_task(args: tuple[str, str, list[dict[str, Any]], str]) -> dict[str, Any]:
    from .store import write_token_store

    path, directory, spec_dicts, out = args
    specs = [SavedTokenizer.from_dict(d) for d in spec_dicts]
    t0 = time.perf_counter()
    ids, columns, keys, id_col = encode_one(path, directory, specs)
    write_token_store(
        out, ids, columns, keys, id_col=id_col,
        fingerprints=key_fingerprints(specs),
        extra={"source": _source_info(path), "tokenizers": {s.section: s.cls for s in specs}},
    )
    return {"file": path, "out": out, "rows": int(len(ids)), "status": "encoded",
            "seconds": time.perf_counter() - t0}


def store_path_for(store_dir: PathLike, path: PathLike) -> Path:
    """Where :func:`encode_files` writes the tokens of ``path``."""
    name = Path(path).name
    stem = name[: -len(".parquet")] if name.endswith(".parquet") else name
    return Path(store_dir) / f"{stem}{STORE_SUFFIX}"


def is_encoded(out: PathLike, source: PathLike, fingerprints: Mapping[str, str]) -> bool:
    """True if ``out`` holds the tokens of ``source`` (same path, size and modification time)
    made with ``fingerprints``."""
    from .store import store_metadata

    if not Path(out).is_file():
        return False
    try:
        meta = store_metadata(out)
    except DataError:
        return False
    return meta.get("fingerprints") == dict(fingerprints) and meta.get("source") == _source_info(source)


def encode_files(
    files: Sequence[PathLike],
    tokenizer_dir: PathLike,
    store_dir: PathLike,
    *,
    engine: Engine | None = None,
    progress: bool = True,
    force: bool = False,
    sections: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """Encode every file with every tokenizer in ``tokenizer_dir``; one store file per input.

    Returns one record per file: ``file``, ``out``, ``rows``, ``status`` (``encoded`` or
    ``skipped``) and ``seconds``. ``sections`` restricts the tokenizers used.
    """
    specs = read_manifest(tokenizer_dir)
    if sections is not None:
        unknown = sorted(set(sections) - {s.section for s in specs})
        if unknown:
            raise ConfigError(f"{tokenizer_dir}: no trained tokenizer for section(s) {unknown}")
        specs = [s for s in specs if s.section in set(sections)]
    if not specs:
        raise ConfigError(f"{tokenizer_dir}: the manifest lists no tokenizers")
    files = [str(Path(f)) for f in files]
    if not files:
        raise DataError("no input files to encode")
    outs = [store_path_for(store_dir, f) for f in files]
    seen: dict[Path, str] = {}
    for f, o in zip(files, outs):
        if not Path(f).is_file():
            raise DataError(f"{f}: file not found")
        if o in seen:
            raise DataError(f"{f} and {seen[o]} would both be written to {o}; rename one")
        seen[o] = f
    Path(store_dir).mkdir(parents=True, exist_ok=True)
    fps = key_fingerprints(specs)
    records: list[dict[str, Any] | None] = [None] * len(files)
    todo = []
    for i, (f, o) in enumerate(zip(files, outs)):
        if not force and is_encoded(o, f, fps):
            records[i] = {"file": f, "out": str(o), "rows": _rows(o), "status": "skipped", "seconds": 0.0}
        else:
            todo.append(i)
    spec_dicts = [s.as_dict() for s in specs]
    tdir = str(Path(tokenizer_dir).resolve())
    own = engine is None
    engine = engine or LocalEngine()
    try:
        done = engine.map(_encode_task, [(files[i], tdir, spec_dicts, str(outs[i])) for i in todo],
                          desc="encode", progress=progress)
    finally:
        if own:
            engine.close()
    for i, rec in zip(todo, done):
        records[i] = rec
    return [r for r in records if r is not None]


def _rows(path: PathLike) -> int:
    from .io import num_rows

    return num_rows(path)


def iter_store_files(store: PathLike) -> Iterator[Path]:
    """The token-store files of a store directory (or the file itself), sorted by name."""
    p = Path(store)
    if p.is_file():
        yield p
        return
    yield from sorted(p.glob(f"*{STORE_SUFFIX}"))


def merge_store(store_dir: PathLike, out: PathLike, *, batch_size: int = 65_536) -> Path:
    """Concatenate a store directory's files into one token-store parquet, streaming batches.

    Every part must record the same token keys and fingerprints; the merged file records them
    once (its ``sources`` list names the parts).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from .store import STORE_META_KEY, store_metadata

    parts = list(iter_store_files(store_dir))
    if not parts:
        raise DataError(f"{store_dir}: no *{STORE_SUFFIX} files to merge")
    metas = [store_metadata(p) for p in parts]
    first = metas[0]
    for p, m in zip(parts[1:], metas[1:]):
        if set(m["token_keys"]) != set(first["token_keys"]) or m["fingerprints"] != first["fingerprints"]:
            raise DataError(f"{p}: token keys or fingerprints differ from {parts[0]}; re-encode it")
    meta = {
        "id_col": first["id_col"],
        "token_keys": {k: v.as_dict() for k, v in first["token_keys"].items()},
        "fingerprints": first["fingerprints"],
        "sources": [m.get("source", {}).get("path", str(p)) for p, m in zip(parts, metas)],
        "tokenizers": first.get("tokenizers", {}),
    }
    schema = pq.ParquetFile(parts[0]).schema_arrow.with_metadata({STORE_META_KEY: json.dumps(meta)})
    names = schema.names
    with atomic_path(out, suffix=".parquet") as tmp:
        with pq.ParquetWriter(tmp, schema) as writer:
            for p in parts:
                for batch in pq.ParquetFile(p).iter_batches(batch_size=batch_size, columns=names):
                    writer.write_table(pa.Table.from_batches([batch]).cast(schema))
    return Path(out)
