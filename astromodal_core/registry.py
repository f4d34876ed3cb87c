"""The plugin manager and the registry of modalities, codecs, token keys and tokenizers.

Plugins are loaded lazily, once: first the built-in plugins (:data:`BUILTIN_PLUGINS`, the core's
own commands), then the entry-point group ``astromodal``. Set ``ASTROMODAL_PLUGINS=a,b`` to load
only those distributions (or entry-point names); ``ASTROMODAL_PLUGINS=`` (empty) loads none but
the built-in ones. A name there that matches nothing installed is a warning, or an error with
``ASTROMODAL_STRICT=1`` (the CLI's ``--strict``). Tests register plugin objects in-process with
:func:`register_plugin` / :func:`unregister`.

A plugin is isolated: one that fails to import (``sys.exit`` and other ``BaseException`` s
included), implements a hook nobody specified (a misspelt name), or raises in any hook is marked
broken, unregistered and reported by :func:`get_registry` (``astromodal plugins``); the others
load. A plugin may add its own hookspecs through ``astromodal_add_hookspecs``; the plugins
that do are registered before the others, so every implementation is checked against them.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import os
import re
import sys
import types
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs
import pluggy

from . import __version__, hookspecs
from .codec import Codec
from .errors import (
    DuplicateRegistrationError,
    ModalityTypeError,
    PluginLoadError,
    RegistrationError,
    RegistryError,
    TokenKeyError,
)
from .modality import Modality, TokenKey

ENTRY_POINT_GROUP = "astromodal"
ENV_VAR = "ASTROMODAL_PLUGINS"
TRACE_VAR = "ASTROMODAL_TRACE_PLUGINS"
STRICT_VAR = "ASTROMODAL_STRICT"
#: Plugins shipped inside the core, always loaded first: ``{plugin name: module}``.
BUILTIN_PLUGINS: dict[str, str] = {"astromodal-core": "astromodal_core.builtin"}
ADD_HOOKSPECS = "astromodal_add_hookspecs"
COMMANDS_HOOK = "astromodal_register_commands"

_pm: pluggy.PluginManager | None = None
_broken: dict[str, PluginLoadError] = {}
_versions: dict[str, str] = {}
_inprocess: dict[str, str] = {}  # plugin name -> module name, for local worker processes
_unmatched: list[str] = []
_added_hooks: dict[str, str] = {}  # hook name -> the plugin that added its spec
_generation = 0
_strict: bool | None = None
_registry: Registry | None = None


@attrs.frozen
class Registered:
    """One registered thing and the plugin that registered it."""

    name: str
    obj: Any
    plugin: str


# loading ---------------------------------------------------------------------------------------
def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _selected() -> set[str] | None:
    raw = os.environ.get(ENV_VAR)
    if raw is None:
        return None
    return {p.strip() for p in raw.split(",") if p.strip()}


def set_strict(strict: bool | None) -> None:
    """Make an unmatched ``ASTROMODAL_PLUGINS`` name an error (``True``), a warning
    (``False``), or follow ``ASTROMODAL_STRICT`` (``None``, the default)."""
    global _strict
    _strict = strict


def is_strict() -> bool:
    """Whether an unmatched ``ASTROMODAL_PLUGINS`` name is an error."""
    if _strict is not None:
        return _strict
    return os.environ.get(STRICT_VAR, "").strip().lower() not in ("", "0", "false", "no")


def generation() -> int:
    """A counter bumped whenever the set of loaded plugins changes (the CLI reloads commands)."""
    return _generation


def _bump() -> None:
    global _generation, _registry
    _generation += 1
    _registry = None


def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def _describe(exc: BaseException, hook: str | None) -> str:
    if isinstance(exc, SystemExit):
        what = f"called sys.exit({exc.code!r})"
    else:
        what = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return _one_line(f"{hook} raised {what}" if hook else what)


def _mark_broken(pm: pluggy.PluginManager, name: str, exc: BaseException | str, hook: str | None = None) -> PluginLoadError:
    """Record a plugin as broken, unregister it and warn; the others go on."""
    if isinstance(exc, PluginLoadError):
        err = exc
    else:
        err = PluginLoadError(name, exc if isinstance(exc, str) else _describe(exc, hook))
        if isinstance(exc, BaseException):
            err.__cause__ = exc
    _broken[name] = err
    if pm.has_plugin(name):
        pm.unregister(name=name)
    _bump()
    warnings.warn(str(err), RuntimeWarning, stacklevel=3)
    return err


def _call(impl: Any, kwargs: Mapping[str, Any]) -> Any:
    """Call one hook implementation with the arguments it declares."""
    return impl.function(**{k: v for k, v in kwargs.items() if k in impl.argnames})


def _impl_of(pm: pluggy.PluginManager, hook: str, plugin: object) -> Any:
    caller = getattr(pm.hook, hook, None)
    if caller is None:
        return None
    return next((i for i in caller.get_hookimpls() if i.plugin is plugin), None)


def _specified(pm: pluggy.PluginManager) -> set[str]:
    return {n for n, c in vars(pm.hook).items() if not n.startswith("_") and c.has_spec()}


def _add_hookspecs(pm: pluggy.PluginManager, name: str, plugin: object) -> None:
    """Run a plugin's ``astromodal_add_hookspecs``, if it has one; raises what it raises."""
    impl = _impl_of(pm, ADD_HOOKSPECS, plugin)
    if impl is None:
        return
    before = _specified(pm)
    _call(impl, {"pluginmanager": pm})
    for hook in _specified(pm) - before:
        _added_hooks[hook] = name


