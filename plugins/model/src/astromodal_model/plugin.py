"""Registers ``astromodal train``, ``astromodal embed`` and ``astromodal predict``.

torch is imported inside the commands only, never when the plugin loads.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from astromodal_core import hookimpl


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2))


def _load_tokenizer(spec: str) -> Any:
    """A fitted tokenizer from ``NAME=PATH`` (NAME a registered tokenizer name)."""
    if "=" not in spec:
        raise click.UsageError(f"--tokenizer takes NAME=PATH (a registered tokenizer name), got {spec!r}")
    from astromodal_core import get_registry

    name, path = spec.split("=", 1)
    registered = get_registry().tokenizers
    if name not in registered:
        raise click.UsageError(
            f"--tokenizer {spec}: no installed plugin registers a tokenizer named {name!r}; "
            f"registered: {sorted(registered)}"
        )
    return registered[name].obj.load(path)


def _load_values(values: str | None, tokenizers: str | None, tokenizer: tuple[str, ...], target: str) -> Any:
    """The source of the target's physical values: an array / {key: array} file, a fitted
    tokenizer set, or the given tokenizer that writes ``target``."""
    given = [flag for flag, v in (("--values", values), ("--tokenizers", tokenizers), ("--tokenizer", tokenizer)) if v]
    if len(given) > 1:
        raise click.UsageError(f"give one of --values, --tokenizers or --tokenizer, not {' and '.join(given)}")
    if values:
        import numpy as np

        data = np.load(values, allow_pickle=False)
        if isinstance(data, np.ndarray):
            return data
        with data:
            return {k: data[k] for k in data.files}
    if tokenizers:
        from astromodal_core.tokenizer_set import TokenizerSet

        return TokenizerSet.read(tokenizers)
    if tokenizer:
        loaded = [_load_tokenizer(spec) for spec in tokenizer]
        for tok in loaded:
            if target in {k.name for k in tok.token_keys}:
                return tok
        writes = {spec.split("=", 1)[0]: sorted(k.name for k in tok.token_keys) for spec, tok in zip(tokenizer, loaded)}
        raise click.UsageError(f"--tokenizer: none of the tokenizers given writes the target {target!r}; they write {writes}")
    return None


@contextmanager
def _quiet_repeats() -> Iterator[None]:
    """Silence the fingerprint warning a second time (the load already warned)."""
    import warnings

    from .keys import FingerprintMismatchWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FingerprintMismatchWarning)
        yield


_THREADS_HELP = ("torch CPU threads (default: the config's train.threads for train, else half the usable "
                 "cores, at most 8, so a shared machine does not stall).")

_ALLOW_HELP = ("Use the model on tokens (or values) from tokenizers whose fingerprints differ from "
               "the ones it was trained on, with a warning, instead of failing.")


@hookimpl
def astromodal_register_commands(cli: Any) -> None:
    @cli.command()
    @click.option("--tokens", "tokens", required=True, help="Token store (parquet).")
    @click.option("--config", "config", required=True, help="model.yaml: model preset/dims and training settings.")
    @click.option("--out", "out", required=True, help="Output directory (checkpoint, history, model/).")
    @click.option("--tokenizers", "tokenizers", default=None, metavar="DIR",
                  help="Fitted tokenizer set the store was encoded with: keys and vocabularies come "
                       "from it, and the store is checked against its fingerprints.")
    @click.option("--allow-fingerprint-mismatch", "allow_mismatch", is_flag=True, help=_ALLOW_HELP)
    @click.option("--no-resume", is_flag=True, help="Start over even if OUT holds a checkpoint.")
    @click.option("--device", default=None, help="torch device (default: cuda when present, else cpu).")
    @click.option("--threads", type=click.IntRange(min=1), default=None, help=_THREADS_HELP)
    @click.option("--quiet", is_flag=True, help="No progress bar.")
    @click.option("--json", "as_json", is_flag=True, help="Print a JSON summary for scripts.")
    def train(
        tokens: str, config: str, out: str, tokenizers: str | None, allow_mismatch: bool, no_resume: bool,
        device: str | None, threads: int | None, quiet: bool, as_json: bool,
    ) -> None:
        """Train the model on a token store (4M-style masked training). Works under torchrun.

        The model takes its token keys, vocabularies and tokenizer fingerprints from the fitted
        state: the store's record, or the --tokenizers set (the store checked against it).
        """
        import torch.distributed as dist

        from .train import train_model

        model, history = train_model(
            tokens, config, out, tokenizers=tokenizers, allow_mismatch=allow_mismatch,
            resume=not no_resume, progress=not quiet, device=device, threads=threads,
        )
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
            "best": history.get("best"),
            "stopped_early": history.get("stopped_early"),
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
        if summary["best"]:
            stopped = f", stopped early at step {summary['stopped_early']}" if summary["stopped_early"] else ""
            click.echo(f"best validation score {summary['best']['score']:.4f} at step {summary['best']['step']}"
                       f" (the saved model){stopped}")
        click.echo(f"model saved to {out}/model")

    @cli.command()
    @click.option("--model", "model_dir", required=True, help="Directory written by save_pretrained.")
    @click.option("--tokens", "tokens", required=True, help="Token store (parquet).")
    @click.option("--out", "out", required=True, help="Output parquet: id + embedding.")
    @click.option("--batch-size", default=256, show_default=True)
    @click.option("--num-encoder-tokens", default=600, show_default=True)
    @click.option("--exclude", multiple=True, metavar="KEY",
                  help="A token key not to use as input (repeatable), e.g. --exclude tok_z.")
    @click.option("--allow-fingerprint-mismatch", "allow_mismatch", is_flag=True, help=_ALLOW_HELP)
    @click.option("--threads", type=click.IntRange(min=1), default=None, help=_THREADS_HELP)
    @click.option("--quiet", is_flag=True, help="No progress bar.")
    @click.option("--json", "as_json", is_flag=True, help="Print a JSON summary for scripts.")
    def embed(
        model_dir: str, tokens: str, out: str, batch_size: int, num_encoder_tokens: int, exclude: tuple[str, ...],
        allow_mismatch: bool, threads: int | None, quiet: bool, as_json: bool,
    ) -> None:
        """Write pooled embeddings of every row of a token store (checked against the model)."""
        from astromodal_core.store import store_metadata

        from .inference import write_embeddings
        from .model import AstroModel
        from .threads import torch_threads

        meta = store_metadata(tokens)
        model = AstroModel.from_pretrained(model_dir, tokens=tokens, allow_mismatch=allow_mismatch)
        with _quiet_repeats(), torch_threads(threads):
            rows = write_embeddings(
                model, tokens, out, id_col=meta["id_col"], batch_size=batch_size,
                num_encoder_tokens=num_encoder_tokens, progress=not quiet, allow_mismatch=allow_mismatch,
                exclude=exclude,
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
    @click.option("--tokenizers", "tokenizers", default=None, metavar="DIR",
                  help="Fitted tokenizer set: the target's physical values from its tokenizer's token_values.")
    @click.option("--tokenizer", "tokenizer", multiple=True, metavar="NAME=PATH",
                  help="A saved tokenizer by registered name (e.g. scalar=tok/scalar.npz) giving the "
                       "target's physical values (repeatable; the one writing the target is used).")
    @click.option("--values", default=None, help=".npy/.npz of per-token physical values (npz: one array per key).")
    @click.option("--batch-size", default=256, show_default=True)
    @click.option("--num-encoder-tokens", default=600, show_default=True)
    @click.option("--exclude", multiple=True, metavar="KEY",
                  help="A token key not to use as input (repeatable), e.g. --exclude tok_spectrum_desi_b.")
    @click.option("--probs", "with_probs", is_flag=True,
                  help="Also write the whole predicted distribution (column probs: one probability per "
                       "token id), for PIT / CRPS calibration checks.")
    @click.option("--allow-fingerprint-mismatch", "allow_mismatch", is_flag=True, help=_ALLOW_HELP)
    @click.option("--threads", type=click.IntRange(min=1), default=None, help=_THREADS_HELP)
    @click.option("--quiet", is_flag=True, help="No progress bar.")
    @click.option("--json", "as_json", is_flag=True, help="Print a JSON summary for scripts.")
    def predict(
        model_dir: str, tokens: str, target: str, out: str, tokenizers: str | None, tokenizer: tuple[str, ...],
        values: str | None, batch_size: int, num_encoder_tokens: int, exclude: tuple[str, ...],
        with_probs: bool, allow_mismatch: bool, threads: int | None, quiet: bool, as_json: bool,
    ) -> None:
        """Predict one token key for every row of a token store from its other keys.

        The model is checked against the store, and a tokenizer giving values against the
        fingerprint the model records for the target.
        """
        from astromodal_core.store import store_metadata

        from .inference import write_predictions
        from .model import AstroModel
        from .threads import torch_threads
        from .values import values_source_fingerprint

        meta = store_metadata(tokens)
        model = AstroModel.from_pretrained(model_dir, tokens=tokens, allow_mismatch=allow_mismatch)
        codec = _load_values(values, tokenizers, tokenizer, target)
        fp = values_source_fingerprint(codec, target) if codec is not None else None
        if fp is not None:  # the values must come from the tokenizer that made the target's tokens
            model.check_fingerprints({target: fp}, where=f"the tokenizer giving the values of {target!r}",
                                     allow_mismatch=allow_mismatch)
        with _quiet_repeats(), torch_threads(threads):
            rows, columns = write_predictions(
                model, tokens, target, out, id_col=meta["id_col"], codec=codec, batch_size=batch_size,
                num_encoder_tokens=num_encoder_tokens, progress=not quiet, exclude=exclude,
                allow_mismatch=allow_mismatch, probs=with_probs,
            )
        summary = {"out": out, "rows": int(rows), "target": target, "columns": columns}
        if as_json:
            _echo_json(summary)
        else:
            click.echo(f"wrote {summary['rows']} predictions of {target} to {out} ({', '.join(columns)})")
