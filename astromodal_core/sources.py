"""Data sources: every input a tokenizer reads, as the same pyarrow record batches.

A *source* is anything :func:`open_source` resolves:

==========================================  ===============================================
what you pass                               source
==========================================  ===============================================
``cube.parquet`` (any other file name too)  :class:`ParquetSource` (the fast path)
a directory of parquet files                :class:`ParquetDatasetSource` (files in order)
``cat.fits`` / ``.fit`` / ``.fts`` (+``.gz``) :class:`FitsSource` (astropy: ``fits`` extra)
``cat.fits[NAME]`` / ``cat.fits[2]``        the same, that HDU
an ``astropy.table.Table`` / ``QTable``     :class:`TableSource` (masked values = missing)
a ``pyarrow.Table`` / ``pandas.DataFrame``  :class:`ArrowSource`
``hats://PATH`` or a HATS catalogue dir     :class:`HatsSource` (``hats`` extra), partition
                                            by partition
an ``lsdb.Catalog`` (lazy, e.g. a           :class:`LsdbSource`: computed partition by
crossmatch)                                 partition in this process
anything a plugin registers                 through ``astromodal_register_sources``
==========================================  ===============================================

Every source offers what :class:`pyarrow.parquet.ParquetFile` offers a tokenizer:
``schema_arrow``, ``metadata.num_rows`` and ``iter_batches(batch_size=, columns=)``, so
:func:`astromodal_core.io.iter_batches`, :func:`~astromodal_core.io.num_rows` and
:func:`~astromodal_core.io.open_parquet` read every source and every tokenizer (in this
repository or outside) reads every source without change. A parquet file stays on the fast
path: :mod:`astromodal_core.io` reads it directly, with no extra copy.

astropy columns: a masked value becomes a null (a tokenizer sees a missing value: NaN in a
float column), a :class:`~astropy.units.Quantity` gives its values and every unit is kept in
the arrow field's metadata (``b"unit"``); FITS ``TNULL`` integers are masked by astropy and
FITS column names match case-insensitively, as the FITS standard says.

:meth:`Source.parts` splits a source into the units a pipeline sends to its workers as plain
data: one per file of a dataset directory, one per HEALPix partition of a HATS catalogue, each
with the record its store part keeps (``{"healpix": {"order": 5, "pixel": 1234}}``).
"""

from __future__ import annotations

import abc
import contextlib
import os
import re
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import attrs
import numpy as np
import pyarrow as pa

from .errors import ConfigError, DataError

PathLike = str | os.PathLike[str]
DEFAULT_BATCH_SIZE = 65_536
#: file name endings read as FITS binary tables
FITS_SUFFIXES: tuple[str, ...] = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz", ".fts.gz")
#: file name endings read as parquet without asking plugins
PARQUET_SUFFIXES: tuple[str, ...] = (".parquet", ".pq", ".parq")
HATS_SCHEME = "hats://"
SOURCES_HOOK = "astromodal_register_sources"
_SCHEME = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<rest>.*)$")
_FITS_HDU = re.compile(r"^(?P<path>.+?)\[(?P<hdu>[^\[\]]+)\]$")

__all__ = [
    "ArrowSource",
    "FitsSource",
    "HatsSource",
    "LsdbSource",
    "ParquetDatasetSource",
    "ParquetSource",
    "Source",
    "SourceKind",
    "SourcePart",
    "TableSource",
    "expand_sources",
    "is_parquet_path",
    "open_source",
    "source_label",
    "source_arg",
    "source_list",
    "write_fits",
]


@attrs.frozen
class SourcePart:
    """One unit of work of a source: what a worker opens, the store part's name, and what the
    store part records about it (``{"healpix": {"order": o, "pixel": p}}`` for a partition)."""

    spec: str
    name: str
    record: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class _Metadata:
    """The part of :class:`pyarrow.parquet.FileMetaData` tokenizers read."""

    num_rows: int


