"""A token store directory: one ``<stem>.tokens.parquet`` part per input file (or HATS
partition), and merging.

Each part is written atomically and records the fingerprints of the tokenizer set that made
it and the size / modification time of its source, so a re-run skips finished parts and
redoes only the rest.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from .errors import DataError
from .serialize import atomic_path, clean_stale_temps
from .store import STORE_META_KEY, source_info, store_metadata

PathLike = str | os.PathLike[str]
STORE_SUFFIX = ".tokens.parquet"


def store_path_for(store_dir: PathLike, path: PathLike) -> Path:
    """Where :func:`~astromodal_core.pipeline.encode_files` writes the tokens of the file
    ``path`` (its name without ``.parquet`` or a FITS ending; a HATS partition's part is
    ``Norder=<o>_Npix=<p>.tokens.parquet``)."""
    from .sources import _stem

    return Path(store_dir) / f"{_stem(Path(path))}{STORE_SUFFIX}"


def is_encoded(out: PathLike, source: PathLike, fingerprints: Mapping[str, str]) -> bool:
    """True if ``out`` holds the tokens of ``source`` (same path, size and modification time)
    made with ``fingerprints`` (``{token key: fingerprint}``).

    Temporary files a killed earlier write of ``out`` left are removed first: a re-run that
    skips ``out`` would otherwise never clean them.
    """
    clean_stale_temps(out)
    if not Path(out).is_file():
        return False
    try:
        meta = store_metadata(out)
    except DataError:
        return False
    return meta.get("fingerprints") == dict(fingerprints) and meta.get("source") == source_info(source)


def iter_store_files(store: PathLike) -> Iterator[Path]:
    """The parts of a store directory (or the file itself), sorted by name."""
    p = Path(store)
    if p.is_file():
        yield p
        return
    if not p.is_dir():
        raise DataError(f"{p}: no such token store file or directory")
    yield from sorted(p.glob(f"*{STORE_SUFFIX}"))


def merge_store(store_dir: PathLike, out: PathLike, *, batch_size: int = 65_536) -> Path:
    """Concatenate a store directory's parts into one token-store parquet, streaming batches.

    Every part must record the same token keys and fingerprints; the merged file records them
    once (its ``sources`` list names the parts). Written atomically.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = Path(out)
    if out.is_dir():
        raise DataError(f"{out}: is a directory; --merged needs a file path such as {out / 'all.tokens.parquet'}")
    parts = list(iter_store_files(store_dir))
    if not parts:
        raise DataError(f"{store_dir}: no *{STORE_SUFFIX} files to merge")
    metas = [store_metadata(p) for p in parts]
    first = metas[0]
    for p, m in zip(parts[1:], metas[1:]):
        if set(m["token_keys"]) != set(first["token_keys"]) or m["fingerprints"] != first["fingerprints"]:
            raise DataError(f"{p}: token keys or fingerprints differ from {parts[0]}; re-encode it")
    meta: dict[str, Any] = {
        "id_col": first["id_col"],
        "token_keys": {k: v.as_dict() for k, v in first["token_keys"].items()},
        "fingerprints": first["fingerprints"],
        "tokenizers": first.get("tokenizers", {}),
        "sources": [m.get("source", {}).get("path", str(p)) for p, m in zip(parts, metas)],
    }
    schema = pq.ParquetFile(parts[0]).schema_arrow.with_metadata({STORE_META_KEY: json.dumps(meta)})
    names = schema.names
    with atomic_path(out, suffix=".parquet") as tmp:
        with pq.ParquetWriter(tmp, schema) as writer:
            for p in parts:
                for batch in pq.ParquetFile(p).iter_batches(batch_size=batch_size, columns=names):
                    writer.write_table(pa.Table.from_batches([batch]).cast(schema))
    return out
