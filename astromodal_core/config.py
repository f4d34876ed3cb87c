"""YAML configuration with attribute access, in the shape of the seed's config.yaml."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError

# Known keys and their types; unknown keys are kept as they are.
SCHEMA: dict[str, tuple[type, ...]] = {
    "tokenizers": (dict,),
    "tokenizers.scalar": (dict,),
    "tokenizers.scalar.n_bins": (int,),
    "tokenizers.scalar.max_values_per_col": (int,),
    "tokenizers.scalar.max_values_per_file_per_col": (int,),
    "tokenizers.scalar.scalar_columns": (list,),
    "tokenizers.scalar.rng_seed": (int,),
    "tokenizers.spectrum": (dict,),
    "tokenizers.spectrum.codebook_size": (int,),
    "tokenizers.spectrum.max_features_per_group": (int,),
    "tokenizers.spectrum.max_rows_per_file": (int,),
    "tokenizers.spectrum.max_points_per_row": (int,),
    "tokenizers.spectrum.groups": (list,),
    "tokenizers.image": (dict,),
    "tokenizers.image.cutout_size": (int,),
    "tokenizers.image.latent_dim": (int,),
    "tokenizers.image.codebook_size": (int,),
    "tokenizers.image.bands": (list,),
    "data": (dict,),
    "data.mag_filter": (dict,),
    "data.mag_filter.min": (int, float),
    "data.mag_filter.max": (int, float),
    "model": (dict,),
}


class Config(Mapping[str, Any]):
    """A read-only mapping whose keys are also attributes: ``config.tokenizers.scalar.n_bins``."""

    def __init__(self, data: Mapping[str, Any], path: str = ""):
        self._data = dict(data)
        self._path = path

    def __getitem__(self, key: str) -> Any:
        return _wrap(self._data[key], f"{self._path}.{key}" if self._path else key)

    def __getattr__(self, key: str) -> Any:
        if key.startswith("_"):
            raise AttributeError(key)
        try:
            return self[key]
        except KeyError:
            where = f"{self._path}.{key}" if self._path else key
            raise AttributeError(f"config has no key {where!r}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"Config({self._data!r})"

    def get(self, key: str, default: Any = None) -> Any:
        return self[key] if key in self._data else default

    def to_dict(self) -> dict[str, Any]:
        """A plain-dict deep copy."""
        return _unwrap(self._data)


def _wrap(value: Any, path: str) -> Any:
    if isinstance(value, Mapping):
        return Config(value, path)
    if isinstance(value, list):
        return [_wrap(v, f"{path}[{i}]") for i, v in enumerate(value)]
    return value


def _unwrap(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unwrap(v) for v in value]
    return value


def _validate(value: Any, path: str, source: str) -> None:
    expected = SCHEMA.get(path)
    if expected is not None:
        ok = isinstance(value, expected) and not (isinstance(value, bool) and bool not in expected)
        if not ok:
            names = " or ".join(t.__name__ for t in expected)
            raise ConfigError(
                f"{source}: key {path!r} should be {names}, got {type(value).__name__} {value!r}"
            )
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, str):
                raise ConfigError(f"{source}: key {k!r} under {path or 'the top level'!r} is not a string")
            _validate(v, f"{path}.{k}" if path else k, source)


def config_from_dict(data: Mapping[str, Any], source: str = "<dict>") -> Config:
    """Validate a dict against the known keys and wrap it."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: the top level must be a mapping, got {type(data).__name__}")
    _validate(data, "", source)
    return Config(data)


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read a YAML config file; wrong types are reported with their key path."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path}: is a directory, not a config file")
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
            "save the config as UTF-8"
        ) from exc
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        detail = " ".join(str(exc).split())
        raise ConfigError(f"{path}: invalid YAML ({detail})") from exc
    return config_from_dict(data, str(path))