class Source(abc.ABC):
    """A table of rows read in record batches (see the module docstring).

    Subclasses supply ``kind``, ``name``, :attr:`schema_arrow`, :attr:`num_rows` and
    :meth:`_batches`; the base checks the columns and gives the parquet-like interface.
    """

    #: what the source is: ``parquet``, ``fits``, ``hats``... (recorded in store parts)
    kind: ClassVar[str] = "source"
    #: a stable label used in error messages and store records (a path, ``hats://...``)
    name: str = "<source>"

    # -- what a subclass supplies ----------------------------------------------------------
    @property
    @abc.abstractmethod
    def schema_arrow(self) -> pa.Schema:
        """The arrow schema of the rows (every column)."""

    @property
    @abc.abstractmethod
    def num_rows(self) -> int:
        """The number of rows."""

    @abc.abstractmethod
    def _batches(self, columns: list[str], batch_size: int) -> Iterator[pa.RecordBatch]:
        """Record batches of ``columns`` (already checked), at most ``batch_size`` rows each."""

    # -- what the base gives -------------------------------------------------------------------
    @property
    def schema(self) -> pa.Schema:
        """The arrow schema (alias of :attr:`schema_arrow`)."""
        return self.schema_arrow

    @property
    def columns(self) -> list[str]:
        """The column names."""
        return list(self.schema_arrow.names)

    @property
    def metadata(self) -> _Metadata:
        """``metadata.num_rows``, as a parquet file's footer gives it."""
        return _Metadata(int(self.num_rows))

    def resolve_column(self, name: str) -> str:
        """The source's spelling of column ``name`` (exact here; FITS matches case-insensitively)."""
        return name

    def require(self, columns: Sequence[str]) -> None:
        """Raise :class:`DataError` naming the source and the first absent column."""
        names = set(self.columns)
        missing = [c for c in columns if c not in names and self.resolve_column(c) not in names]
        if missing:
            raise DataError(
                f"{self.name}: missing column {missing[0]!r}"
                + (f" (and {len(missing) - 1} more: {missing[1:6]})" if len(missing) > 1 else "")
                + f"; the source has {sorted(names)[:20]}"
            )

    def iter_batches(self, batch_size: int = DEFAULT_BATCH_SIZE, columns: Sequence[str] | None = None,
                     *, allow_empty: bool = False, **_: Any) -> Iterator[pa.RecordBatch]:
        """Yield record batches of ``columns`` (default: all), named as asked; memory is
        bounded by ``batch_size``. No rows is a :class:`DataError` unless ``allow_empty``."""
        cols = self.columns if columns is None else list(columns)
        self.require(cols)
        if int(self.num_rows) == 0 and not allow_empty:
            raise DataError(f"{self.name}: the source has no rows")
        size = int(batch_size)
        if size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
        yield from self._batches(cols, size)

    def info(self) -> dict[str, Any]:
        """What a token store records of this source (a file's records add size and time)."""
        return {"path": self.name, "kind": self.kind, "rows": int(self.num_rows)}

    def parts(self) -> list[SourcePart]:
        """The units a pipeline sends to workers (plain data): by default the source itself
        when its name is an existing file (a worker opens it again); a source that exists only
        in this process (an in-memory table) has none and raises :class:`DataError`."""
        if Path(self.name).is_file():
            return [SourcePart(self.name, _stem(Path(self.name)))]
        raise DataError(
            f"{self.name}: a {self.kind} source lives in this process and cannot be sent to "
            "worker processes; encode it with the tokenizer's encode / encode_to_store"
        )

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


# files -----------------------------------------------------------------------------------------
def _check_file(path: Path) -> None:
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if not path.is_file():
        raise DataError(f"{path}: is a directory, expected a file" if path.is_dir() else f"{path}: not a regular file")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: empty file (0 bytes)")


