"""The plugin manager and the registry of modalities, codecs, token keys and tokenizers.

Plugins are loaded lazily, once, from the entry-point group ``astromodal``. Set
``ASTROMODAL_PLUGINS=a,b`` to load only those distributions (or entry-point names);
``ASTROMODAL_PLUGINS=`` (empty) loads none. Tests register plugin objects in-process with
:func:`register_plugin` / :func:`unregister`.
"""

from __future__ import annotations

import importlib.metadata
import os
import sys
import warnings
from collections.abc import Callable, Iterable
from typing import Any

import attrs
import pluggy

from . import hookspecs
from .codec import Codec
from .errors import (
    DuplicateRegistrationError,
    ModalityTypeError,
    PluginLoadError,
    RegistrationError,
    TokenKeyError,
)
from .modality import Modality, TokenKey

ENTRY_POINT_GROUP = "astromodal"
ENV_VAR = "ASTROMODAL_PLUGINS"
TRACE_VAR = "ASTROMODAL_TRACE_PLUGINS"

_pm: pluggy.PluginManager | None = None
_broken: dict[str, PluginLoadError] = {}
_versions: dict[str, str] = {}
_registry: Registry | None = None


@attrs.frozen
class Registered:
    """One registered thing and the plugin that registered it."""

    name: str
    obj: Any
    plugin: str


def _selected() -> set[str] | None:
    raw = os.environ.get(ENV_VAR)
    if raw is None:
        return None
    return {p.strip() for p in raw.split(",") if p.strip()}


def _load_entry_points(pm: pluggy.PluginManager) -> None:
    selected = _selected()
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist.name if ep.dist is not None else ep.name
        if selected is not None and dist not in selected and ep.name not in selected:
            continue
        if pm.has_plugin(dist) or dist in _broken:
            continue
        _versions[dist] = ep.dist.version if ep.dist is not None else ""
        try:
            module = ep.load()
            pm.register(module, name=dist)
        except Exception as exc:  # a broken plugin must not take the others down
            err = PluginLoadError(dist, exc)
            _broken[dist] = err
            warnings.warn(str(err), RuntimeWarning, stacklevel=2)
            continue
        _check_pending(pm, dist)


