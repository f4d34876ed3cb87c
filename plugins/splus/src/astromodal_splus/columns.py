"""Canonical column names of the S-PLUS / Gaia / redshift scalars and their token keys.

Every name inside the plugin is *canonical* (the seed's default column name); a catalogue that
spells a column differently is read through a ``column_map`` ``{canonical: file column}``, so
token keys never depend on the catalogue a tokenizer was trained on.

Survey catalogues' names ship as data: ``column_maps/*.yaml`` (``splus-dr4-auto``,
``splus-dr4-petro``, ``splus-dr4-pstotal``, ``gaia-dr3``), each with the values that mean "not
measured" in its columns; :func:`column_maps` lists them and :func:`resolve_column_map` reads a
reference (``"splus-dr4-auto"``, ``{"map": "splus-dr4-auto", "suffix": "_dual"}``, a list).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs

BANDS: tuple[str, ...] = (
    "u", "j0378", "j0395", "j0410", "j0430", "g",
    "j0515", "r", "j0660", "i", "j0861", "z",
)
GAIA_QUANTITIES: tuple[str, ...] = ("parallax", "pmra", "pmdec")
REDSHIFT_COLUMN = "z"
#: survey placeholders for "not measured"; by default they mean missing only in magnitude and
#: magnitude-error columns (a proper motion or redshift of exactly 99 is a real value)
DEFAULT_SENTINELS: tuple[float, ...] = (99.0, -99.0)

_UNSAFE = re.compile(r"[^a-z0-9_]")


def mag_column(band: str) -> str:
    """``mag_pstotal_<band>``."""
    return f"mag_pstotal_{normalize_band(band)}"


def err_column(band: str) -> str:
    """``err_mag_pstotal_<band>``."""
    return f"err_{mag_column(band)}"


def gaia_column(quantity: str) -> str:
    """``gaia_<quantity>`` for parallax, pmra, pmdec."""
    if quantity not in GAIA_QUANTITIES:
        raise ValueError(f"unknown Gaia quantity {quantity!r}; expected one of {GAIA_QUANTITIES}")
    return f"gaia_{quantity}"


MAG_COLUMNS: tuple[str, ...] = tuple(f"mag_pstotal_{b}" for b in BANDS)
GAIA_COLUMNS: tuple[str, ...] = tuple(f"gaia_{q}" for q in GAIA_QUANTITIES)
MAG_ERROR_COLUMNS: tuple[str, ...] = tuple(f"err_mag_pstotal_{b}" for b in BANDS)
DEFAULT_SCALAR_COLUMNS: tuple[str, ...] = (*MAG_COLUMNS, *GAIA_COLUMNS, REDSHIFT_COLUMN)


def default_sentinels(column: str, sentinels: Iterable[float] = DEFAULT_SENTINELS) -> tuple[float, ...]:
    """The sentinels that mean "missing" in a canonical column unless overridden: ``sentinels``
    for magnitude and magnitude-error columns, none for any other column."""
    if column in MAG_COLUMNS or column in MAG_ERROR_COLUMNS:
        return tuple(float(s) for s in sentinels)
    return ()


def normalize_band(band: str) -> str:
    """Lower-case band name, checked against the 12 S-PLUS bands."""
    b = str(band).lower()
    if b not in BANDS:
        raise ValueError(f"unknown S-PLUS band {band!r}; expected one of {BANDS}")
    return b


def token_key_name(column: str) -> str:
    """Canonical token key of a canonical column: ``"tok_" + column`` sanitised to [a-z0-9_]."""
    return "tok_" + _UNSAFE.sub("_", str(column).lower())


def column_kind(column: str) -> tuple[str, str | None]:
    """``("magnitude", band)``, ``("astrometry", quantity)``, ``("redshift", None)`` or
    ``("scalar", None)`` for any other column."""
    if column in MAG_COLUMNS:
        return "magnitude", column[len("mag_pstotal_"):]
    if column in GAIA_COLUMNS:
        return "astrometry", column[len("gaia_"):]
    if column == REDSHIFT_COLUMN:
        return "redshift", None
    return "scalar", None


def default_error_columns(columns: Iterable[str]) -> dict[str, str]:
    """The magnitude columns' error columns (``err_mag_pstotal_<band>``): the magerr filter."""
    return {c: f"err_{c}" for c in columns if c in MAG_COLUMNS}


