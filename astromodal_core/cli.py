"""The ``astromodal`` command. Plugins add subcommands through ``astromodal_register_commands``."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from . import __version__
from .registry import get_registry, iter_command_hooks


def _emit(data: Any, as_json: bool, human: Any) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        human(data)


def _table(rows: list[list[str]], headers: list[str]) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)] if rows else [len(h) for h in headers]
    click.echo("  ".join(h.ljust(w) for h, w in zip(headers, widths)))
    click.echo("  ".join("-" * w for w in widths))
    for r in rows:
        click.echo("  ".join(str(x).ljust(w) for x, w in zip(r, widths)))


@click.group()
@click.version_option(__version__, prog_name="astromodal")
def cli() -> None:
    """astromodal: tokenize astronomical survey data and train multimodal models."""


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def plugins(as_json: bool) -> None:
    """List loaded plugins, their hooks, what each registered, and broken ones."""
    reg = get_registry()
    out = []
    for name in sorted(reg.plugins):
        info = dict(reg.plugins[name])
        info["registered"] = {
            "modalities": sorted(e.name for e in reg.modalities.values() if e.plugin == name),
            "codecs": sorted(e.name for e in reg.codecs if e.plugin == name),
            "token_keys": [e.name for e in reg.token_key_entries.values() if e.plugin == name],
            "tokenizers": sorted(e.name for e in reg.tokenizers.values() if e.plugin == name),
        }
        out.append(info)

    def human(data: list[dict[str, Any]]) -> None:
        if not data:
            click.echo("No plugins loaded.")
        for p in data:
            status = "BROKEN" if p["status"] == "broken" else "ok"
            click.echo(f"{p['name']} {p['version']}  [{status}]")
            if p["status"] == "broken":
                click.echo(f"  error: {p.get('error')}")
                continue
            r = p["registered"]
            click.echo(f"  hooks: {', '.join(p['hooks'])}")
            for what in ("modalities", "codecs", "tokenizers"):
                if r[what]:
                    click.echo(f"  {what}: {', '.join(r[what])}")
            if r["token_keys"]:
                click.echo(f"  token keys: {len(r['token_keys'])}")

    _emit(out, as_json, human)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def keys(as_json: bool) -> None:
    """List every token key: vocabulary, layout, max length and owning plugin."""
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


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def modalities(as_json: bool) -> None:
    """List registered modalities and the codecs that handle them."""
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


_commands_loaded = False


def _load_plugin_commands() -> None:
    global _commands_loaded
    if not _commands_loaded:
        _commands_loaded = True
        from .pipeline_cli import add_commands

        add_commands(cli)
        iter_command_hooks(cli)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    from .errors import AstromodalError

    _load_plugin_commands()
    try:
        cli.main(args=argv, prog_name="astromodal", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except AstromodalError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
