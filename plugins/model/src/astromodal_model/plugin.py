"""Registers ``astromodal train``, ``astromodal embed`` and ``astromodal predict``.

torch is imported inside the commands only, never when the plugin loads.
"""

from __future__ import annotations

import json
from typing import Any

import click

from astromodal_core import hookimpl


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2))


def _load_values(values: str | None, tokenizer: str | None) -> Any:
    if values and tokenizer:
        raise click.UsageError("give --values or --tokenizer, not both")
    if values:
        import numpy as np

        data = np.load(values, allow_pickle=False)
        if isinstance(data, np.ndarray):
            return data
        with data:
            return {k: data[k] for k in data.files}
    if tokenizer:
        if "=" not in tokenizer:
            raise click.UsageError("--tokenizer takes SECTION=PATH, e.g. scalar=scalar_tokenizer_config.npz")
        from astromodal_core import get_registry

        section, path = tokenizer.split("=", 1)
        return get_registry().tokenizer(section).load(path)
    return None


@hookimpl
def astromodal_register_commands(cli: Any) -> None:
    @cli.command()
    @click.option("--tokens", "tokens", required=True, help="Token store (parquet).")
    @click.option("--config", "config", required=True, help="model.yaml: model preset/dims and training settings.")
    @click.option("--out", "out", required=True, help="Output directory (checkpoint, history, model/).")
    @click.option("--no-resume", is_flag=True, help="Start over even if OUT holds a checkpoint.")
    @click.option("--device", default=None, help="torch device (default: cuda when present, else cpu).")
    @click.option("--quiet", is_flag=True, help="No progress bar.")
    @click.option("--json", "as_json", is_flag=True, help="Print a JSON summary for scripts.")
    def train(tokens: str, config: str, out: str, no_resume: bool, device: str | None, quiet: bool, as_json: bool) -> None:
        """Train the model on a token store (4M-style masked training). Works under torchrun."""
        import torch.distributed as dist

        from .train import train_model

        model, history = train_model(tokens, config, out, resume=not no_resume, progress=not quiet, device=device)
        rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
        if rank != 0:  # under torchrun only rank 0 reports
            return
        summary = {
            "out": out,
            "steps": len(history["loss"]),
            "final_loss": history["loss"][-1] if history["loss"] else None,
            "val": history["val"][-1] if history["val"] else None,
            "parameters": model.num_parameters(),
            "token_keys": model.key_names,
        }
        if as_json:
            _echo_json(summary)
            return
        click.echo(f"trained {summary['parameters']:,} parameters on {len(model.key_names)} token keys")
        if summary["final_loss"] is not None:
            click.echo(f"final training loss {summary['final_loss']:.4f}")
        if summary["val"]:
            for k, v in summary["val"]["loss"].items():
                click.echo(f"  val loss {k}: {v:.4f}")
        click.echo(f"model saved to {out}/model")

    @cli.command()
    @click.option("--model", "model_dir", required=True, help="Directory written by save_pretrained.")
    @click.option("--tokens", "tokens", required=True, help="Token store (parquet).")
    @click.option("--out", "out", required=True, help="Output parquet: id + embedding.")
    @click.option("--batch-size", default=256, show_default=True)
    @click.option("--num-encoder-tokens", default=600, show_default=True)
    @click.option("--quiet", is_flag=True, help="No progress bar.")
    @click.option("--json", "as_json", is_flag=True, help="Print a JSON summary for scripts.")
    def embed(model_dir: str, tokens: str, out: str, batch_size: int, num_encoder_tokens: int, quiet: bool, as_json: bool) -> None:
        """Write pooled embeddings of every row of a token store."""
        from astromodal_core.store import store_metadata

        from .inference import write_embeddings
        from .model import AstroModel

        meta = store_metadata(tokens)
        model = AstroModel.from_pretrained(model_dir, strict=False)  # checked against the store below
        rows = write_embeddings(
            model, tokens, out, id_col=meta["id_col"], batch_size=batch_size,
            num_encoder_tokens=num_encoder_tokens, progress=not quiet,
        )
        summary = {"out": out, "rows": int(rows), "dim": int(model.config.dim)}
        if as_json:
            _echo_json(summary)
        else:
            click.echo(f"wrote {summary['rows']} embeddings of dimension {summary['dim']} to {out}")

    @cli.command()
    @click.option("--model", "model_dir", required=True, help="Directory written by save_pretrained.")
    @click.option("--tokens", "tokens", required=True, help="Token store (parquet).")
    @click.option("--target", required=True, help="Token key to predict, e.g. tok_z.")
    @click.option("--out", "out", required=True, help="Output parquet: id, token, prob (+ mean, std, median).")
    @click.option("--values", default=None, help=".npy/.npz of per-token physical values (npz: one array per key).")
    @click.option("--tokenizer", default=None, help="SECTION=PATH of a saved tokenizer giving bin values.")
    @click.option("--batch-size", default=256, show_default=True)
    @click.option("--num-encoder-tokens", default=600, show_default=True)
    @click.option("--exclude", multiple=True, metavar="KEY",
                  help="A token key not to use as input (repeatable), e.g. --exclude tok_spectrum_desi_b.")
    @click.option("--quiet", is_flag=True, help="No progress bar.")
    @click.option("--json", "as_json", is_flag=True, help="Print a JSON summary for scripts.")
    def predict(
        model_dir: str, tokens: str, target: str, out: str, values: str | None, tokenizer: str | None,
        batch_size: int, num_encoder_tokens: int, exclude: tuple[str, ...], quiet: bool, as_json: bool,
    ) -> None:
        """Predict one token key for every row of a token store from its other keys."""
        from astromodal_core.store import store_metadata

        from .inference import write_predictions
        from .model import AstroModel

        meta = store_metadata(tokens)
        model = AstroModel.from_pretrained(model_dir, strict=False)  # checked against the store below
        codec = _load_values(values, tokenizer)
        rows, columns = write_predictions(
            model, tokens, target, out, id_col=meta["id_col"], codec=codec, batch_size=batch_size,
            num_encoder_tokens=num_encoder_tokens, progress=not quiet, exclude=exclude,
        )
        summary = {"out": out, "rows": int(rows), "target": target, "columns": columns}
        if as_json:
            _echo_json(summary)
        else:
            click.echo(f"wrote {summary['rows']} predictions of {target} to {out} ({', '.join(columns)})")
