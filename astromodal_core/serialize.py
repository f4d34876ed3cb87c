"""Safe serialization: .npz (numeric arrays + JSON config) and safetensors, never pickle.

Every file records ``format_version`` and the fingerprint of the fitted state. Writes are
atomic (a temporary file in the target directory, then ``os.replace``). Any problem reading
raises :class:`CodecFormatError` naming the path.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .errors import CodecFormatError

FORMAT_VERSION = 1
META_KEY = "astromodal"  # the one safetensors metadata entry: canonical JSON of the rest
_META = ("__config__", "__format_version__", "__kind__", "__fingerprint__")


_TMP_RE = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[A-Za-z0-9_]+\.tmp")


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def clean_stale_temps(path: str | os.PathLike[str]) -> list[Path]:
    """Remove temporary files a killed write of ``path`` left beside it; return them.

    A temporary file is ``.<name>.<pid>.<random>.tmp*``; one whose writer process is still
    alive (a concurrent writer) is left alone.
    """
    path = Path(path)
    return clean_stale_temps_in(path.parent, re.compile(re.escape(path.name) + r"\Z"))


def clean_stale_temps_in(directory: str | os.PathLike[str], names: re.Pattern[str]) -> list[Path]:
    """Remove the temporary files killed writers left in ``directory`` for every target file
    name that ``names`` matches from its start (see :func:`clean_stale_temps`); return them."""
    directory = Path(directory)
    removed: list[Path] = []
    if not directory.is_dir():
        return removed
    for entry in directory.iterdir():
        m = _TMP_RE.match(entry.name)
        if m is None or not names.match(m.group("name")) or _pid_alive(int(m.group("pid"))):
            continue
        with contextlib.suppress(OSError):
            if entry.is_dir() and not entry.is_symlink():
                import shutil

                shutil.rmtree(entry)
            else:
                entry.unlink()
            removed.append(entry)
    return removed


def fsync_dir(directory: str | os.PathLike[str]) -> None:
    """Flush a directory entry (a rename) to disk where the platform allows it."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` only on success.

    The temporary file is fsync'ed before the rename and the directory after it, so a crash
    leaves the old or the new file, never a torn one. Permissions follow the umask (as a plain
    ``open`` would). Temporary files a killed earlier write left behind are removed first.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a directory, expected a file path")
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temps(path)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name}.{os.getpid()}.", suffix=f".tmp{suffix}", dir=path.parent
    )
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():
            os.chmod(tmp_path, 0o666 & ~_umask())
            _fsync_file(tmp_path)
        os.replace(tmp_path, path)
        fsync_dir(path.parent)
    except OSError as exc:
        # a full disk / file size limit fails a write with no file name (numpy, pyarrow):
        # name the file being written, not its temporary name
        if exc.errno is not None and exc.filename in (None, str(tmp_path)):
            raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc
        raise
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _canonical(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _canonical(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_canonical(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return obj


def dumps_config(config: Mapping[str, Any]) -> str:
    """Canonical JSON (sorted keys) of a configuration dict."""
    return json.dumps(_canonical(config), sort_keys=True, separators=(",", ":"))


def fingerprint(config: Mapping[str, Any], arrays: Mapping[str, np.ndarray] | None = None) -> str:
    """A sha256 (first 16 hex digits) of the configuration and the fitted arrays."""
    h = hashlib.sha256(dumps_config(config).encode())
    for name in sorted(arrays or {}):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def save_npz(
    path: str | os.PathLike[str],
    config: Mapping[str, Any],
    arrays: Mapping[str, np.ndarray] | None = None,
    *,
    kind: str,
) -> str:
    """Write a .npz readable with ``np.load(path, allow_pickle=False)``; return the fingerprint."""
    arrays = dict(arrays or {})
    for name, a in arrays.items():
        if name in _META:
            raise ValueError(f"array name {name!r} is reserved")
        a = np.asarray(a)
        if a.dtype.hasobject:
            raise TypeError(f"array {name!r} has dtype object; store strings as unicode arrays")
        arrays[name] = a
    fp = fingerprint(config, arrays)
    payload = {
        "__config__": np.array(dumps_config(config)),
        "__format_version__": np.array(FORMAT_VERSION, dtype=np.int64),
        "__kind__": np.array(kind),
        "__fingerprint__": np.array(fp),
        **arrays,
    }
    with atomic_path(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **payload)
    return fp


def _check_members(path: Path, members: Mapping[str, Any]) -> None:
    """A zip member without the .npy header reads as bytes: refuse it."""
    for name, value in members.items():
        if not isinstance(value, np.ndarray):
            raise CodecFormatError(f"{path}: member {name!r} is not a .npy array")


def load_npz(
    path: str | os.PathLike[str], *, kind: str | None = None
) -> tuple[dict[str, Any], dict[str, np.ndarray], str]:
    """Read a file written by :func:`save_npz`: ``(config, arrays, fingerprint)``."""
    path = Path(path)
    if not path.is_file():
        raise CodecFormatError(f"{path}: file not found")
    if not zipfile.is_zipfile(path):
        raise CodecFormatError(f"{path}: truncated or corrupt file (not an .npz zip archive)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            names = set(npz.files)
            missing = [m for m in _META if m not in names]
            if missing:
                raise CodecFormatError(
                    f"{path}: not an astromodal file (missing {', '.join(missing)})"
                )
            meta = {m: npz[m] for m in _META}
            _check_members(path, meta)
            raw_version = meta["__format_version__"]
            if raw_version.shape != () or not np.issubdtype(raw_version.dtype, np.integer):
                raise CodecFormatError(f"{path}: format_version is not an integer")
            version = int(raw_version)
            if version > FORMAT_VERSION:
                raise CodecFormatError(
                    f"{path}: format_version {version} is newer than this astromodal reads "
                    f"({FORMAT_VERSION}); upgrade astromodal"
                )
            file_kind = str(meta["__kind__"])
            if kind is not None and file_kind != kind:
                raise CodecFormatError(f"{path}: holds a {file_kind!r}, expected a {kind!r}")
            config = json.loads(str(meta["__config__"]))
            if not isinstance(config, dict):
                raise CodecFormatError(f"{path}: config is a JSON {type(config).__name__}, not an object")
            fp = str(meta["__fingerprint__"])
            arrays = {n: npz[n] for n in npz.files if n not in _META}
            _check_members(path, arrays)
        altered = fingerprint(config, arrays) != fp
    except CodecFormatError:
        raise
    except ValueError as exc:
        if "pickle" in str(exc):
            raise CodecFormatError(f"{path}: holds pickled objects, which are never loaded") from exc
        raise CodecFormatError(f"{path}: unreadable .npz ({exc})") from exc
    except Exception as exc:  # zipfile, zlib, numpy and json raise many types for damaged input
        raise CodecFormatError(f"{path}: truncated or corrupt file ({type(exc).__name__}: {exc})") from exc
    if altered:
        raise CodecFormatError(f"{path}: fingerprint mismatch, the file was altered or damaged")
    return config, arrays, fp


def save_safetensors(
    path: str | os.PathLike[str],
    tensors: Mapping[str, np.ndarray],
    metadata: Mapping[str, Any] | None = None,
) -> str:
    """Write numpy arrays to safetensors atomically; return the fingerprint of the arrays."""
    from safetensors.numpy import save

    arrays = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
    fp = fingerprint({}, arrays)
    meta = {k: v if isinstance(v, str) else dumps_config(v) if isinstance(v, Mapping) else json.dumps(_canonical(v))
            for k, v in (metadata or {}).items()}
    meta["format_version"] = str(FORMAT_VERSION)
    meta["fingerprint"] = fp
    # one metadata entry holding canonical JSON: safetensors writes its metadata map in hash
    # order, so several entries would make the bytes differ between two saves of one state
    header = {META_KEY: json.dumps(meta, sort_keys=True, separators=(",", ":"))}
    with atomic_path(path, suffix=".safetensors") as tmp:
        # serialise in memory and write ourselves: safetensors' own save_file writes through a
        # temporary file of its own, which a kill would leave behind under a name we don't know
        with open(tmp, "wb") as fh:
            fh.write(save(arrays, metadata=header))
    return fp


def load_safetensors(
    path: str | os.PathLike[str], *, expected_fingerprint: str | None = None
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Read a safetensors file: ``(arrays, metadata)``; verify version and fingerprint."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CodecFormatError(f"{path}: companion file not found")
    try:
        with safe_open(str(path), framework="numpy") as fh:
            meta = dict(fh.metadata() or {})
            arrays = {k: fh.get_tensor(k) for k in fh.keys()}
    except Exception as exc:  # safetensors raises its own SafetensorError
        raise CodecFormatError(f"{path}: truncated or corrupt safetensors file ({exc})") from exc
    if META_KEY in meta:
        try:
            packed = json.loads(meta[META_KEY])
        except (ValueError, RecursionError) as exc:  # ValueError: also an over-long integer
            raise CodecFormatError(f"{path}: metadata {META_KEY!r} is not JSON ({exc})") from exc
        if not isinstance(packed, dict) or not all(isinstance(v, str) for v in packed.values()):
            raise CodecFormatError(f"{path}: metadata {META_KEY!r} is not a mapping of strings")
        meta = packed
    try:
        version = int(meta.get("format_version", "0"))
    except ValueError:
        raise CodecFormatError(
            f"{path}: format_version {meta.get('format_version')!r} is not an integer"
        ) from None
    if version > FORMAT_VERSION:
        raise CodecFormatError(
            f"{path}: format_version {version} is newer than this astromodal reads "
            f"({FORMAT_VERSION}); upgrade astromodal"
        )
    fp = fingerprint({}, arrays)
    if "fingerprint" in meta and meta["fingerprint"] != fp:
        raise CodecFormatError(f"{path}: fingerprint mismatch, the file was altered or damaged")
    if expected_fingerprint is not None and fp != expected_fingerprint:
        raise CodecFormatError(
            f"{path}: holds state {fp}, but its config expects {expected_fingerprint}; "
            "the companion file belongs to another save"
        )
    return arrays, meta
