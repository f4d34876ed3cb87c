"""Train every tokenizer a config names, and encode many files into a token store.

- :func:`train_tokenizers`: for each section under ``tokenizers:`` of a config (a registered
  tokenizer name: ``scalar``, ``spectrum``...), build the tokenizer with ``from_config``,
  sample every file as a separate task and fold the samples as they arrive (memory holds one
  merged sample, not one per file), fit, and write the whole fitted set at once
  (:class:`~astromodal_core.tokenizer_set.TokenizerSet`): a failure in a later section leaves
  the previous set untouched. The same seed gives the same state on any engine.
- :func:`encode_files`: one task per input file streams it through every tokenizer of the set,
  record batch by record batch, into ``<stem>.tokens.parquet`` (atomic: a killed run leaves
  the old part or none). A part that already records the set's fingerprints and the same
  source size and time is skipped.

Inputs are sources (:mod:`astromodal_core.sources`): parquet and FITS files, directories of
parquet files (one task per file) and HATS catalogues (``hats://PATH``: one task per HEALPix
partition, each store part ``Norder=<o>_Npix=<p>.tokens.parquet`` recording its pixel).

Tasks receive plain data (registered names, config dicts, paths); the classes are resolved
through the registry in each worker, never imported from a name written in a file.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .engines import DaskEngine, Engine, LocalEngine, make_engine
from .errors import ConfigError, DataError
from .sources import SourcePart, expand_sources
from .store_dir import STORE_SUFFIX, is_encoded, iter_store_files, merge_store, store_path_for
from .tokenizer_set import MANIFEST, Member, TokenizerSet

PathLike = str | os.PathLike[str]

__all__ = [
    "MANIFEST",
    "STORE_SUFFIX",
    "DaskEngine",
    "Engine",
    "LocalEngine",
    "encode_files",
    "encode_one",
    "iter_store_files",
    "make_engine",
    "merge_store",
    "store_path_for",
    "tokenizer_sections",
    "train_tokenizers",
]


def tokenizer_sections(config: Mapping[str, Any], *, only_installed: bool = False) -> dict[str, dict[str, Any]]:
    """``{name: settings}`` under ``tokenizers:`` of a config, each a registered tokenizer.

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
        if settings is not None and not isinstance(settings, Mapping):
            raise ConfigError(f"config section tokenizers.{name}: expected a mapping of settings")
        out[name] = dict(settings or {})
    return out


def _build(name: str, settings: Mapping[str, Any]) -> Any:
    from .registry import get_registry

    return get_registry().tokenizer(name).from_config(settings)


def _sample_task(args: tuple[str, dict[str, Any], str]) -> Any:
    name, settings, path = args
    return _build(name, settings).sample_file(path)


def _check_files(files: Sequence[Any], what: str) -> list[SourcePart]:
    """Every input as the parts workers receive (files, dataset files, HATS partitions)."""
    items = [files] if isinstance(files, (str, os.PathLike)) else list(files)
    if not items:
        raise DataError(f"no input files to {what}")
    return expand_sources(items)


def train_tokenizers(
    config: Mapping[str, Any],
    files: Sequence[PathLike],
    out_dir: PathLike,
    *,
    engine: Engine | None = None,
    progress: bool = True,
    only_installed: bool = False,
    on_trained: Callable[[Member, float], None] | None = None,
) -> TokenizerSet:
    """Train every tokenizer in ``config`` on ``files`` (sources: a HATS catalogue is sampled
    partition by partition) and write the fitted set to ``out_dir``."""
    from tqdm.auto import tqdm

    files = [p.spec for p in _check_files(files, "train on")]
    sections = tokenizer_sections(config, only_installed=only_installed)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a directory")
    own = engine is None
    engine = engine or LocalEngine()
    trained: dict[str, Any] = {}
    seconds: dict[str, float] = {}
    try:
        for name, settings in sections.items():
            t0 = time.perf_counter()
            tok = _build(name, settings)
            merged: Any = None
            tasks = [(name, settings, f) for f in files]
            with tqdm(total=len(tasks), desc=f"sample {name}", unit="file", disable=not progress,
                      leave=False) as bar:
                for _, sample in engine.imap_unordered(_sample_task, tasks):
                    merged = sample if merged is None else tok.merge_samples(merged, sample)
                    bar.update()
            tok.fit_from_samples([merged])
            trained[name] = tok
            seconds[name] = time.perf_counter() - t0
    finally:
        if own:
            engine.close()
    tset = TokenizerSet.write(out, trained)
    if on_trained is not None:
        for m in tset:
            on_trained(m, seconds[m.name])
    return tset


# encoding ---------------------------------------------------------------------------------
_SETS: dict[tuple[str, tuple[tuple[str, str], ...]], TokenizerSet] = {}


def _load_set(directory: str, names: Sequence[str]) -> TokenizerSet:
    """The fitted set of ``directory`` restricted to ``names``, cached per worker process."""
    tset = TokenizerSet.read(directory).subset(names)
    key = (str(Path(directory).resolve()), tuple(sorted(tset.fingerprints().items())))
    if key not in _SETS:
        _SETS[key] = tset
    return _SETS[key]