def _check_pending(pm: pluggy.PluginManager, name: str) -> None:
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        pm.unregister(name=name)
        _broken.pop(name, None)
        raise PluginLoadError(name, f"implements an unknown hook ({exc})") from exc


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, entry points loaded on first use."""
    global _pm
    if _pm is None:
        pm = pluggy.PluginManager("astromodal")
        pm.add_hookspecs(hookspecs)
        if os.environ.get(TRACE_VAR):
            _trace(pm)
        _pm = pm
        try:
            _load_entry_points(pm)
        except Exception:
            _pm = None
            raise
    return _pm


def _trace(pm: pluggy.PluginManager) -> None:
    """Print every hook call to stderr (``ASTROMODAL_TRACE_PLUGINS=1``)."""

    def before(hook_name: str, impls: list[Any], kwargs: dict[str, Any]) -> None:
        print(f"astromodal: {hook_name} -> {[i.plugin_name for i in impls]}", file=sys.stderr)

    def after(outcome: Any, hook_name: str, impls: list[Any], kwargs: dict[str, Any]) -> None:
        pass

    pm.add_hookcall_monitoring(before, after)


def register_plugin(plugin: object, name: str) -> None:
    """Register a plugin object in-process (tests, notebooks); resets the registry."""
    global _registry
    pm = get_plugin_manager()
    pm.register(plugin, name=name)
    _versions.setdefault(name, "")
    _registry = None
    _check_pending(pm, name)


def unregister(name: str) -> None:
    """Remove a plugin registered by :func:`register_plugin`; resets the registry."""
    global _registry
    pm = get_plugin_manager()
    if pm.has_plugin(name):
        pm.unregister(name=name)
    _versions.pop(name, None)
    _registry = None


def reset() -> None:
    """Forget every loaded plugin; the next lookup reloads entry points (tests)."""
    global _pm, _registry
    _pm, _registry = None, None
    _broken.clear()
    _versions.clear()


def get_registry() -> Registry:
    """The process-wide registry, built on first use."""
    global _registry
    if _registry is None:
        _registry = Registry.build(get_plugin_manager())
    return _registry


class Registry:
    """What the loaded plugins registered, with lookups that fail by name."""

    def __init__(self) -> None:
        self.modalities: dict[str, Registered] = {}
        self.codecs: list[Registered] = []
        self.token_key_entries: dict[str, Registered] = {}
        self.tokenizers: dict[str, Registered] = {}
        self.demo_columns: list[Registered] = []
        self.broken: dict[str, PluginLoadError] = {}
        self.plugins: dict[str, dict[str, Any]] = {}

    @classmethod
    def build(cls, pm: pluggy.PluginManager) -> Registry:
        self = cls()
        self.broken = dict(_broken)
        staged: dict[str, dict[str, list[Any]]] = {}
        hooks = {
            "modalities": pm.hook.astromodal_register_modalities,
            "codecs": pm.hook.astromodal_register_codecs,
            "token_keys": pm.hook.astromodal_register_token_keys,
            "tokenizers": pm.hook.astromodal_register_tokenizers,
            "demo_columns": pm.hook.astromodal_register_demo_columns,
        }
        failed: set[str] = set()
        for kind, hook in hooks.items():
            for impl in hook.get_hookimpls():  # registration order
                plugin = impl.plugin_name
                if plugin in failed:
                    continue
                bucket = staged.setdefault(plugin, {}).setdefault(kind, [])
                if os.environ.get(TRACE_VAR):
                    print(f"astromodal: {hook.name} -> [{plugin!r}]", file=sys.stderr)
                try:
                    kwargs = {"register": _collector(kind, plugin, bucket)}
                    impl.function(**{k: v for k, v in kwargs.items() if k in impl.argnames})
                except Exception as exc:
                    failed.add(plugin)
                    err = exc if isinstance(exc, PluginLoadError) else PluginLoadError(plugin, exc)
                    self.broken[plugin] = err
                    warnings.warn(str(err), RuntimeWarning, stacklevel=2)
        for plugin in [p for p in staged if p not in failed]:
            for kind in hooks:
                for item in staged[plugin].get(kind, []):
                    self._add(kind, item, plugin)
        for entry in self.codecs:
            for m in entry.obj.modalities:
                if m.name not in self.modalities or self.modalities[m.name].obj is not m:
                    raise RegistrationError(
                        f"codec {entry.name!r} (plugin {entry.plugin!r}) handles modality "
                        f"{m.__name__!r}, which no plugin registered"
                    )
        for name, p in pm.list_name_plugin():
            self.plugins[name] = {
                "name": name,
                "version": _versions.get(name, ""),
                "hooks": sorted(h.name for h in pm.get_hookcallers(p) or []),
                "status": "broken" if name in self.broken else "ok",
            }
        for name, err in self.broken.items():
            self.plugins.setdefault(
                name, {"name": name, "version": _versions.get(name, ""), "hooks": []}
            )
            self.plugins[name]["status"] = "broken"
            self.plugins[name]["error"] = err.detail if isinstance(err, PluginLoadError) else str(err)
        return self

    def _add(self, kind: str, item: Any, plugin: str) -> None:
        if kind == "modalities":
            self._unique(self.modalities, item.name, item, plugin, "modality")
        elif kind == "codecs":
            self.codecs.append(Registered(item.__name__, item, plugin))
        elif kind == "token_keys":
            self._unique(self.token_key_entries, item.name, item, plugin, "token key")
        elif kind == "tokenizers":
            name, tok = item
            self._unique(self.tokenizers, name, tok, plugin, "tokenizer")
        else:
            self.demo_columns.append(Registered(getattr(item, "name", repr(item)), item, plugin))

    @staticmethod
    def _unique(table: dict[str, Registered], name: str, obj: Any, plugin: str, what: str) -> None:
        if name in table:
            other = table[name].plugin
            raise DuplicateRegistrationError(
                f"duplicate {what} {name!r}: registered by both {other!r} and {plugin!r}"
            )
        table[name] = Registered(name, obj, plugin)

    # lookups ------------------------------------------------------------------------------
    def modality(self, name_or_cls: str | type) -> type[Modality]:
        """A modality class by registry name or class."""
        name = name_or_cls if isinstance(name_or_cls, str) else getattr(name_or_cls, "name", "")
        if name not in self.modalities:
            raise ModalityTypeError(
                f"unknown modality {name!r}; registered: {sorted(self.modalities)}"
            )
        return self.modalities[name].obj

    def codec_for(self, modality: Modality | type[Modality]) -> type[Codec]:
        """The codec class for a modality, walking its class hierarchy."""
        cls = modality if isinstance(modality, type) else type(modality)
        for base in cls.__mro__:
            for entry in self.codecs:
                if base in entry.obj.modalities:
                    return entry.obj
        raise ModalityTypeError(
            f"no codec registered for modality {cls.__name__!r}; "
            f"codecs: {[e.name for e in self.codecs]}"
        )

    def token_key(self, name: str) -> TokenKey:
        """A token key by name."""
        if name not in self.token_key_entries:
            raise TokenKeyError(
                f"unknown token key {name!r}; registered: {sorted(self.token_key_entries)}"
            )
        return self.token_key_entries[name].obj

    def token_keys(self) -> dict[str, TokenKey]:
        """Every registered token key by name, in registration order."""
        return {k: e.obj for k, e in self.token_key_entries.items()}

    def tokenizer(self, name: str) -> type:
        """A tokenizer class by config section name (``scalar``) or class name."""
        if name in self.tokenizers:
            return self.tokenizers[name].obj
        for entry in self.tokenizers.values():
            if entry.obj.__name__ == name:
                return entry.obj
        raise KeyError(f"unknown tokenizer {name!r}; registered: {sorted(self.tokenizers)}")

    def owner(self, name: str) -> str:
        """The plugin that registered a token key, modality or tokenizer."""
        for table in (self.token_key_entries, self.modalities, self.tokenizers):
            if name in table:
                return table[name].plugin
        raise KeyError(name)


def _collector(kind: str, plugin: str, bucket: list[Any]) -> Callable[..., None]:
    def register_modality(cls: Any) -> None:
        if not (isinstance(cls, type) and issubclass(cls, Modality)):
            raise RegistrationError(f"plugin {plugin!r} registered {cls!r}, not a Modality subclass")
        bucket.append(cls)

    def register_codec(cls: Any) -> None:
        if not (isinstance(cls, type) and issubclass(cls, Codec)):
            raise RegistrationError(f"plugin {plugin!r} registered {cls!r}, not a Codec subclass")
        if not cls.modalities:
            raise RegistrationError(f"codec {cls.__name__!r} (plugin {plugin!r}) names no modalities")
        bucket.append(cls)

    def register_token_key(key: Any) -> None:
        if not isinstance(key, TokenKey):
            raise RegistrationError(f"plugin {plugin!r} registered {key!r}, not a TokenKey")
        bucket.append(key)

    def register_tokenizer(name: str, cls: Any) -> None:
        if not isinstance(cls, type):
            raise RegistrationError(f"plugin {plugin!r} registered tokenizer {name!r} as {cls!r}, not a class")
        bucket.append((name, cls))

    def register_demo(item: Any) -> None:
        bucket.append(item)

    return {
        "modalities": register_modality,
        "codecs": register_codec,
        "token_keys": register_token_key,
        "tokenizers": register_tokenizer,
        "demo_columns": register_demo,
    }[kind]


def iter_command_hooks(cli: Any) -> Iterable[Any]:
    """Let every plugin add its subcommands to the click group."""
    return get_plugin_manager().hook.astromodal_register_commands(cli=cli)
