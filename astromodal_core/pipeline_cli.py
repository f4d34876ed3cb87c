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
    """Explicit FILES, else the glob(s) under ``data.<key>`` of the config."""
    if files:
        return list(files)
    import glob

    data = config.get("data") or {}
    patterns = data.get(key) if hasattr(data, "get") else None
    if not patterns:
        raise click.UsageError(f"give input FILES, or list them under data.{key} in the config")
    patterns = [patterns] if isinstance(patterns, str) else list(patterns)
    found = sorted({f for p in patterns for f in glob.glob(str(p))})
    if not found:
        raise click.UsageError(f"data.{key} {patterns} matches no file")
    return found


def _engine(scheduler: str | None, workers: int | None) -> Any:
    from .pipeline import make_engine

    return make_engine(scheduler, workers)


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
    @click.option("--quiet", is_flag=True, help="No progress bars.")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
    @click.argument("files", nargs=-1)
    def train(config_path: str, out: str, scheduler: str | None, workers: int | None,
              quiet: bool, as_json: bool, files: tuple[str, ...]) -> None:
        """Train every tokenizer under tokenizers: on FILES (or data.train_files)."""
        from .config import load_config
        from .pipeline import train_tokenizers

        config = load_config(config_path)
        inputs = _files(config, files, "train_files")
        timings: dict[str, float] = {}
        with _engine(scheduler, workers) as engine:
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
    @click.option("--quiet", is_flag=True, help="No progress bars.")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
    @click.argument("files", nargs=-1)
    def encode(config_path: str, tokenizer_dir: str | None, out: str, merged: str | None,
               scheduler: str | None, workers: int | None, force: bool, quiet: bool,
               as_json: bool, files: tuple[str, ...]) -> None:
        """Encode FILES (or data.encode_files) with the trained tokenizers into a token store."""
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
        inputs = _files(config, files, "encode_files")
        with _engine(scheduler, workers) as engine:
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
            click.echo(f"  {r['status']:<8} {r['rows']:>8} rows  {r['file']}")
        if merged:
            click.echo(f"merged store: {merged}")
