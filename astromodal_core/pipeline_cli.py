"""``astromodal tokenizers train`` and ``astromodal encode``: the pipeline on the command line.

``add_commands(cli)`` adds both to a click group (the built-in plugin, ``builtin.py``, calls it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

DEFAULT_TOKENIZER_DIR = "tokenizers"


def _files(config: Any, files: tuple[str, ...], key: str) -> list[str]:
    """Explicit SOURCES (arguments and ``--source``), else the glob(s) under ``data.<key>`` of
    the config; a ``scheme://`` source or a directory there is taken as it is."""
    if files:
        return list(dict.fromkeys(files))
    import glob
    import re

    data = config.get("data") or {}
    patterns = data.get(key) if hasattr(data, "get") else None
    if not patterns:
        raise click.UsageError(f"give input FILES, or list them under data.{key} in the config")
    patterns = [patterns] if isinstance(patterns, str) else list(patterns)
    found: list[str] = []
    for p in map(str, patterns):
        if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", p) or Path(p).is_dir():
            found.append(p)
        else:
            found.extend(sorted(glob.glob(p)))
    if not found:
        raise click.UsageError(f"data.{key} {patterns} matches no file")
    return list(dict.fromkeys(found))


def _uses_hats(inputs: list[str]) -> bool:
    from .sources import HATS_SCHEME, is_hats_dir

    return any(str(i).startswith(HATS_SCHEME) or is_hats_dir(i) for i in inputs)


def _engine(scheduler: str | None, workers: int | None, inputs: list[str] | None = None) -> Any:
    """A dask engine for ``--scheduler``, a local dask cluster for a HATS catalogue, else a
    local process pool."""
    from .pipeline import make_engine

    return make_engine(scheduler, workers, dask=bool(inputs) and _uses_hats(list(inputs or [])))


_SOURCE_HELP = ("An input source (repeatable; same as a SOURCES argument): a parquet or FITS file "
                "(cat.fits[EXTNAME] for one HDU), a directory of parquet files, or a HATS "
                "catalogue as hats://PATH (encoded partition by partition on a local dask "
                "cluster unless --scheduler).")