def iter_encoded(path: PathLike, tset: TokenizerSet, *, batch_size: int | None = None) -> Any:
    """Yield ``(ids, {token key: tokens})`` per record batch of ``path``, every tokenizer of the
    set reading the same rows; the tokenizers must agree on the row ids."""
    toks = tset.tokenizers()
    size = int(batch_size or min(int(t.encode_batch_size) for t in toks.values()))
    iters = {n: t.iter_token_batches(path, batch_size=size, progress=False) for n, t in toks.items()}
    names = list(iters)
    while True:
        got = {}
        for n in names:
            got[n] = next(iters[n], None)
        ended = [n for n in names if got[n] is None]
        if ended:
            if len(ended) != len(names):
                raise DataError(f"{path}: tokenizers {ended} ended before {sorted(set(names) - set(ended))}")
            return
        ids = np.asarray(got[names[0]][0], dtype=np.int64)
        columns: dict[str, Any] = {}
        for n in names:
            other, cols = got[n]
            if not np.array_equal(np.asarray(other, dtype=np.int64), ids):
                raise DataError(f"{path}: tokenizers {names[0]!r} and {n!r} read different row ids "
                                "(different id columns?); encode them separately")
            for k, v in cols.items():
                if k in columns:
                    raise DataError(f"{path}: two tokenizers write token key {k!r}")
                columns[k] = v
        yield ids, columns


def encode_one(path: PathLike, tset: TokenizerSet, out: PathLike, *,
               batch_size: int | None = None, record: Mapping[str, Any] | None = None) -> int:
    """Stream one file through every tokenizer of ``tset`` into the store part ``out``;
    ``record`` adds to what the part records (a HATS partition's ``healpix``)."""
    from .store import TokenStoreWriter, source_info

    toks = tset.tokenizers()
    id_cols = {getattr(t, "id_col", "id") for t in toks.values()}
    if len(id_cols) != 1:
        raise ConfigError(f"{tset.directory}: tokenizers read different id columns {sorted(id_cols)}")
    keys = {k.name: k for t in toks.values() for k in t.token_keys}
    with TokenStoreWriter(out, keys, id_col=id_cols.pop(), fingerprints=tset.key_fingerprints(),
                          extra={**dict(record or {}), "tokenizers": tset.fingerprints(),
                                 "source": source_info(path)}) as w:
        for ids, columns in iter_encoded(path, tset, batch_size=batch_size):
            w.write(ids, columns)
        return w.rows


def _encode_task(args: tuple[str, str, list[str], str, dict[str, Any]]) -> dict[str, Any]:
    path, directory, names, out, record = args
    t0 = time.perf_counter()
    rows = encode_one(path, _load_set(directory, names), out, record=record)
    return {"file": path, "out": out, "rows": int(rows), "status": "encoded",
            "seconds": time.perf_counter() - t0, **_public(record)}


def _public(record: Mapping[str, Any]) -> dict[str, Any]:
    """What an encode record reports of a part's record (a HATS partition's pixel)."""
    return {"healpix": dict(record["healpix"])} if "healpix" in record else {}


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
    """Encode every source with every tokenizer of the set in ``tokenizer_dir``; one store part
    per file (per HEALPix partition of a HATS catalogue).

    Returns one record per part: ``file``, ``out``, ``rows``, ``status`` (``encoded`` or
    ``skipped``), ``seconds`` and, for a HATS partition, ``healpix`` (``order``, ``pixel``).
    ``sections`` restricts the tokenizers used (by name).
    """
    tset = TokenizerSet.read(tokenizer_dir)
    if sections is not None:
        unknown = sorted(set(sections) - set(tset.names()))
        if unknown:
            raise ConfigError(f"{tokenizer_dir}: no trained tokenizer for section(s) {unknown}")
        tset = tset.subset([n for n in tset.names() if n in set(sections)])
    if not len(tset):
        raise ConfigError(f"{Path(tokenizer_dir) / MANIFEST}: the manifest lists no tokenizers")
    for n in tset.names():
        tset.tokenizer_class(n)  # every name must be installed here, before any work starts
    parts = _check_files(files, "encode")
    files = [p.spec for p in parts]
    store = Path(store_dir)
    if store.exists() and not store.is_dir():
        raise DataError(f"{store}: exists and is not a directory; --out needs a directory")
    outs = [store / f"{p.name}{STORE_SUFFIX}" for p in parts]
    seen: dict[Path, str] = {}
    for f, o in zip(files, outs):
        if o in seen:
            raise DataError(f"{f} and {seen[o]} would both be written to {o}; rename one")
        seen[o] = f
    store.mkdir(parents=True, exist_ok=True)
    fps = tset.key_fingerprints()
    records: list[dict[str, Any] | None] = [None] * len(files)
    todo = []
    for i, (f, o) in enumerate(zip(files, outs)):
        if not force and is_encoded(o, f, fps):
            records[i] = {"file": f, "out": str(o), "rows": _rows(o), "status": "skipped", "seconds": 0.0,
                          **_public(parts[i].record)}
        else:
            todo.append(i)
    tdir = str(Path(tokenizer_dir).resolve())
    own = engine is None
    engine = engine or LocalEngine()
    try:
        done = engine.map(_encode_task, [(files[i], tdir, tset.names(), str(outs[i]), dict(parts[i].record))
                                         for i in todo],
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