def check_unique_keys(columns: Iterable[str]) -> None:
    """Raise ValueError if two columns sanitise to the same token key."""
    seen: dict[str, str] = {}
    for c in columns:
        k = token_key_name(c)
        if k in seen:
            raise ValueError(f"columns {seen[k]!r} and {c!r} both give token key {k!r}")
        seen[k] = c


def file_column(name: str, column_map: Mapping[str, str]) -> str:
    """The file's name for a canonical column."""
    return column_map.get(name, name)


# column maps: survey catalogues' names as data (column_maps/*.yaml) -----------------------------
COLUMN_MAPS_DIR = Path(__file__).with_name("column_maps")
_MAP_KEYS = {"name", "title", "sentinels", "columns", "scalar_columns"}
_REF_KEYS = {"map", "suffix", "prefix"}


@attrs.frozen
class ColumnMap:
    """A catalogue's column names for the canonical columns, and its "not measured" values.

    ``columns`` maps a canonical name to the catalogue's column; ``sentinels`` gives, per
    canonical column, the values that mean "not measured" there; ``scalar_columns`` are the
    canonical columns tokenized by default when a tokenizer reads through this map.
    """

    name: str
    columns: Mapping[str, str]
    sentinels: Mapping[str, tuple[float, ...]] = attrs.field(factory=dict)
    scalar_columns: tuple[str, ...] = ()
    title: str = ""
    source: str = ""

    def renamed(self, *, prefix: str = "", suffix: str = "") -> ColumnMap:
        """The same map for a table whose columns carry ``prefix`` / ``suffix`` (a crossmatch)."""
        label = self.name + (f"+{prefix}*" if prefix else "") + (f"*{suffix}" if suffix else "")
        return attrs.evolve(self, name=label,
                            columns={k: f"{prefix}{v}{suffix}" for k, v in self.columns.items()})


def _check_map(data: Any, where: str) -> ColumnMap:
    """A :class:`ColumnMap` from a loaded YAML document; ValueError naming ``where`` and the key."""
    if not isinstance(data, Mapping):
        raise ValueError(f"{where}: a column map must be a mapping, got {type(data).__name__}")
    unknown = sorted(set(data) - _MAP_KEYS)
    if unknown:
        raise ValueError(f"{where}: unknown key {unknown[0]!r}; a column map has {sorted(_MAP_KEYS)}")
    name = data.get("name")
    if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9][a-z0-9_.-]*", name):
        raise ValueError(f"{where}: 'name' must be a lower-case name such as splus-dr4-auto, got {name!r}")
    columns = data.get("columns")
    if not isinstance(columns, Mapping) or not columns or not all(
            isinstance(k, str) and k and isinstance(v, str) and v for k, v in columns.items()):
        raise ValueError(f"{where}: 'columns' must map canonical names to the catalogue's column names")
    raw = data.get("sentinels", [])
    if isinstance(raw, Mapping):
        per = {str(k): v for k, v in raw.items()}
        unknown = sorted(set(per) - set(columns))
        if unknown:
            raise ValueError(f"{where}: sentinels names {unknown[0]!r}, which 'columns' does not map")
    else:
        per = dict.fromkeys(columns, raw)
    sentinels: dict[str, tuple[float, ...]] = {}
    for c, values in per.items():
        if isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple)) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            raise ValueError(f"{where}: sentinels of {c!r} must be a list of numbers, got {values!r}")
        sentinels[c] = tuple(float(v) for v in values)
    scalar = data.get("scalar_columns")
    if scalar is None:
        scalar = [c for c in columns if not c.startswith("err_")]
    if not isinstance(scalar, (list, tuple)) or any(c not in columns for c in scalar):
        raise ValueError(f"{where}: 'scalar_columns' must list canonical names that 'columns' maps")
    return ColumnMap(name=name, columns=dict(columns), sentinels=sentinels, scalar_columns=tuple(scalar),
                     title=str(data.get("title", "")), source=where)