def _unknown_hooks(pm: pluggy.PluginManager) -> dict[str, list[str]]:
    """``{plugin: [hook, ...]}`` of implementations no spec covers (optional ones excepted)."""
    out: dict[str, list[str]] = {}
    for hook_name, caller in vars(pm.hook).items():
        if hook_name.startswith("_") or caller.has_spec():
            continue
        for impl in caller.get_hookimpls():
            if not impl.optionalhook:
                out.setdefault(impl.plugin_name, []).append(hook_name)
    return out


def _unknown_message(pm: pluggy.PluginManager, hooks: list[str]) -> str:
    known = sorted(_specified(pm))
    parts = []
    for hook in sorted(hooks):
        close = difflib.get_close_matches(hook, known, n=1)
        parts.append(f"{hook!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    return (f"implements an unknown hook {', '.join(parts)}; a hook another plugin adds needs "
            "@hookimpl(optionalhook=True)")


def _register(pm: pluggy.PluginManager, name: str, module: object) -> None:
    """Register one loaded plugin and run its ``astromodal_add_hookspecs``; a failure marks it broken."""
    try:
        pm.register(module, name=name)
        _add_hookspecs(pm, name, module)
    except KeyboardInterrupt:
        raise
    except pluggy.PluginValidationError as exc:
        _mark_broken(pm, name, f"invalid hook implementation: {_one_line(str(exc))}")
    except BaseException as exc:  # noqa: BLE001 - a broken plugin must not take the others down
        _mark_broken(pm, name, exc, ADD_HOOKSPECS if pm.has_plugin(name) else None)


