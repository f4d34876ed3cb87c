"""A fitted tokenizer set: a directory of trained tokenizers and its manifest.

``tokenizers.json`` lists each member by its **registered name** (``scalar``, ``spectrum``...),
the file holding its state and its fingerprint. A name is resolved through the registry of
installed plugins; nothing in a manifest is ever imported or called, so a planted manifest can
name only a tokenizer the user already installed.

Member files are named after their content (``<name>.<fingerprint>.npz`` plus companions), and
the manifest is the commit point: a new set is written beside the old files, then the manifest
is replaced in one rename, then files no member references are removed. A kill at any moment
leaves the old or the new set loadable; a retrain that fails in a later member leaves the old
set untouched.

A token store records the set's fingerprints; a model records them too and refuses tokens
made by another fitted state.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs

from .errors import CodecFormatError, ConfigError, TokenKeyError
from .modality import TokenKey

PathLike = str | os.PathLike[str]
MANIFEST = "tokenizers.json"
MANIFEST_VERSION = 2
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
_FP = re.compile(r"^[0-9a-f]{16}$")
_MEMBER_FILE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*\.[0-9a-f]{16}\.(npz|[a-z][a-z0-9_]*\.[0-9a-f]{16}\.safetensors)$")


def member_file(name: str, fingerprint: str) -> str:
    """The file name of a member's state inside a set directory."""
    return f"{name}.{fingerprint}.npz"


@attrs.frozen
class Member:
    """One trained tokenizer of a set: registered name, file, fingerprint and token keys."""

    name: str
    file: str
    fingerprint: str
    token_keys: tuple[TokenKey, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "file": self.file, "fingerprint": self.fingerprint,
                "token_keys": [k.as_dict() for k in self.token_keys]}

    @classmethod
    def from_dict(cls, d: Any, where: str) -> Member:
        """Validate one manifest entry (``where`` names the manifest in errors)."""
        if not isinstance(d, Mapping):
            raise CodecFormatError(f"{where}: a tokenizers entry is {type(d).__name__}, not a mapping")
        name = d.get("name", d.get("section"))  # format 1 called it "section"
        if not isinstance(name, str) or not _NAME.match(name):
            raise CodecFormatError(f"{where}: tokenizer name {name!r} is not a registered-name string")
        file = d.get("file", d.get("path"))
        if not isinstance(file, str) or file != Path(file).name or file in ("", ".", ".."):
            raise CodecFormatError(f"{where}: tokenizer {name!r} names file {file!r}, not a plain file name")
        fp = d.get("fingerprint")
        if not isinstance(fp, str) or not _FP.match(fp):
            raise CodecFormatError(f"{where}: tokenizer {name!r} has a malformed fingerprint {fp!r}")
        try:
            keys = tuple(TokenKey.from_dict(dict(k)) for k in d.get("token_keys", []))
        except (TypeError, ValueError, OverflowError) as exc:  # OverflowError: an infinite size
            raise CodecFormatError(f"{where}: tokenizer {name!r} has a bad token key ({exc})") from exc
        return cls(name, file, fp, keys)


