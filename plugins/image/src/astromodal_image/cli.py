"""The ``astromodal image-train`` command."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click


def _csv(value: str | None) -> list[str] | None:
    return None if value is None else [v.strip() for v in value.split(",") if v.strip()]


@click.command("image-train")
@click.argument("parquet_files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--out", default="image_tokenizer_config.npz", show_default=True,
              help="Tokenizer file (.npz); weights and codebook go to .safetensors companions beside it.")
@click.option("--pt", "pt_path", default=None, help="Also write the weights as a .pt state dict.")
@click.option("--config", "config_path", default=None,
              help="config.yaml whose tokenizers.image section sets the tokenizer.")
@click.option("--cutout-size", type=int, default=None, help="Cutout side in pixels [96].")
@click.option("--bands", default=None, help="Comma-separated bands [the 12 S-PLUS bands].")
@click.option("--latent-dim", type=int, default=None, help="Latent channels [2].")
@click.option("--codebook-size", type=int, default=None, help="Codebook entries [1024].")
@click.option("--channels", default=None, help="Comma-separated widths of the stride-2 stages [16,32,32].")
@click.option("--max-cutouts", type=int, default=None, help="Training reservoir size [1000].")
@click.option("--epochs", type=int, default=None, help="Training epochs, at most (early stopping) [10].")
@click.option("--batch-size", type=int, default=None, help="Training batch size [16].")
@click.option("--lr", type=float, default=None, help="Peak Adam learning rate (one-cycle schedule) [3e-3].")
@click.option("--device", default=None, help="cpu or cuda (falls back to cpu without CUDA).")
@click.option("--checkpoint-dir", default=None, help="Write a safetensors checkpoint each epoch.")
@click.option("--resume", is_flag=True, help="Resume from the checkpoint in --checkpoint-dir.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary for scripts.")
def image_train(
    parquet_files: tuple[str, ...],
    out: str,
    pt_path: str | None,
    config_path: str | None,
    cutout_size: int | None,
    bands: str | None,
    latent_dim: int | None,
    codebook_size: int | None,
    channels: str | None,
    max_cutouts: int | None,
    epochs: int | None,
    batch_size: int | None,
    lr: float | None,
    device: str | None,
    checkpoint_dir: str | None,
    resume: bool,
    quiet: bool,
    as_json: bool,
) -> None:
    """Train an ImageTokenizer (autoencoder + codebook) on parquet datacubes."""
    from .tokenizer import ImageTokenizer

    section: dict[str, Any] = {}
    if config_path is not None:
        from astromodal_core.config import load_config

        cfg = load_config(config_path)
        image = cfg.get("tokenizers", {}).get("image")
        if image is not None:
            section.update(image.to_dict() if hasattr(image, "to_dict") else dict(image))
    overrides = {
        "cutout_size": cutout_size,
        "bands": _csv(bands),
        "latent_dim": latent_dim,
        "codebook_size": codebook_size,
        "channels": [int(c) for c in _csv(channels)] if channels else None,
        "max_cutouts": max_cutouts,
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
    }
    section.update({k: v for k, v in overrides.items() if v is not None})
    tok = ImageTokenizer.from_config(section)
    tok.train(
        list(parquet_files), device=device, checkpoint_dir=checkpoint_dir, resume=resume,
        progress=not quiet,
    )
    tok.save(out)
    if pt_path:
        tok.save(pt_path)
    from astromodal_core.serialize import load_npz

    refs = load_npz(out)[0].get("__companions__", {})
    summary = {
        "config": str(Path(out)),
        "companions": [str(Path(out).with_name(refs[p]["file"])) for p in sorted(refs)],
        "pt": pt_path,
        "fingerprint": tok.fingerprint,
        "token_key": tok.key_name,
        "grid": list(tok.grid_shape),
        "codebook_size": tok.codebook_size,
        "loss_history": tok.history,
        "val_loss_history": tok.val_history,
        "best_epoch": tok.best_epoch,
    }
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    click.echo(f"trained {tok!r}")
    click.echo(f"  loss per epoch: {', '.join(f'{h:.4f}' for h in tok.history)}")
    if tok.val_history:
        click.echo(f"  validation loss per epoch: {', '.join(f'{h:.4f}' for h in tok.val_history)}; "
                   f"kept epoch {tok.best_epoch}")
    click.echo(f"  token key {tok.key_name}: grid {tok.grid_shape[0]}x{tok.grid_shape[1]}, "
               f"vocab {tok.codebook_size + 1} (mask {tok.mask_token})")
    click.echo(f"  wrote {summary['config']} and {', '.join(summary['companions'])}"
               + (f" and {pt_path}" if pt_path else ""))
    click.echo(f"  fingerprint {summary['fingerprint']}")