def _load_entry_points(pm: pluggy.PluginManager) -> None:
    selected = _selected()
    wanted = {_normalize(s): s for s in selected} if selected is not None else None
    matched: set[str] = set()
    candidates: list[tuple[str, str, Callable[[], object]]] = []
    for name, module in BUILTIN_PLUGINS.items():
        matched.add(_normalize(name))
        candidates.append((name, __version__, lambda m=module: importlib.import_module(m)))
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist.name if ep.dist is not None else ep.name
        if wanted is not None:
            hits = {_normalize(dist), _normalize(ep.name)} & set(wanted)
            if not hits:
                continue
            matched |= hits
        if pm.has_plugin(dist) or dist in _broken or any(c[0] == dist for c in candidates):
            continue
        candidates.append((dist, ep.dist.version if ep.dist is not None else "", ep.load))
    _unmatched[:] = sorted(wanted[k] for k in wanted if k not in matched) if wanted else []
    if _unmatched:
        if is_strict():
            raise RegistryError(unmatched_message())
        warnings.warn(unmatched_message(), RuntimeWarning, stacklevel=3)

    loaded: list[tuple[str, object]] = []
    for name, version, load in candidates:
        _versions[name] = version
        try:
            loaded.append((name, load()))
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # noqa: BLE001 - ImportError, SystemExit, anything at import
            _mark_broken(pm, name, exc)
    # Plugins that add hookspecs go first: the others' implementations of those hooks are then
    # checked against the specs when they register.
    loaded.sort(key=lambda item: pm.parse_hookimpl_opts(item[1], ADD_HOOKSPECS) is None)
    for name, module in loaded:
        _register(pm, name, module)
    for name, hooks in _unknown_hooks(pm).items():
        _mark_broken(pm, name, _unknown_message(pm, hooks))


def unmatched() -> list[str]:
    """The ``ASTROMODAL_PLUGINS`` names that matched no installed plugin (after loading)."""
    return list(_unmatched)