class TokenizerSet:
    """A directory of fitted tokenizers, read through its manifest."""

    def __init__(self, directory: PathLike, members: Iterable[Member]):
        self.directory = Path(directory)
        self.members: dict[str, Member] = {}
        for m in members:
            if m.name in self.members:
                raise CodecFormatError(f"{self.directory / MANIFEST}: tokenizer {m.name!r} listed twice")
            self.members[m.name] = m
        self._loaded: dict[str, Any] = {}
        owners: dict[str, str] = {}
        for m in self.members.values():
            for k in m.token_keys:
                if k.name in owners:
                    raise CodecFormatError(
                        f"{self.directory / MANIFEST}: token key {k.name!r} written by both "
                        f"{owners[k.name]!r} and {m.name!r}")
                owners[k.name] = m.name

    # -- reading -----------------------------------------------------------------------------
    @classmethod
    def read(cls, directory: PathLike) -> TokenizerSet:
        """Read ``directory/tokenizers.json``; every error names the manifest."""
        directory = Path(directory)
        path = directory / MANIFEST
        if directory.is_file():
            raise ConfigError(f"{directory}: is a file; expected a tokenizer directory holding {MANIFEST}")
        if not path.is_file():
            raise ConfigError(
                f"{path}: no tokenizer manifest; run `astromodal tokenizers train --out {directory}` first")
        try:
            data = json.loads(path.read_bytes().decode("utf-8"))
        except (ValueError, RecursionError) as exc:  # bad UTF-8 / JSON, an over-long integer
            raise CodecFormatError(f"{path}: not a JSON tokenizer manifest ({exc})") from exc
        except OSError as exc:
            raise CodecFormatError(f"{path}: cannot read ({exc.strerror or exc})") from exc
        if not isinstance(data, Mapping) or not isinstance(data.get("tokenizers"), list):
            raise CodecFormatError(f"{path}: not a tokenizer manifest (no 'tokenizers' list)")
        version = data.get("format_version", 1)
        if not isinstance(version, int) or isinstance(version, bool):
            raise CodecFormatError(f"{path}: format_version {version!r} is not an integer")
        if version > MANIFEST_VERSION:
            raise CodecFormatError(
                f"{path}: format_version {version} is newer than this astromodal reads "
                f"({MANIFEST_VERSION}); upgrade astromodal")
        return cls(directory, [Member.from_dict(d, str(path)) for d in data["tokenizers"]])

    def __iter__(self) -> Any:
        return iter(self.members.values())

    def __len__(self) -> int:
        return len(self.members)

    def __contains__(self, name: object) -> bool:
        return name in self.members

    def names(self) -> list[str]:
        return list(self.members)

    def member(self, name: str) -> Member:
        if name not in self.members:
            raise ConfigError(f"{self.directory / MANIFEST}: no trained tokenizer {name!r}; "
                              f"the set holds {sorted(self.members)}")
        return self.members[name]

    def subset(self, names: Iterable[str]) -> TokenizerSet:
        """The members named (each must be in the set), sharing this set's loaded tokenizers."""
        out = TokenizerSet(self.directory, [self.member(n) for n in names])
        out._loaded = self._loaded
        return out

    def tokenizer_class(self, name: str) -> type:
        """The installed class registered as ``name`` (never an import path from the file)."""
        from .registry import get_registry

        reg = get_registry()
        if name not in reg.tokenizers:
            raise ConfigError(
                f"{self.directory / MANIFEST}: names tokenizer {name!r}, which no installed plugin "
                f"registers (installed: {sorted(reg.tokenizers)})")
        return reg.tokenizers[name].obj

    def load(self, name: str) -> Any:
        """The fitted tokenizer ``name``, loaded once and checked against its fingerprint."""
        if name not in self._loaded:
            m = self.member(name)
            tok = self.tokenizer_class(name).load(self.directory / m.file)
            if tok.fingerprint != m.fingerprint:
                raise CodecFormatError(
                    f"{self.directory / m.file}: holds state {tok.fingerprint}, the manifest "
                    f"expects {m.fingerprint}")
            if tuple(tok.token_keys) != tuple(m.token_keys):
                raise CodecFormatError(
                    f"{self.directory / MANIFEST}: the token keys listed for {name!r} differ from "
                    f"those of its fitted state ({self.directory / m.file}); the manifest was edited")
            self._loaded[name] = tok
        return self._loaded[name]

    def tokenizers(self) -> dict[str, Any]:
        """Every member loaded: ``{name: tokenizer}``."""
        return {n: self.load(n) for n in self.members}

    def token_keys(self) -> dict[str, TokenKey]:
        """The fitted token keys of every member (real vocabularies), in member order."""
        return {k.name: k for m in self.members.values() for k in m.token_keys}

    def owner(self, key: str) -> str:
        """The member that writes token key ``key``."""
        for m in self.members.values():
            if any(k.name == key for k in m.token_keys):
                return m.name
        raise TokenKeyError(f"{self.directory / MANIFEST}: no tokenizer writes token key {key!r}; "
                            f"keys: {sorted(self.token_keys())}")

    def fingerprints(self) -> dict[str, str]:
        """``{member name: fingerprint}``."""
        return {m.name: m.fingerprint for m in self.members.values()}

    def key_fingerprints(self) -> dict[str, str]:
        """``{token key: fingerprint of the tokenizer that writes it}``, as stores record."""
        return {k.name: m.fingerprint for m in self.members.values() for k in m.token_keys}

    # -- writing -----------------------------------------------------------------------------
    @staticmethod
    def save_member(directory: PathLike, tokenizer: Any, name: str | None = None) -> Member:
        """Save one fitted tokenizer into ``directory`` under its content name (not committed:
        :meth:`commit` makes it part of the set)."""
        name = name or tokenizer.name
        if not isinstance(name, str) or not _NAME.match(name):
            raise ConfigError(f"tokenizer name {name!r} must match [A-Za-z][A-Za-z0-9_-]*")
        fp = tokenizer.fingerprint
        file = member_file(name, fp)
        tokenizer.save(Path(directory) / file)
        return Member(name, file, fp, tuple(tokenizer.token_keys))

    @classmethod
    def commit(cls, directory: PathLike, members: Iterable[Member]) -> TokenizerSet:
        """Replace the manifest (the commit point), then remove files no member references.

        The caller holds :func:`set_lock`, so no concurrent write of the set is under way.
        """
        from .serialize import atomic_path

        directory = Path(directory)
        new = cls(directory, members)
        path = directory / MANIFEST
        data = {"format_version": MANIFEST_VERSION, "tokenizers": [m.as_dict() for m in new]}
        with atomic_path(path, suffix=".json") as tmp:
            tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        new._collect_garbage()
        return new

    @classmethod
    def write(cls, directory: PathLike, tokenizers: Mapping[str, Any], *,
              keep_existing: bool = False) -> TokenizerSet:
        """Save ``{name: fitted tokenizer}`` as the set in ``directory``, atomically.

        ``keep_existing`` keeps members of the current set that ``tokenizers`` does not name.
        Concurrent writers to one directory are serialised; the last one wins whole.
        """
        directory = Path(directory)
        if directory.exists() and not directory.is_dir():
            raise ConfigError(f"{directory}: exists and is not a directory")
        directory.mkdir(parents=True, exist_ok=True)
        with set_lock(directory):
            members = {n: cls.save_member(directory, t, n) for n, t in tokenizers.items()}
            if keep_existing and (directory / MANIFEST).is_file():
                old = cls.read(directory)
                members = {**{n: m for n, m in old.members.items() if n not in members}, **members}
            return cls.commit(directory, members.values())

    def _collect_garbage(self) -> list[Path]:
        """Remove member files (and their companions) the manifest does not reference, and
        the temporary files killed writers left for any member file."""
        from .serialize import clean_stale_temps_in

        keep_stems = {m.file[: -len(".npz")] if m.file.endswith(".npz") else m.file for m in self}
        removed = clean_stale_temps_in(self.directory, _MEMBER_FILE)
        for entry in self.directory.iterdir():
            if not _MEMBER_FILE.match(entry.name):
                continue
            if entry.name in {m.file for m in self} or any(entry.name.startswith(s + ".") for s in keep_stems):
                continue
            try:
                entry.unlink()
                removed.append(entry)
            except OSError:
                pass
        return removed


def set_lock(directory: PathLike) -> Any:
    """The lock every writer of the set in ``directory`` holds while it writes."""
    from .tokenizer import directory_lock

    return directory_lock(directory)
