"""Hook implementations of astromodal-demo: its own hookspec and the ``astromodal demo`` command."""

from __future__ import annotations

from typing import Any

import click

from astromodal_core import hookimpl


@hookimpl
def astromodal_add_hookspecs(pluginmanager: Any) -> None:
    """Add ``astromodal_register_demo_columns`` (see ``hookspecs.py``)."""
    from . import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


@hookimpl
def astromodal_register_commands(cli: Any) -> None:
    @cli.command()
    @click.option("--out", default="demo_output", show_default=True, type=click.Path(file_okay=False),
                  help="Report directory.")
    @click.option("--n", "n", default=2000, show_default=True, type=click.IntRange(min=1),
                  help="Objects in the synthetic sky.")
    @click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0),
                  help="Seed of the sky and of every training step.")
    @click.option("--files", "n_files", default=4, show_default=True, type=click.IntRange(min=1),
                  help="Datacube files to split the sky into (at most --n).")
    @click.option("--cutout-size", default=32, show_default=True, type=click.IntRange(min=1),
                  help="Cutout side in pixels.")
    @click.option("--steps", default=1200, show_default=True, type=click.IntRange(min=1),
                  help="Training steps of the tiny model.")
    @click.option("--workers", type=click.IntRange(min=1), default=None,
                  help="Local worker processes (default: all cores).")
    @click.option("--no-model", is_flag=True, help="Stop after the tokenizers (as without astromodal-model).")
    @click.option("--format", "datacube_format", type=click.Choice(["parquet", "fits"]), default="parquet",
                  show_default=True, help="Train and encode from the datacube as parquet or as FITS "
                  "tables (written beside it; needs astropy).")
    @click.option("--quiet", is_flag=True, help="No progress bars.")
    @click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
    def demo(out: str, n: int, seed: int, n_files: int, cutout_size: int, steps: int,
             workers: int | None, no_model: bool, datacube_format: str, quiet: bool, as_json: bool) -> None:
        """Generate a demo sky, train every installed tokenizer, encode, train the tiny model and
        write a report directory (report.md, PNG plots, summary.json)."""
        import json

        from .run import run_demo

        if n_files > n:
            raise click.BadParameter(f"{n_files} files for {n} objects: give --files <= --n",
                                     param_hint="'--files'")
        echo = (lambda _msg: None) if as_json else click.echo
        summary = run_demo(out, n=n, seed=seed, n_files=n_files, cutout_size=cutout_size,
                           steps=steps, workers=workers, with_model=False if no_model else None,
                           progress=not quiet and not as_json, echo=echo, datacube_format=datacube_format)
        if as_json:
            click.echo(json.dumps({k: v for k, v in summary.items() if k != "table"},
                                  indent=2, default=str))
            return
        click.echo("")
        click.echo(summary["table"])
        click.echo(f"report: {out}/report.md  plots: {', '.join(summary['plots'])}")
