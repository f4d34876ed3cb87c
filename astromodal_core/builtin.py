"""The core's own commands (``plugins``, ``keys``, ``modalities``, ``tokenizers train``,
``encode``), registered through ``astromodal_register_commands`` by a built-in plugin.

The registry registers this module first, under the name ``astromodal-core``, exactly as it
registers an installed plugin (see :data:`astromodal_core.registry.BUILTIN_PLUGINS`).
"""

from __future__ import annotations

import json
import os
import traceback
from typing import Any

import click

from .hookspecs import hookimpl


@hookimpl
def astromodal_register_commands(cli: Any) -> None:
    from .pipeline_cli import add_commands

    for command in (plugins, keys, modalities):
        cli.add_command(command)
    add_commands(cli)


def _emit(data: Any, as_json: bool, human: Any) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        human(data)


def _table(rows: list[list[Any]], headers: list[str]) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)] if rows else [len(h) for h in headers]
    click.echo("  ".join(h.ljust(w) for h, w in zip(headers, widths)))
    click.echo("  ".join("-" * w for w in widths))
    for r in rows:
        click.echo("  ".join(str(x).ljust(w) for x, w in zip(r, widths)))


def _debug() -> bool:
    ctx = click.get_current_context(silent=True)
    root = ctx.find_root() if ctx is not None else None
    if root is not None and root.params.get("debug"):
        return True
    return os.environ.get("ASTROMODAL_DEBUG", "").strip().lower() not in ("", "0", "false", "no")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def plugins(as_json: bool) -> None:
    """List loaded plugins, their hooks, what each registered, broken ones and names in
    ASTROMODAL_PLUGINS that matched nothing."""
    from .registry import ENV_VAR, get_registry

    reg = get_registry()
    added = reg.collect_all()  # call every hook plugins added, so that a failing one shows
    sources = reg.collect("astromodal_register_sources")  # listed for the plugins that have any
    out = []
    for name in sorted(reg.plugins):
        info = dict(reg.plugins[name])
        registered = {
            "modalities": sorted(e.name for e in reg.modalities.values() if e.plugin == name),
            "codecs": sorted(e.name for e in reg.codecs if e.plugin == name),
            "token_keys": [e.name for e in reg.token_key_entries.values() if e.plugin == name],
            "tokenizers": sorted(e.name for e in reg.tokenizers.values() if e.plugin == name),
        }
        if any(e.plugin == name for e in sources):
            registered["sources"] = [e.name for e in sources if e.plugin == name]
        for hook, entries in added.items():
            registered[hook.removeprefix("astromodal_register_")] = [
                e.name for e in entries if e.plugin == name]
        info["registered"] = registered
        out.append(info)
    for name in reg.missing:
        out.append({"name": name, "version": "", "builtin": False, "hooks": [], "status": "missing",
                    "error": f"named in {ENV_VAR}, but no installed plugin matches it"})

    def human(data: list[dict[str, Any]]) -> None:
        if not any(p["status"] != "missing" and not p.get("builtin") for p in data):
            click.echo("No plugins loaded besides the built-in ones.")
        for p in data:
            if p["status"] == "missing":
                click.echo(f"{p['name']}  [NOT FOUND]")
                click.echo(f"  {p['error']}")
                continue
            status = "BROKEN" if p["status"] == "broken" else "ok"
            builtin = "  (built in)" if p.get("builtin") else ""
            click.echo(f"{p['name']} {p['version']}  [{status}]{builtin}")
            if p["status"] == "broken":
                click.echo(f"  error: {p.get('error')}")
                cause = reg.broken[p["name"]].__cause__
                if _debug() and cause is not None:
                    for line in traceback.format_exception(type(cause), cause, cause.__traceback__):
                        click.echo("  " + line.rstrip("\n").replace("\n", "\n  "))
                continue
            r = p["registered"]
            click.echo(f"  hooks: {', '.join(p['hooks'])}")
            for what, items in r.items():
                if what != "token_keys" and items:
                    click.echo(f"  {what.replace('_', ' ')}: {', '.join(items)}")
            if r["token_keys"]:
                click.echo(f"  token keys: {len(r['token_keys'])}")

    _emit(out, as_json, human)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def keys(as_json: bool) -> None:
    """List every token key: vocabulary, layout, max length and owning plugin."""
    from .registry import get_registry

    reg = get_registry()
    out = []
    for entry in reg.token_key_entries.values():
        d = entry.obj.as_dict()
        d["plugin"] = entry.plugin
        out.append(d)

    def human(data: list[dict[str, Any]]) -> None:
        rows = [
            [d["name"], d["vocab_size"], d["layout"], d["max_length"], d["mask_token"], d["modality"], d["plugin"]]
            for d in data
        ]
        _table(rows, ["key", "vocab", "layout", "max_len", "mask", "modality", "plugin"])

    _emit(out, as_json, human)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def modalities(as_json: bool) -> None:
    """List registered modalities and the codecs that handle them."""
    from .registry import get_registry

    reg = get_registry()
    out = []
    for name, entry in reg.modalities.items():
        codecs = [e.name for e in reg.codecs if entry.obj in e.obj.modalities]
        out.append(
            {
                "name": name,
                "class": f"{entry.obj.__module__}.{entry.obj.__qualname__}",
                "token_key": entry.obj.token_key if isinstance(entry.obj.token_key, str) else "",
                "codecs": codecs,
                "plugin": entry.plugin,
            }
        )

    def human(data: list[dict[str, Any]]) -> None:
        _table(
            [[d["name"], d["token_key"], ",".join(d["codecs"]), d["plugin"]] for d in data],
            ["modality", "token_key", "codecs", "plugin"],
        )

    _emit(out, as_json, human)
