"""Record-batch reading with bounded memory.

Same checks and errors as :func:`astromodal_core.io.iter_batches` (missing, empty, corrupt
file, absent column, no rows), but the file is read with ``pre_buffer=False``: pyarrow's
default pre-buffering keeps whole column chunks of every row group it has read resident,
which took a 20 M row encode to 1.6 GB of RSS instead of about 170 MB.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from astromodal_core import DataError
from astromodal_core.io import DEFAULT_BATCH_SIZE, open_parquet, require_columns


def iter_batches(
    path: str | os.PathLike[str],
    columns: Sequence[str],
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> Iterator[pa.RecordBatch]:
    """Yield record batches of ``columns``; memory is bounded by ``batch_size``."""
    pf = open_parquet(path)
    require_columns(pf, path, columns)
    if pf.metadata.num_rows == 0:
        raise DataError(f"{path}: the file has no rows")
    try:
        stream = pq.ParquetFile(path, pre_buffer=False)
        yield from stream.iter_batches(batch_size=batch_size, columns=list(columns))
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"{path}: corrupt parquet data ({exc})") from exc