def load_column_map(path: str | Path) -> ColumnMap:
    """Read one column map file (YAML); ValueError naming the file for a bad one."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"{path}: not a readable column map ({exc})") from exc
    return _check_map(data, str(path))


_MAPS: dict[str, ColumnMap] | None = None


def column_maps() -> dict[str, ColumnMap]:
    """Every column map this plugin ships, by name (``splus-dr4-auto``, ``gaia-dr3``...)."""
    global _MAPS
    if _MAPS is None:
        maps: dict[str, ColumnMap] = {}
        for f in sorted(COLUMN_MAPS_DIR.glob("*.yaml")):
            m = load_column_map(f)
            if m.name in maps:
                raise ValueError(f"{f}: column map {m.name!r} is also defined in {maps[m.name].source}")
            maps[m.name] = m
        _MAPS = maps
    return dict(_MAPS)


def column_map(name: str) -> ColumnMap:
    """A shipped column map by name; ValueError listing the known ones."""
    maps = column_maps()
    if name not in maps:
        close = difflib.get_close_matches(name, list(maps), n=1)
        raise ValueError(f"unknown column map {name!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
                         + f"; known: {sorted(maps)}")
    return maps[name]


def is_map_reference(spec: Any) -> bool:
    """True if ``spec`` names shipped maps (a name, ``{map: name, suffix: ...}`` or a list of
    them) rather than being a plain ``{canonical: file column}`` mapping."""
    if isinstance(spec, str):
        return True
    if isinstance(spec, Mapping):
        return "map" in spec
    return isinstance(spec, (list, tuple))


def resolve_column_map(spec: Any) -> ColumnMap:
    """One :class:`ColumnMap` from a reference: a map's name, ``{map: name, suffix: _dual,
    prefix: ...}``, a plain ``{canonical: file column}`` mapping, or a list of these (merged in
    order; two maps giving one canonical column two names is an error)."""
    if isinstance(spec, str):
        return column_map(spec)
    if isinstance(spec, Mapping) and "map" in spec:
        unknown = sorted(set(spec) - _REF_KEYS)
        if unknown:
            raise ValueError(f"column_map entry {dict(spec)!r}: unknown key {unknown[0]!r}; use {sorted(_REF_KEYS)}")
        prefix, suffix = spec.get("prefix", "") or "", spec.get("suffix", "") or ""
        if not isinstance(spec["map"], str) or not isinstance(prefix, str) or not isinstance(suffix, str):
            raise ValueError(f"column_map entry {dict(spec)!r}: map, prefix and suffix must be strings")
        return column_map(spec["map"]).renamed(prefix=prefix, suffix=suffix)
    if isinstance(spec, Mapping):
        return ColumnMap(name="custom", columns=dict(spec), scalar_columns=tuple(spec))
    if isinstance(spec, (list, tuple)) and spec:
        parts = [resolve_column_map(s) for s in spec]
        columns: dict[str, str] = {}
        sentinels: dict[str, tuple[float, ...]] = {}
        scalar: list[str] = []
        for m in parts:
            for c, v in m.columns.items():
                if c in columns and columns[c] != v:
                    raise ValueError(f"column_map: {c!r} is {columns[c]!r} in one map and {v!r} in {m.name!r}")
                columns[c] = v
            for c, v in m.sentinels.items():
                sentinels[c] = tuple(dict.fromkeys((*sentinels.get(c, ()), *v)))
            scalar.extend(c for c in m.scalar_columns if c not in scalar)
        return ColumnMap(name="+".join(m.name for m in parts), columns=columns, sentinels=sentinels,
                         scalar_columns=tuple(scalar))
    raise ValueError(
        f"column_map must be a map name (one of {sorted(column_maps())}), {{map: NAME, suffix: ...}}, "
        f"a mapping of canonical names to file columns, or a list of these; got {spec!r}"
    )