def add_commands(cli: click.Group) -> None:
    """Add ``tokenizers train`` and ``encode`` to ``cli``."""

    @cli.group("tokenizers")
    def tokenizers() -> None:
        """Train the tokenizers a config names."""

    @tokenizers.command("train")
    @click.option("--config", "config_path", required=True, help="config.yaml with a tokenizers: section.")
    @click.option("--out", required=True, type=click.Path(file_okay=False),
                  help="Directory for the fitted tokenizer set (tokenizers.json + member files).")
    @click.option("--scheduler", default=None, help="dask.distributed scheduler address (default: local processes).")
    @click.option("--workers", type=click.IntRange(min=1), default=None,
                  help="Local worker processes (default: all cores).")
    @click.option("--source", "sources", multiple=True, metavar="SOURCE", help=_SOURCE_HELP)
    @click.option("--quiet", is_flag=True, help="No progress bars.")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
    @click.argument("files", nargs=-1, metavar="[SOURCES]...")
    def train(config_path: str, out: str, scheduler: str | None, workers: int | None,
              sources: tuple[str, ...], quiet: bool, as_json: bool, files: tuple[str, ...]) -> None:
        """Train every tokenizer under tokenizers: on SOURCES (or data.train_files): parquet or
        FITS files, directories, hats://PATH catalogues."""
        from .config import load_config
        from .pipeline import train_tokenizers

        config = load_config(config_path)
        inputs = _files(config, files + sources, "train_files")
        timings: dict[str, float] = {}
        with _engine(scheduler, workers, inputs) as engine:
            saved = train_tokenizers(
                config, inputs, out, engine=engine, progress=not quiet,
                on_trained=lambda m, sec: timings.__setitem__(m.name, sec),
            )
        summary = [
            {"section": m.name, "path": str(Path(out) / m.file), "fingerprint": m.fingerprint,
             "token_keys": len(m.token_keys), "seconds": round(timings.get(m.name, 0.0), 3)}
            for m in saved
        ]
        if as_json:
            click.echo(json.dumps({"files": len(inputs), "tokenizers": summary}, indent=2))
            return
        click.echo(f"trained {len(saved)} tokenizers on {len(inputs)} files ({engine.name} engine)")
        for s in summary:
            click.echo(f"  {s['section']:<10} {s['token_keys']:>4} token keys  "
                       f"fingerprint {s['fingerprint']}  {s['seconds']:.1f}s  -> {s['path']}")

    @cli.command("encode")
    @click.option("--config", "config_path", required=True, help="config.yaml: the tokenizers: sections to use.")
    @click.option("--tokenizers", "tokenizer_dir", default=None, type=click.Path(file_okay=False),
                  help=f"Directory written by `tokenizers train` (default: data.tokenizers_dir or {DEFAULT_TOKENIZER_DIR}).")
    @click.option("--out", required=True, type=click.Path(file_okay=False),
                  help="Token store directory (one <file>.tokens.parquet per input).")
    @click.option("--merged", default=None, type=click.Path(dir_okay=False),
                  help="Also write the whole store as one parquet file here.")
    @click.option("--scheduler", default=None, help="dask.distributed scheduler address (default: local processes).")
    @click.option("--workers", type=click.IntRange(min=1), default=None,
                  help="Local worker processes (default: all cores).")
    @click.option("--force", is_flag=True, help="Re-encode files already encoded with the same fingerprints.")
    @click.option("--source", "sources", multiple=True, metavar="SOURCE", help=_SOURCE_HELP)
    @click.option("--quiet", is_flag=True, help="No progress bars.")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
    @click.argument("files", nargs=-1, metavar="[SOURCES]...")
    def encode(config_path: str, tokenizer_dir: str | None, out: str, merged: str | None,
               scheduler: str | None, workers: int | None, force: bool, sources: tuple[str, ...],
               quiet: bool, as_json: bool, files: tuple[str, ...]) -> None:
        """Encode SOURCES (or data.encode_files) with the trained tokenizers into a token store:
        one part per file, one per HEALPix partition of a hats://PATH catalogue."""
        from .config import load_config
        from .errors import ConfigError
        from .pipeline import encode_files, merge_store
        from .tokenizer_set import TokenizerSet

        config = load_config(config_path)
        data = config.get("data") or {}
        tdir = tokenizer_dir or (data.get("tokenizers_dir") if hasattr(data, "get") else None) \
            or DEFAULT_TOKENIZER_DIR
        wanted = list((config.get("tokenizers") or {}).keys())
        tset = TokenizerSet.read(tdir)
        missing = [w for w in wanted if w not in tset]
        if missing:
            raise ConfigError(
                f"{tdir}: no trained tokenizer for config section(s) {missing}; "
                f"it holds {tset.names()}"
            )
        inputs = _files(config, files + sources, "encode_files")
        with _engine(scheduler, workers, inputs) as engine:
            records = encode_files(inputs, tdir, out, engine=engine, progress=not quiet,
                                   force=force, sections=wanted or None)
        if merged:
            merge_store(out, merged)
        n_enc = sum(r["status"] == "encoded" for r in records)
        summary = {"store": out, "merged": merged, "files": records,
                   "encoded": n_enc, "skipped": len(records) - n_enc,
                   "rows": sum(r["rows"] for r in records)}
        if as_json:
            click.echo(json.dumps(summary, indent=2))
            return
        click.echo(f"{n_enc} files encoded, {len(records) - n_enc} skipped (already encoded with "
                   f"the same tokenizer fingerprints), {summary['rows']} rows -> {out}")
        for r in records:
            pixel = (f"  (order {r['healpix']['order']}, pixel {r['healpix']['pixel']})"
                     if "healpix" in r else "")
            click.echo(f"  {r['status']:<8} {r['rows']:>8} rows  {r['file']}{pixel}")
        if merged:
            click.echo(f"merged store: {merged}")