def unmatched_message() -> str:
    """One line naming the unmatched ``ASTROMODAL_PLUGINS`` names and what is installed."""
    installed = sorted({ep.dist.name if ep.dist is not None else ep.name
                        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)})
    names = ", ".join(map(repr, _unmatched))
    return (f"{ENV_VAR} names {names}, which match{'es' if len(_unmatched) == 1 else ''} no "
            f"installed plugin; installed: {', '.join(installed) or 'none'}")


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, built-in plugins and entry points loaded on first use."""
    global _pm
    if _pm is None:
        pm = pluggy.PluginManager("astromodal")
        pm.add_hookspecs(hookspecs)
        if os.environ.get(TRACE_VAR):
            _trace(pm)
        _pm = pm
        _bump()
        try:
            _load_entry_points(pm)
        except BaseException:
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
    """Register a plugin object in-process (tests, notebooks); resets the registry.

    Raises :class:`PluginLoadError` (and leaves nothing registered) when the plugin implements
    an unknown hook, declares wrong hook arguments or its ``astromodal_add_hookspecs`` fails.
    """
    pm = get_plugin_manager()
    _broken.pop(name, None)
    if isinstance(plugin, types.ModuleType):
        _inprocess[name] = plugin.__name__
    try:
        pm.register(plugin, name=name)
    except pluggy.PluginValidationError as exc:
        raise PluginLoadError(name, f"invalid hook implementation: {_one_line(str(exc))}") from exc
    _versions.setdefault(name, "")
    _bump()
    try:
        _add_hookspecs(pm, name, plugin)
    except Exception as exc:
        pm.unregister(name=name)
        raise PluginLoadError(name, _describe(exc, ADD_HOOKSPECS)) from exc
    unknown = _unknown_hooks(pm).get(name)
    if unknown:
        pm.unregister(name=name)
        raise PluginLoadError(name, _unknown_message(pm, unknown))


def inprocess_plugins() -> dict[str, str]:
    """``{name: module}`` of the module plugins registered in this process by
    :func:`register_plugin`, so a local worker process can register the same ones."""
    pm = get_plugin_manager()
    return {n: m for n, m in _inprocess.items() if pm.has_plugin(n)}


def unregister(name: str) -> None:
    """Remove a plugin registered by :func:`register_plugin`; resets the registry."""
    pm = get_plugin_manager()
    if pm.has_plugin(name):
        pm.unregister(name=name)
    _inprocess.pop(name, None)
    _versions.pop(name, None)
    _broken.pop(name, None)
    _bump()


def reset() -> None:
    """Forget every loaded plugin; the next lookup reloads entry points (tests)."""
    global _pm
    _pm = None
    _broken.clear()
    _versions.clear()
    _unmatched.clear()
    _added_hooks.clear()
    _bump()


def get_registry() -> Registry:
    """The process-wide registry, built on first use."""
    global _registry
    if _registry is None:
        reg = Registry.build(get_plugin_manager())
        _registry = reg  # building may have marked a plugin broken (and reset the cache)
        return reg
    return _registry


def add_commands(cli: Any) -> list[str]:
    """Let every plugin add its subcommands to the click group ``cli``, one plugin at a time.

    A plugin whose ``astromodal_register_commands`` raises, or replaces another plugin's
    command, is marked broken and its commands are taken out again. Returns the plugins run.
    """
    pm = get_plugin_manager()
    owners: dict[str, str] = {}
    done = []
    for impl in pm.hook.astromodal_register_commands.get_hookimpls():
        plugin = impl.plugin_name
        before = dict(cli.commands)
        try:
            if os.environ.get(TRACE_VAR):
                print(f"astromodal: {COMMANDS_HOOK} -> [{plugin!r}]", file=sys.stderr)
            _call(impl, {"cli": cli})
            replaced = [n for n in before if cli.commands.get(n) is not before[n]]
            if replaced:
                n = replaced[0]
                raise DuplicateRegistrationError(
                    f"command {n!r} is already registered by plugin {owners.get(n, '?')!r}"
                )
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # noqa: BLE001 - isolate the plugin
            cli.commands.clear()
            cli.commands.update(before)
            _mark_broken(pm, plugin, exc, COMMANDS_HOOK)
            continue
        for n in cli.commands:
            owners.setdefault(n, plugin)
        done.append(plugin)
    return done


def iter_command_hooks(cli: Any) -> Iterable[Any]:
    """Let every plugin add its subcommands to the click group (see :func:`add_commands`)."""
    return add_commands(cli)


# the registry ----------------------------------------------------------------------------------
_KINDS = {
    "modalities": "astromodal_register_modalities",
    "codecs": "astromodal_register_codecs",
    "token_keys": "astromodal_register_token_keys",
    "tokenizers": "astromodal_register_tokenizers",
}


class Registry:
    """What the loaded plugins registered, with lookups that fail by name."""

    def __init__(self) -> None:
        self.modalities: dict[str, Registered] = {}
        self.codecs: list[Registered] = []
        self.token_key_entries: dict[str, Registered] = {}
        self.tokenizers: dict[str, Registered] = {}
        self.broken: dict[str, PluginLoadError] = {}
        self.plugins: dict[str, dict[str, Any]] = {}
        #: ``ASTROMODAL_PLUGINS`` names that matched no installed plugin.
        self.missing: list[str] = []
        self._pm: pluggy.PluginManager | None = None
        self._collected: dict[str, list[Registered]] = {}

    @classmethod
    def build(cls, pm: pluggy.PluginManager) -> Registry:
        self = cls()
        self._pm = pm
        staged: dict[str, dict[str, list[Any]]] = {}
        failed: dict[str, tuple[BaseException, str]] = {}
        for kind, hook_name in _KINDS.items():
            hook = getattr(pm.hook, hook_name)
            for impl in hook.get_hookimpls():  # registration order
                plugin = impl.plugin_name
                if plugin in failed:
                    continue
                bucket = staged.setdefault(plugin, {}).setdefault(kind, [])
                if os.environ.get(TRACE_VAR):
                    print(f"astromodal: {hook_name} -> [{plugin!r}]", file=sys.stderr)
                try:
                    _call(impl, {"register": _collector(kind, plugin, bucket)})
                except KeyboardInterrupt:
                    raise
                except BaseException as exc:  # noqa: BLE001 - isolate the plugin
                    failed[plugin] = (exc, hook_name)
        for plugin, (exc, hook_name) in failed.items():
            _mark_broken(pm, plugin, exc, hook_name)
        self.broken = dict(_broken)
        self.missing = list(_unmatched)
        for plugin in [p for p in staged if p not in failed]:
            for kind in _KINDS:
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
                "builtin": name in BUILTIN_PLUGINS,
                "hooks": sorted(h.name for h in pm.get_hookcallers(p) or []),
                "status": "ok",
            }
        for name in self.broken:
            self._set_broken(name)
        return self

    def _set_broken(self, name: str) -> None:
        err = _broken.get(name) or self.broken[name]
        self.broken[name] = err
        info = self.plugins.setdefault(name, {
            "name": name, "version": _versions.get(name, ""), "builtin": name in BUILTIN_PLUGINS,
            "hooks": []})
        info["status"] = "broken"
        info["error"] = err.detail if isinstance(err, PluginLoadError) else str(err)

    def _add(self, kind: str, item: Any, plugin: str) -> None:
        if kind == "modalities":
            self._unique(self.modalities, item.name, item, plugin, "modality")
        elif kind == "codecs":
            self.codecs.append(Registered(item.__name__, item, plugin))
        elif kind == "token_keys":
            self._unique(self.token_key_entries, item.name, item, plugin, "token key")
        else:
            name, tok = item
            self._unique(self.tokenizers, name, tok, plugin, "tokenizer")

    @staticmethod
    def _unique(table: dict[str, Registered], name: str, obj: Any, plugin: str, what: str) -> None:
        if name in table:
            other = table[name].plugin
            raise DuplicateRegistrationError(
                f"duplicate {what} {name!r}: registered by both {other!r} and {plugin!r}"
            )
        table[name] = Registered(name, obj, plugin)

    # hooks that plugins add ----------------------------------------------------------------
    def added_hooks(self) -> dict[str, str]:
        """``{hook name: plugin}`` of the hookspecs plugins added (``astromodal_add_hookspecs``)."""
        return dict(_added_hooks)

    def collect(self, hook: str) -> list[Registered]:
        """What every plugin passed to ``register`` in ``hook`` (a hook with a ``register``
        argument, usually one a plugin added), in registration order; cached.

        A plugin whose implementation raises is marked broken (here and for the next
        :func:`get_registry`) and left out. A hook nobody specified collects nothing.
        """
        if hook in self._collected:
            return self._collected[hook]
        pm = self._pm or get_plugin_manager()
        caller = getattr(pm.hook, hook, None)
        items: list[Registered] = []
        if caller is not None and caller.has_spec():
            for impl in caller.get_hookimpls():
                plugin = impl.plugin_name
                bucket: list[Any] = []
                if os.environ.get(TRACE_VAR):
                    print(f"astromodal: {hook} -> [{plugin!r}]", file=sys.stderr)
                try:
                    _call(impl, {"register": bucket.append})
                except KeyboardInterrupt:
                    raise
                except BaseException as exc:  # noqa: BLE001 - isolate the plugin
                    _mark_broken(pm, plugin, exc, hook)
                    self._set_broken(plugin)
                    continue
                for obj in bucket:
                    label = (getattr(obj, "name", None) or getattr(obj, "__name__", None)
                             or (obj if isinstance(obj, str) else repr(obj)))
                    items.append(Registered(str(label), obj, plugin))
        self._collected[hook] = items
        return items

    def collect_all(self) -> dict[str, list[Registered]]:
        """:meth:`collect` every added hook that takes ``register`` (``astromodal plugins``
        calls them all, so that a plugin failing in any of them is reported)."""
        pm = self._pm or get_plugin_manager()
        out = {}
        for hook in sorted(_added_hooks):
            caller = getattr(pm.hook, hook, None)
            if caller is not None and caller.spec is not None and "register" in caller.spec.argnames:
                out[hook] = self.collect(hook)
        return out

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
        raise UnknownTokenizerError(
            f"unknown tokenizer {name!r}; registered: {sorted(self.tokenizers)}"
        )

    def owner(self, name: str) -> str:
        """The plugin that registered a token key, modality or tokenizer."""
        for table in (self.token_key_entries, self.modalities, self.tokenizers):
            if name in table:
                return table[name].plugin
        raise KeyError(name)


class UnknownTokenizerError(RegistryError, KeyError):
    """No installed plugin registers a tokenizer of that name (a ``KeyError`` too)."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


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

    return {
        "modalities": register_modality,
        "codecs": register_codec,
        "token_keys": register_token_key,
        "tokenizers": register_tokenizer,
    }[kind]
