"""The ``astromodal`` command: a click group whose subcommands all come from plugins.

Every command, the core's own included (the built-in plugin ``astromodal-core``), is added
through ``astromodal_register_commands``; the group loads them on first use. :func:`main`
turns every user mistake into one line ``Error: ...`` on stderr and a non-zero exit status;
``--debug`` (or ``ASTROMODAL_DEBUG=1``) shows the traceback instead.
"""

from __future__ import annotations

import errno
import json
import os
import sys
import warnings
from collections.abc import Iterator
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from typing import Any

import click

from . import __version__, registry
from .errors import AstromodalError, RegistryError

DEBUG_VAR = "ASTROMODAL_DEBUG"


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


def _one_line(text: Any) -> str:
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


class AstromodalGroup(click.Group):
    """A click group that asks the plugins for its commands on first use, and again after the
    set of loaded plugins changed (tests register plugins in-process)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._loaded_generation: int | None = None
        self._from_plugins: set[str] = set()

    def load_commands(self) -> None:
        """Add every loaded plugin's commands (``astromodal_register_commands``), once."""
        registry.get_plugin_manager()
        if self._loaded_generation == registry.generation():
            return
        for name in self._from_plugins:
            self.commands.pop(name, None)
        before = set(self.commands)
        registry.add_commands(self)
        self._from_plugins = set(self.commands) - before
        self._loaded_generation = registry.generation()

    def list_commands(self, ctx: click.Context) -> list[str]:
        self.load_commands()
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        self.load_commands()
        return super().get_command(ctx, cmd_name)


@click.group(cls=AstromodalGroup)
@click.version_option(__version__, prog_name="astromodal")
@click.option("--debug", is_flag=True,
              help=f"Show the full traceback of an error (also {DEBUG_VAR}=1).")
@click.option("--strict", is_flag=True,
              help=f"Fail when {registry.ENV_VAR} names a plugin that is not installed "
                   f"(also {registry.STRICT_VAR}=1).")
def cli(debug: bool, strict: bool) -> None:
    """astromodal: tokenize astronomical survey data and train multimodal models."""
    if strict and registry.unmatched():
        raise RegistryError(registry.unmatched_message())


def _load_plugin_commands() -> None:
    """Add the plugins' commands to :data:`cli` now (they are otherwise added on first use)."""
    cli.load_commands()  # type: ignore[attr-defined]


def _leading_options(args: list[str]) -> set[str]:
    """The options before the subcommand name (the group's own: --debug, --strict)."""
    out = set()
    for a in args:
        if a == "--" or not a.startswith("-"):
            break
        out.add(a)
    return out


@contextmanager
def _warnings_as_lines(debug: bool) -> Iterator[None]:
    """Print warnings as one ``Warning: ...`` line each (full format under --debug)."""
    if debug:
        yield
        return
    old = warnings.showwarning

    def show(message: Any, category: Any, filename: str, lineno: int, file: Any = None,
             line: Any = None) -> None:
        click.echo(f"Warning: {_one_line(message)}", err=True)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = old


def _os_error(exc: OSError) -> str:
    paths = [os.fsdecode(p) for p in (exc.filename, exc.filename2) if p is not None]
    reason = exc.strerror or str(exc) or type(exc).__name__
    if exc.errno == errno.ENOSPC and not paths:
        reason += " (while writing output; free some space or choose another --out)"
    return f"{' -> '.join(paths)}: {reason}" if paths else reason


def error_message(exc: BaseException) -> tuple[str, int]:
    """The one-line message (without ``Error: ``) and the exit status for an exception."""
    if isinstance(exc, click.UsageError):
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
        return exc.format_message() + hint, exc.exit_code
    if isinstance(exc, click.ClickException):
        return exc.format_message(), exc.exit_code
    if isinstance(exc, click.exceptions.Abort):
        interrupted = isinstance(exc.__cause__ or exc.__context__, KeyboardInterrupt)
        return ("interrupted", 130) if interrupted else ("aborted", 1)
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted", 130
    if isinstance(exc, BrokenProcessPool) or type(exc).__name__ == "KilledWorker":
        return (f"a worker process died (killed by the system, out of memory?): {exc}; rerun "
                "with --workers 1 to see its error"), 1
    if isinstance(exc, AstromodalError):
        return str(exc), 1
    if isinstance(exc, OSError):
        return _os_error(exc), 1
    if isinstance(exc, UnicodeDecodeError):
        return f"cannot read text as {exc.encoding}: {exc.reason} at byte {exc.start}", 1
    if isinstance(exc, json.JSONDecodeError):
        return f"invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})", 1
    if isinstance(exc, MemoryError):
        return "out of memory; try fewer --workers or smaller inputs", 1
    detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return f"{detail} (unexpected: rerun with --debug for the traceback)", 1


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the command; a failure is one ``Error:`` line."""
    args = list(sys.argv[1:] if argv is None else argv)
    leading = _leading_options(args)
    debug = "--debug" in leading or _env_flag(DEBUG_VAR)
    if "--strict" in leading:
        registry.set_strict(True)
    code = 0
    try:
        with _warnings_as_lines(debug):
            rv = cli.main(args=args, prog_name="astromodal", standalone_mode=False)
        code = rv if isinstance(rv, int) else 0
    except SystemExit:
        raise
    except click.exceptions.NoArgsIsHelpError as exc:  # `astromodal` alone: its help
        click.echo(exc.ctx.get_help())
    except BaseException as exc:  # noqa: BLE001 - every failure ends as one line
        if debug and not isinstance(exc, click.ClickException):
            raise
        message, code = error_message(exc)
        click.echo(f"Error: {_one_line(message)}", err=True)
    finally:
        if "--strict" in leading:
            registry.set_strict(None)
    if code:
        sys.exit(code)
