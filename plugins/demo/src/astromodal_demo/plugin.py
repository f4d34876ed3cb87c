"""Registers the ``astromodal demo`` command."""

from __future__ import annotations

from typing import Any

import click

from astromodal_core import hookimpl


@hookimpl
def astromodal_register_commands(cli: Any) -> None:
    @cli.command()
    @click.option("--out", default="demo_output", show_default=True, help="Report directory.")
    @click.option("--quiet", is_flag=True, help="No progress bars.")
    def demo(out: str, quiet: bool) -> None:
        """Run the end-to-end demo and write a report directory."""
        from astromodal_core.registry import get_registry

        reg = get_registry()
        click.echo(f"astromodal demo: {len(reg.plugins)} plugins, {len(reg.token_key_entries)} token keys")
        for name, info in sorted(reg.plugins.items()):
            click.echo(f"  {name} [{info['status']}]")