def file_info(path: PathLike) -> dict[str, Any]:
    """Resolved path, size and modification time of a file (how stores recognise their input)."""
    st = Path(path).stat()
    return {"path": str(Path(path).resolve()), "size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns)}


def _stem(path: Path) -> str:
    """A file's name without ``.parquet`` or a FITS ending (a store part's stem)."""
    name = path.name
    for suffix in (*FITS_SUFFIXES, ".parquet"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


class ParquetSource(Source):
    """One parquet file (zero-copy record batches from pyarrow)."""

    kind = "parquet"

    def __init__(self, path: PathLike):
        from .io import open_parquet

        self.path = Path(path)
        self.name = str(path)
        self._pf = open_parquet(self.path)

    @property
    def schema_arrow(self) -> pa.Schema:
        return self._pf.schema_arrow

    @property
    def num_rows(self) -> int:
        return int(self._pf.metadata.num_rows)

    def _batches(self, columns: list[str], batch_size: int) -> Iterator[pa.RecordBatch]:
        try:
            yield from self._pf.iter_batches(batch_size=batch_size, columns=columns)
        except (pa.ArrowException, OSError) as exc:
            raise DataError(f"{self.name}: corrupt parquet data ({exc})") from exc

    def info(self) -> dict[str, Any]:
        return file_info(self.path)

    def parts(self) -> list[SourcePart]:
        return [SourcePart(str(self.path), _stem(self.path))]


def _dataset_files(directory: Path) -> list[Path]:
    """The parquet files under ``directory``, sorted; hidden and ``_metadata``-like files skipped."""
    out = []
    for p in sorted(directory.rglob("*")):
        rel = p.relative_to(directory).parts
        if any(part.startswith((".", "_")) for part in rel) or not p.is_file():
            continue
        if p.name.lower().endswith(PARQUET_SUFFIXES):
            out.append(p)
    return out


class ParquetDatasetSource(Source):
    """A directory of parquet files (recursively, sorted by path), read one after another."""

    kind = "parquet-dataset"

    def __init__(self, directory: PathLike):
        self.path = Path(directory)
        self.name = str(directory)
        if not self.path.is_dir():
            raise DataError(f"{self.path}: not a directory")
        self.files = _dataset_files(self.path)
        if not self.files:
            raise DataError(f"{self.path}: directory holds no parquet files (*.parquet)")
        self._sources = [ParquetSource(f) for f in self.files]

    @property
    def schema_arrow(self) -> pa.Schema:
        return self._sources[0].schema_arrow

    @property
    def num_rows(self) -> int:
        return sum(s.num_rows for s in self._sources)

    def _batches(self, columns: list[str], batch_size: int) -> Iterator[pa.RecordBatch]:
        for s in self._sources:
            if s.num_rows:
                yield from s.iter_batches(batch_size=batch_size, columns=columns)

    def info(self) -> dict[str, Any]:
        infos = [file_info(f) for f in self.files]
        return {"path": str(self.path.resolve()), "kind": self.kind, "files": len(infos),
                "size": sum(i["size"] for i in infos), "mtime_ns": max(i["mtime_ns"] for i in infos)}

    def parts(self) -> list[SourcePart]:
        return [SourcePart(str(f), "-".join(f.relative_to(self.path).parts)[: -len(f.suffix)] or f.stem)
                for f in self.files]


# astropy -------------------------------------------------------------------------------------
def _need_astropy(what: str) -> Any:
    try:
        import astropy  # noqa: F401
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ConfigError(f"{what} needs astropy: pip install 'astromodal-core[fits]'") from exc


def _native(a: np.ndarray) -> np.ndarray:
    """``a`` in native byte order (FITS data is big-endian)."""
    if a.dtype.byteorder not in ("=", "|"):
        return a.astype(a.dtype.newbyteorder("="))
    return a


def _unit_of(col: Any) -> str | None:
    unit = getattr(col, "unit", None)
    if unit is None:
        return None
    text = str(unit)
    return text or None


def _astropy_to_arrow(col: Any, name: str, where: str) -> pa.Array:
    """One astropy column (Column, MaskedColumn, Quantity, masked Quantity) as an arrow array;
    masked values become nulls."""
    import astropy.units as u
    from astropy.table import Column

    mask = None
    if isinstance(col, Column):
        data = col.data
        if np.ma.isMaskedArray(data):
            mask = np.ma.getmaskarray(data)
            data = data.data
    elif isinstance(col, u.Quantity) or hasattr(col, "unmasked"):
        if hasattr(col, "unmasked"):  # astropy.utils.masked.Masked (a masked Quantity)
            mask = np.asarray(col.mask)
            col = col.unmasked
        data = col.value if isinstance(col, u.Quantity) else np.asarray(col)
    else:
        raise DataError(f"{where}: column {name!r} is a {type(col).__name__} (mixin column); "
                        "convert it to plain values first")
    data = np.asarray(data)
    if mask is not None and not mask.any():
        mask = None
    if data.dtype.kind == "O":  # variable-length arrays (FITS 'P'/'Q' columns)
        rows = [None if (mask is not None and bool(np.all(mask[i]))) else _native(np.asarray(v))
                for i, v in enumerate(data)]
        try:
            return pa.array(rows)
        except (pa.ArrowException, TypeError, ValueError) as exc:
            raise DataError(f"{where}: column {name!r} cannot be read as arrow ({exc})") from exc
    data = _native(data)
    if data.dtype.kind == "S":
        data = np.char.decode(data, "ascii", errors="replace")
    if data.dtype.kind in "U":
        data = np.char.rstrip(data)
    if data.ndim <= 1:
        return pa.array(data, mask=mask, from_pandas=False) if mask is not None else pa.array(data)
    n = data.shape[0]
    width = int(np.prod(data.shape[1:]))
    flat = np.ascontiguousarray(data.reshape(n, width))
    values = pa.array(flat.ravel(), mask=None if mask is None else np.asarray(mask).reshape(n, width).ravel())
    return pa.FixedSizeListArray.from_arrays(values, width)


def _field(name: str, array: pa.Array, unit: str | None) -> pa.Field:
    return pa.field(name, array.type, metadata={b"unit": unit.encode()} if unit else None)


class TableSource(Source):
    """An in-memory ``astropy.table.Table`` / ``QTable`` (masked values are missing values)."""

    kind = "astropy-table"

    def __init__(self, table: Any, *, name: str | None = None):
        _need_astropy("reading an astropy Table")
        from astropy.table import Table

        if not isinstance(table, Table):
            raise TypeError(f"expected an astropy Table, got {type(table).__name__}")
        self.table = table
        self.name = name or f"<astropy {type(table).__name__}: {len(table)} rows, {len(table.colnames)} columns>"
        self._schema: pa.Schema | None = None
        self._lower = {c.lower(): c for c in table.colnames}

    def resolve_column(self, name: str) -> str:
        if name in self.table.colnames:
            return name
        return self._lower.get(name.lower(), name)

    @property
    def schema_arrow(self) -> pa.Schema:
        if self._schema is None:
            head = self.table[:0]
            self._schema = pa.schema([
                _field(c, _astropy_to_arrow(head[c], c, self.name), _unit_of(self.table[c]))
                for c in self.table.colnames
            ])
        return self._schema

    @property
    def num_rows(self) -> int:
        return len(self.table)

    def _batches(self, columns: list[str], batch_size: int) -> Iterator[pa.RecordBatch]:
        names = [self.resolve_column(c) for c in columns]
        n = len(self.table)
        for start in range(0, n, batch_size):
            stop = min(n, start + batch_size)
            arrays, fields = [], []
            for asked, real in zip(columns, names):
                col = self.table[real][start:stop]
                arr = _astropy_to_arrow(col, real, self.name)
                arrays.append(arr)
                fields.append(_field(asked, arr, _unit_of(self.table[real])))
            yield pa.RecordBatch.from_arrays(arrays, schema=pa.schema(fields))


def _fits_parts(path: Path) -> tuple[Path, str | None]:
    """``(file, hdu)`` of ``cat.fits[NAME]`` (when no file has that literal name)."""
    if path.exists():
        return path, None
    m = _FITS_HDU.match(str(path))
    if m and Path(m["path"]).exists():
        return Path(m["path"]), m["hdu"]
    return path, None


class FitsSource(Source):
    """A FITS binary (or ASCII) table, read through astropy (memory-mapped where possible).

    ``hdu`` picks the HDU by index or EXTNAME; by default the first table HDU with columns.
    Masked values (``TNULL`` integers, masked columns) are missing values.
    """

    kind = "fits"

    def __init__(self, path: PathLike, *, hdu: int | str | None = None):
        _need_astropy(f"reading {path}")
        from astropy.io import fits

        file, bracket = _fits_parts(Path(path))
        _check_file(file)
        self.path = file
        if hdu is None and bracket is not None:
            hdu = int(bracket) if bracket.isdigit() else bracket
        memmap = not str(file).lower().endswith(".gz")
        try:
            self._hdul = fits.open(file, memmap=memmap)
        except (OSError, ValueError, TypeError) as exc:
            raise DataError(f"{file}: not a readable FITS file ({exc})") from exc
        self.hdu = self._pick(hdu)
        self.name = f"{file}[{self.hdu}]" if bracket is not None or hdu is not None else str(file)
        self._table: TableSource | None = None

    def _pick(self, hdu: int | str | None) -> int:
        from astropy.io import fits

        tables = [i for i, h in enumerate(self._hdul) if isinstance(h, (fits.BinTableHDU, fits.TableHDU))]
        if hdu is None:
            if not tables:
                raise DataError(f"{self.path}: no table HDU (it has {[type(h).__name__ for h in self._hdul]})")
            return tables[0]
        try:
            index = self._hdul.index_of(hdu)
        except (KeyError, IndexError) as exc:
            names = [h.name for h in self._hdul]
            raise DataError(f"{self.path}: no HDU {hdu!r}; it has {names}") from exc
        if index not in tables:
            raise DataError(f"{self.path}: HDU {hdu!r} is a {type(self._hdul[index]).__name__}, not a table")
        return index

    @property
    def _source(self) -> TableSource:
        if self._table is None:
            from astropy.table import Table

            with warnings.catch_warnings():
                from astropy.units import UnitsWarning

                warnings.simplefilter("ignore", UnitsWarning)  # non-standard units: kept as text
                try:
                    table = Table.read(self._hdul, hdu=self.hdu, character_as_bytes=False,
                                       mask_invalid=False)
                except (OSError, ValueError, TypeError, KeyError) as exc:
                    raise DataError(f"{self.name}: cannot read the table ({exc})") from exc
            self._table = TableSource(table, name=self.name)
        return self._table

    def resolve_column(self, name: str) -> str:
        return self._source.resolve_column(name)

    @property
    def schema_arrow(self) -> pa.Schema:
        return self._source.schema_arrow

    @property
    def num_rows(self) -> int:
        return int(self._hdul[self.hdu].header.get("NAXIS2", 0))

    def _batches(self, columns: list[str], batch_size: int) -> Iterator[pa.RecordBatch]:
        return self._source._batches(columns, batch_size)

    def info(self) -> dict[str, Any]:
        return {**file_info(self.path), "hdu": self.hdu}

    def parts(self) -> list[SourcePart]:
        return [SourcePart(self.name, _stem(self.path))]

    def close(self) -> None:
        """Close the file (the source cannot be read afterwards)."""
        with contextlib.suppress(Exception):
            self._hdul.close()


class ArrowSource(Source):
    """An in-memory ``pyarrow.Table`` / ``RecordBatch`` or ``pandas.DataFrame``."""

    kind = "arrow-table"

    def __init__(self, table: Any, *, name: str | None = None):
        if isinstance(table, pa.RecordBatch):
            table = pa.Table.from_batches([table])
        elif not isinstance(table, pa.Table):
            try:
                table = pa.Table.from_pandas(table, preserve_index=False)
            except (pa.ArrowException, TypeError, ValueError) as exc:
                raise DataError(f"cannot read a {type(table).__name__} as arrow ({exc})") from exc
        self.table = table
        self.name = name or f"<{type(table).__name__}: {table.num_rows} rows, {table.num_columns} columns>"

    @property
    def schema_arrow(self) -> pa.Schema:
        return self.table.schema

    @property
    def num_rows(self) -> int:
        return int(self.table.num_rows)

    def _batches(self, columns: list[str], batch_size: int) -> Iterator[pa.RecordBatch]:
        yield from self.table.select(columns).to_batches(max_chunksize=batch_size)


# HATS ------------------------------------------------------------------------------------------
def _properties(path: Path) -> dict[str, str]:
    """``key=value`` lines of a HATS properties file (``#`` comments)."""
    out = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            out[key.strip()] = value.strip()
    return out


def is_hats_dir(path: PathLike) -> bool:
    """True if ``path`` is a directory holding a HATS catalogue (or a collection of them)."""
    p = Path(path)
    return p.is_dir() and ((p / "collection.properties").is_file() or (
        any((p / m).is_file() for m in ("hats.properties", "properties"))
        and ((p / "partition_info.csv").is_file() or (p / "dataset").is_dir())))


def _hats_pixels(base: Path, where: str) -> list[tuple[int, int]]:
    """``(order, pixel)`` of every partition: ``partition_info.csv``, else the dataset's tree."""
    info = base / "partition_info.csv"
    pixels: list[tuple[int, int]] = []
    if info.is_file():
        lines = [ln.strip() for ln in info.read_text().splitlines() if ln.strip()]
        header = [h.strip() for h in lines[0].split(",")] if lines else []
        if "Norder" not in header or "Npix" not in header:
            raise DataError(f"{where}: {info} has no Norder / Npix columns (header {header})")
        io_, ip = header.index("Norder"), header.index("Npix")
        for n, ln in enumerate(lines[1:], start=2):
            cells = ln.split(",")
            try:
                pixels.append((int(cells[io_]), int(cells[ip])))
            except (ValueError, IndexError) as exc:
                raise DataError(f"{where}: {info} line {n}: not an order and a pixel ({ln!r})") from exc
    else:
        rx = re.compile(r"Norder=(\d+)/Dir=\d+/Npix=(\d+)")
        for f in sorted((base / "dataset").glob("Norder=*/Dir=*/Npix=*")):
            m = rx.search(f.as_posix())
            if m:
                pixels.append((int(m[1]), int(m[2])))
    if not pixels:
        raise DataError(f"{where}: the catalogue lists no partitions")
    return list(dict.fromkeys(pixels))


class HatsSource(Source):
    """A HATS catalogue (``hats://PATH`` or its directory), read partition by partition.

    Reads the layout directly (properties, ``partition_info.csv``,
    ``dataset/Norder=<o>/Dir=<d>/Npix=<p>.parquet``; a collection opens its primary catalogue),
    so no extra package is needed. Its :meth:`parts` are the HEALPix partitions; each records
    ``{"healpix": {"order": o, "pixel": p}, "catalog": path}`` so that store parts join back to
    the catalogue. Rows come partition after partition, with every column of the catalogue
    (``_healpix_29`` included).
    """

    kind = "hats"

    def __init__(self, path: PathLike):
        text = os.fspath(path)
        root = Path(text[len(HATS_SCHEME):] if text.startswith(HATS_SCHEME) else text)
        self.name = f"{HATS_SCHEME}{root}"
        if not root.is_dir():
            raise DataError(f"{self.name}: no such catalogue directory")
        if (root / "collection.properties").is_file():
            primary = _properties(root / "collection.properties").get("hats_primary_table_url")
            if not primary:
                raise DataError(f"{self.name}: collection.properties names no hats_primary_table_url")
            root = root / primary
        props_file = next((root / m for m in ("hats.properties", "properties") if (root / m).is_file()), None)
        if props_file is None:
            raise DataError(f"{self.name}: not a HATS catalogue (no hats.properties)")
        self.path = root
        self.properties = _properties(props_file)
        kind = self.properties.get("dataproduct_type", "object")
        if kind not in ("object", "source", "nested", "catalog", ""):
            raise DataError(f"{self.name}: a HATS {kind} catalogue, not a catalogue of rows")
        suffix = self.properties.get("hats_npix_suffix", ".parquet") or ".parquet"
        self.pixels = _hats_pixels(root, self.name)
        self.files = [root / "dataset" / f"Norder={o}" / f"Dir={(p // 10_000) * 10_000}"
                      / (f"Npix={p}" if suffix == "/" else f"Npix={p}{suffix}") for o, p in self.pixels]
        self._opened: dict[int, Source] = {}

    def _partition(self, i: int) -> Source:
        if i not in self._opened:
            f = self.files[i]
            self._opened[i] = ParquetDatasetSource(f) if f.is_dir() else ParquetSource(f)
        return self._opened[i]

    @property
    def schema_arrow(self) -> pa.Schema:
        import pyarrow.parquet as pq

        common = self.path / "dataset" / "_common_metadata"
        if common.is_file():
            try:
                return pq.read_schema(common).remove_metadata()
            except (pa.ArrowException, OSError) as exc:
                raise DataError(f"{self.name}: unreadable {common} ({exc})") from exc
        return self._partition(0).schema_arrow.remove_metadata()

    @property
    def num_rows(self) -> int:
        total = self.properties.get("hats_nrows")
        if total is not None and total.isdigit():
            return int(total)
        return sum(self._partition(i).num_rows for i in range(len(self.files)))

    def _batches(self, columns: list[str], batch_size: int) -> Iterator[pa.RecordBatch]:
        for i in range(len(self.files)):
            part = self._partition(i)
            if part.num_rows:
                yield from part.iter_batches(batch_size=batch_size, columns=columns)

    def info(self) -> dict[str, Any]:
        return {"path": str(self.path.resolve()), "kind": self.kind, "partitions": len(self.files),
                "rows": int(self.num_rows)}

    def parts(self) -> list[SourcePart]:
        catalog = str(self.path.resolve())
        return [SourcePart(str(f), f"Norder={o}_Npix={p}",
                           {"healpix": {"order": o, "pixel": p}, "catalog": catalog})
                for (o, p), f in zip(self.pixels, self.files)]


class LsdbSource(Source):
    """A (lazy) ``lsdb.Catalog``: a cone search, a query, a crossmatch... computed partition by
    partition in this process; the row count costs one pass (cached)."""

    kind = "lsdb"

    def __init__(self, catalog: Any, *, name: str | None = None):
        self.catalog = catalog
        label = getattr(catalog, "name", "") or ""
        self.name = name or (f"<lsdb catalog {label}>" if label else "<lsdb catalog>")
        self._delayed = list(catalog.to_delayed())
        self.pixels = [(int(px.order), int(px.pixel)) for px in catalog.get_healpix_pixels()]
        self._rows: int | None = None

    @property
    def schema_arrow(self) -> pa.Schema:
        return pa.Schema.from_pandas(self.catalog.meta, preserve_index=False)

    @property
    def num_rows(self) -> int:
        if self._rows is None:
            import dask

            self._rows = int(sum(dask.compute(*[dask.delayed(len)(d) for d in self._delayed])))
        return self._rows

    def _batches(self, columns: list[str], batch_size: int) -> Iterator[pa.RecordBatch]:
        for d in self._delayed:
            frame = d.compute()
            table = pa.Table.from_pandas(frame[columns], preserve_index=False)
            yield from table.to_batches(max_chunksize=batch_size)


def _arrow_to_astropy(col: pa.ChunkedArray | pa.Array, name: str) -> Any:
    """One arrow column as an astropy column: nulls masked (lists: empty), lists as
    variable-length arrays, fixed-size lists as vectors."""
    from astropy.table import Column, MaskedColumn

    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    t = arr.type
    n = len(arr)
    null = arr.is_null().to_numpy(zero_copy_only=False) if arr.null_count else None
    if pa.types.is_fixed_size_list(t):
        size = t.list_size
        filled = arr.fill_null(pa.scalar([0] * size, type=t)) if null is not None else arr
        flat = filled.flatten().to_numpy(zero_copy_only=False).reshape(n, size)
        if null is None:
            return Column(flat, name=name)
        return MaskedColumn(flat, name=name, mask=np.repeat(null[:, None], size, axis=1))
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        offsets = arr.offsets.to_numpy(zero_copy_only=False)
        flat = arr.values.to_numpy(zero_copy_only=False)
        rows = np.empty(n, dtype=object)
        for i in range(n):
            rows[i] = flat[offsets[i]:offsets[i + 1]] if null is None or not null[i] else flat[:0]
        return Column(rows, name=name)
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        values = np.array([v if v is not None else "" for v in arr.to_pylist()], dtype=str)
        return Column(values, name=name) if null is None else MaskedColumn(values, name=name, mask=null)
    if null is None:
        return Column(arr.to_numpy(zero_copy_only=False), name=name)
    fill = pa.scalar(False if pa.types.is_boolean(t) else 0, type=t)
    return MaskedColumn(arr.fill_null(fill).to_numpy(zero_copy_only=False), name=name, mask=null)


def write_fits(source: Any, path: PathLike, *, overwrite: bool = False) -> Path:
    """Write any source as a FITS binary table (through astropy; the whole table in memory):
    nulls become masked values (``TNULL`` integers, NaN floats), list columns variable-length
    arrays, units the columns' units. Reading it back gives the same batches."""
    _need_astropy(f"writing {path}")
    from astropy.table import Table

    src = open_source(source)
    table = pa.Table.from_batches(list(src.iter_batches(allow_empty=True)), schema=src.schema_arrow) \
        if src.num_rows else src.schema_arrow.empty_table()
    out = Table()
    for field in table.schema:
        col = _arrow_to_astropy(table.column(field.name), field.name)
        unit = (field.metadata or {}).get(b"unit")
        if unit:
            col.unit = unit.decode()
        out[field.name] = col
    path = Path(path)
    with warnings.catch_warnings():
        from astropy.units import UnitsWarning

        warnings.simplefilter("ignore", UnitsWarning)
        out.write(path, format="fits", overwrite=overwrite)
    return path


# plugin-provided sources ------------------------------------------------------------------------
@attrs.frozen
class SourceKind:
    """A kind of source a plugin registers through ``astromodal_register_sources``.

    ``open(spec)`` returns a :class:`Source`; it is asked for ``scheme://...`` strings of its
    ``schemes``, existing files whose names end with one of ``suffixes``, and any other object
    for which ``accepts(obj)`` is true.
    """

    name: str
    open: Callable[[Any], Source]
    schemes: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    suffixes: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    accepts: Callable[[Any], bool] | None = None
    description: str = ""


def registered_kinds() -> list[SourceKind]:
    """The source kinds installed plugins register (``astromodal_register_sources``)."""
    from .errors import RegistrationError
    from .registry import get_registry

    out = []
    for entry in get_registry().collect(SOURCES_HOOK):
        if not isinstance(entry.obj, SourceKind):
            raise RegistrationError(
                f"plugin {entry.plugin!r} registered {entry.obj!r} as a source; register a "
                "astromodal_core.sources.SourceKind"
            )
        out.append(entry.obj)
    return out


def _plugin_source(spec: Any, *, scheme: str | None = None, path: Path | None = None) -> Source | None:
    for kind in registered_kinds():
        hit = (scheme is not None and scheme in kind.schemes) or (
            path is not None and path.name.lower().endswith(tuple(s.lower() for s in kind.suffixes))
        ) or (scheme is None and path is None and kind.accepts is not None and kind.accepts(spec))
        if hit:
            source = kind.open(spec)
            if not isinstance(source, Source):
                raise DataError(f"source kind {kind.name!r} opened {spec!r} as a "
                                f"{type(source).__name__}, not a Source")
            return source
    return None


# resolving ---------------------------------------------------------------------------------------
def is_parquet_path(spec: Any) -> bool:
    """True for a path the parquet fast path reads: a string or path (no ``scheme://``) that is
    not a directory and does not end like a FITS file or a plugin's suffix."""
    if not isinstance(spec, (str, os.PathLike)):
        return False
    text = os.fspath(spec)
    if isinstance(text, bytes) or _SCHEME.match(text):
        return False
    lower = text.lower()
    if lower.endswith(PARQUET_SUFFIXES):
        return not Path(text).is_dir()
    if lower.endswith(FITS_SUFFIXES) or _FITS_HDU.match(text) and not Path(text).exists():
        return False
    p = Path(text)
    if p.is_dir():
        return False
    return not (p.suffix and _plugin_suffix(p))


def _plugin_suffix(path: Path) -> bool:
    """True if an installed plugin registers a source for ``path``'s name ending (asks the
    registry only for endings the core does not know)."""
    try:
        kinds = registered_kinds()
    except Exception:  # noqa: BLE001 - a broken registry must not stop parquet reads
        return False
    name = path.name.lower()
    return any(name.endswith(tuple(s.lower() for s in k.suffixes)) for k in kinds)


def _is_astropy_table(obj: Any) -> bool:
    mod = type(obj).__module__
    if not mod.startswith("astropy"):
        return False
    from astropy.table import Table

    return isinstance(obj, Table)


def _is_lsdb_catalog(obj: Any) -> bool:
    return type(obj).__module__.startswith("lsdb") and hasattr(obj, "to_delayed") \
        and hasattr(obj, "get_healpix_pixels")


def open_source(spec: Any) -> Source:
    """The :class:`Source` for ``spec`` (see the module docstring for what resolves to what).

    A missing file, an unknown ``scheme://`` or an object no source reads is a
    :class:`DataError` naming it.
    """
    if isinstance(spec, Source):
        return spec
    if isinstance(spec, (str, os.PathLike)):
        text = os.fspath(spec)
        if isinstance(text, bytes):
            text = text.decode()
        m = _SCHEME.match(text)
        if m:
            scheme = m["scheme"].lower()
            if scheme == "hats":
                return HatsSource(text)
            if scheme == "file":
                return open_source(m["rest"])
            found = _plugin_source(text, scheme=scheme)
            if found is None:
                known = ["hats", "file", *sorted({s for k in registered_kinds() for s in k.schemes})]
                raise DataError(f"{text}: unknown source scheme {scheme!r}; known: {known}")
            return found
        path = Path(text)
        lower = text.lower()
        if path.is_dir():
            if is_hats_dir(path):
                return HatsSource(path)
            return ParquetDatasetSource(path)
        if lower.endswith(FITS_SUFFIXES) or (not path.exists() and _FITS_HDU.match(text)
                                            and _fits_parts(path)[1] is not None):
            return FitsSource(path)
        if path.is_file() and not lower.endswith(PARQUET_SUFFIXES) and path.suffix:
            found = _plugin_source(text, path=path)
            if found is not None:
                return found
        return ParquetSource(path)
    if _is_astropy_table(spec):
        return TableSource(spec)
    if isinstance(spec, (pa.Table, pa.RecordBatch)) or type(spec).__module__.startswith(("pandas", "nested_pandas")):
        return ArrowSource(spec)
    if _is_lsdb_catalog(spec):
        return LsdbSource(spec)
    found = _plugin_source(spec)
    if found is not None:
        return found
    raise DataError(f"cannot read a {type(spec).__name__} as a data source; give a path, a "
                    "hats:// catalogue, an astropy Table or a pyarrow Table")


def source_label(spec: Any) -> str:
    """A short label of ``spec`` for messages: the path, or the source's name."""
    if isinstance(spec, (str, os.PathLike)):
        return os.fspath(spec) if not isinstance(os.fspath(spec), bytes) else os.fsdecode(spec)
    if isinstance(spec, Source):
        return spec.name
    return open_source(spec).name


def source_arg(spec: Any) -> Any:
    """What a tokenizer receives as ``path``: a path stays a path (the parquet fast path reads
    it), any other input becomes its :class:`Source` (whose ``str`` is a short name, so that
    messages never print a whole table)."""
    return spec if isinstance(spec, (str, os.PathLike)) else open_source(spec)


def source_list(sources: Any) -> list[Any]:
    """One source or a sequence of them as the list :meth:`Tokenizer.train` samples one by one.

    Paths must exist (``DataError`` naming the first that does not); a directory of parquet
    files or a HATS catalogue gives its files / partitions; in-memory tables become their
    :class:`Source`.
    """
    if isinstance(sources, (str, os.PathLike)) or not isinstance(sources, (list, tuple)):
        items = [sources]
    else:
        items = list(sources)
    if not items:
        raise DataError("no input files given")
    out: list[Any] = []
    for s in items:
        if isinstance(s, (str, os.PathLike)):
            text = os.fspath(s)
            if _SCHEME.match(str(text)) or Path(text).is_dir():
                src = open_source(s)
                try:
                    out.extend(p.spec for p in src.parts())
                except DataError:
                    out.append(src)
                continue
            if not Path(text).is_file() and _fits_parts(Path(text))[1] is None:
                raise DataError(f"{text}: file not found")
            out.append(s)
        else:
            out.append(source_arg(s))
    return out


def expand_sources(sources: Sequence[Any]) -> list[SourcePart]:
    """Every input of a pipeline as :class:`SourcePart` s (files, dataset files, HATS partitions).

    A missing path is a :class:`DataError` naming it; an in-memory table cannot be sent to
    workers (``DataError``).
    """
    items = list(sources)
    if not items:
        raise DataError("no input files given")
    out: list[SourcePart] = []
    for s in items:
        if isinstance(s, (str, os.PathLike)) and is_parquet_path(s):
            p = Path(s)
            if p.is_dir():
                raise DataError(f"{p}: is a directory, expected a parquet file")
            if not p.is_file():
                raise DataError(f"{p}: file not found")
            out.append(SourcePart(str(p), _stem(p)))
            continue
        out.extend(open_source(s).parts())
    return out
