"""Build the demo datacube: a synthetic sky plus every installed plugin's survey columns."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from astromodal_core import DataError
from astromodal_core.serialize import atomic_path

from .hookspecs import DEMO_COLUMNS_HOOK
from .realdata import apply_real_samples, pin_real_objects
from .sky import DemoColumns, Sky

PathLike = str | os.PathLike[str]


@attrs.frozen
class Datacube:
    """What :func:`build_datacube` wrote."""

    files: tuple[Path, ...]
    sky: Sky
    columns: dict[str, tuple[str, ...]]  # contribution name -> its columns
    seconds: dict[str, float]  # contribution name -> generation time


def installed_contributions() -> list[DemoColumns]:
    """Every ``DemoColumns`` the installed plugins register (``astromodal_register_demo_columns``),
    each with the plugin that registered it; a plugin whose hook raises is marked broken."""
    from astromodal_core import get_registry

    return [DemoColumns.coerce(e.obj, e.plugin, e.plugin)
            for e in get_registry().collect(DEMO_COLUMNS_HOOK)]


def _to_arrow(name: str, values: Any, n: int, who: str) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    arr = values if isinstance(values, pa.Array) else pa.array(np.asarray(values))
    if len(arr) != n:
        raise DataError(f"demo columns {who!r}: column {name!r} has {len(arr)} rows, the sky has {n}")
    return arr


def build_columns(
    sky: Sky,
    contributions: Sequence[DemoColumns],
    options: Mapping[str, Any] | None = None,
    *,
    real_samples: bool = True,
    progress: bool = True,
) -> tuple[dict[str, pa.Array], dict[str, tuple[str, ...]], dict[str, float], Sky]:
    """All datacube columns for a sky: truth first, then each contribution's."""
    from tqdm.auto import tqdm

    options = dict(options or {})
    pins: dict[str, list[tuple[int, int]]] = {"desi": [], "gaia_xp": []}
    if real_samples:
        sky, pins = pin_real_objects(sky)
    n = len(sky)
    columns: dict[str, Any] = dict(sky.truth())
    owner = {c: "truth" for c in columns}
    made: dict[str, tuple[str, ...]] = {}
    seconds: dict[str, float] = {}
    for contrib in tqdm(list(contributions), desc="datacube columns", disable=not progress, leave=False):
        t0 = time.perf_counter()
        produced = dict(contrib(sky, options))
        seconds[contrib.name] = time.perf_counter() - t0
        for name, values in produced.items():
            if name in owner:
                raise DataError(
                    f"demo column {name!r} is produced by both {owner[name]!r} and {contrib.name!r}"
                )
            owner[name] = contrib.name
            columns[name] = values
        made[contrib.name] = tuple(produced)
    labels = apply_real_samples(columns, pins, sky.ids) if real_samples else [""] * n
    columns["real_source"] = np.array(labels)
    arrays = {name: _to_arrow(name, v, n, owner.get(name, "truth")) for name, v in columns.items()}
    return arrays, made, seconds, sky


def build_datacube(
    out_dir: PathLike,
    n: int = 2000,
    seed: int = 0,
    *,
    n_files: int = 1,
    options: Mapping[str, Any] | None = None,
    contributions: Sequence[DemoColumns] | None = None,
    real_samples: bool = True,
    prefix: str = "demo_datacube",
    progress: bool = True,
) -> Datacube:
    """Write ``n`` objects as ``n_files`` parquet datacubes (``<prefix>_<k>.parquet``).

    ``contributions`` default to every installed plugin's demo columns. Each file is written
    atomically; the rows are split in id order.
    """
    if n_files < 1 or n_files > n:
        raise ValueError(f"n_files must be in [1, n], got {n_files} for n={n}")
    contributions = installed_contributions() if contributions is None else list(contributions)
    sky = Sky.generate(n, seed)
    arrays, made, seconds, sky = build_columns(sky, contributions, options,
                                               real_samples=real_samples, progress=progress)
    table = pa.table(arrays)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    bounds = np.linspace(0, n, n_files + 1).astype(int)
    files = []
    for k in range(n_files):
        path = out / f"{prefix}_{k:03d}.parquet"
        part = table.slice(bounds[k], bounds[k + 1] - bounds[k])
        with atomic_path(path, suffix=".parquet") as tmp:
            pq.write_table(part, tmp, row_group_size=256)
        files.append(path)
    return Datacube(tuple(files), sky, made, seconds)
