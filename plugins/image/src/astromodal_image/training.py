"""The autoencoder training loop and its safetensors checkpoints (model + optimizer, resumable).

The recipe: Adam under a one-cycle learning-rate schedule (warm-up to ``lr`` over the first
tenth of the steps, cosine annealing to ``lr / 25e4`` at the last step, momentum cycled
0.95 -> 0.85 -> 0.95), a random flip / 90-degree rotation of every batch, a loss that weights
source pixels and colours (:func:`~astromodal_image.network.recipe_loss`), and, given
validation cutouts, the validation loss after every epoch: the weights kept are those of the
best validation epoch, and training stops after ``patience`` epochs without improvement.

A checkpoint holds ``model.<name>`` tensors, the best weights so far as ``best.<name>``, the
Adam state flattened to ``optim.<param index>.<name>`` tensors, and in its metadata the epoch
counter, the optimizer's param groups, the loss histories, the best epoch and the tokenizer
configuration it belongs to (a resume with another configuration is refused).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from astromodal_core import CodecFormatError
from astromodal_core.serialize import load_safetensors, save_safetensors

from .modality import SCHEDULES
from .network import dihedral, recipe_loss

CHECKPOINT_NAME = "image_autoencoder_checkpoint.safetensors"
_WARMUP = 0.1
_DIV, _FINAL_DIV = 25.0, 1e4
_BETA_MAX, _BETA_MIN = 0.95, 0.85


@dataclass
class TrainResult:
    """What a training run leaves: mean training loss per epoch run, validation loss per epoch
    (empty without validation cutouts), the epoch whose weights were kept (1-based) and whether
    training stopped early."""

    history: list[float] = field(default_factory=list)
    val_history: list[float] = field(default_factory=list)
    best_epoch: int = 0
    stopped_early: bool = False


def one_cycle(step: int, total: int, max_lr: float) -> tuple[float, float]:
    """(learning rate, Adam beta1) at ``step`` of ``total`` (0-based) under the one-cycle schedule."""
    warm = max(1, int(round(_WARMUP * total)))
    start, end = max_lr / _DIV, max_lr / _DIV / _FINAL_DIV
    if step < warm:
        a = (1 - math.cos(math.pi * step / warm)) / 2
        return start + (max_lr - start) * a, _BETA_MAX + (_BETA_MIN - _BETA_MAX) * a
    t = (step - warm) / max(1, total - 1 - warm)
    a = (1 + math.cos(math.pi * min(t, 1.0))) / 2
    return end + (max_lr - end) * a, _BETA_MAX + (_BETA_MIN - _BETA_MAX) * a


def save_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    epoch: int,
    config: Mapping[str, Any],
    result: TrainResult,
    best: Mapping[str, torch.Tensor] | None,
    bad_epochs: int,
) -> None:
    """Write model, best weights and optimizer state after ``epoch`` completed epochs, atomically."""
    tensors = {f"model.{k}": v.detach().cpu().numpy() for k, v in model.state_dict().items()}
    if best is not None:
        tensors.update({f"best.{k}": v.numpy() for k, v in best.items()})
    sd = optimizer.state_dict()
    for idx, state in sd["state"].items():
        for name, value in state.items():
            arr = value.detach().cpu().numpy() if torch.is_tensor(value) else np.asarray(value)
            tensors[f"optim.{idx}.{name}"] = arr
    meta = {
        "epoch": str(int(epoch)),
        "param_groups": json.dumps(sd["param_groups"]),
        "history": json.dumps([float(h) for h in result.history]),
        "val_history": json.dumps([float(h) for h in result.val_history]),
        "best_epoch": str(int(result.best_epoch)),
        "bad_epochs": str(int(bad_epochs)),
        "stopped_early": json.dumps(bool(result.stopped_early)),
        "config": json.dumps(dict(config), sort_keys=True),
    }
    save_safetensors(path, tensors, meta)


def load_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    config: Mapping[str, Any],
) -> tuple[int, TrainResult, dict[str, torch.Tensor] | None, int]:
    """Restore a checkpoint into ``model`` and ``optimizer``; return (epochs done, result so far,
    best weights or None, epochs since the best)."""
    arrays, meta = load_safetensors(path)
    try:
        saved = json.loads(meta["config"])
        epoch = int(meta["epoch"])
        groups = json.loads(meta["param_groups"])
        result = TrainResult(
            history=[float(h) for h in json.loads(meta["history"])],
            val_history=[float(h) for h in json.loads(meta.get("val_history", "[]"))],
            best_epoch=int(meta.get("best_epoch", epoch)),
            stopped_early=bool(json.loads(meta.get("stopped_early", "false"))),
        )
        bad_epochs = int(meta.get("bad_epochs", 0))
    except (KeyError, ValueError, TypeError) as exc:
        raise CodecFormatError(f"{path}: not an image autoencoder checkpoint ({exc})") from exc
    want = json.loads(json.dumps(dict(config), sort_keys=True))
    if saved != want:
        diff = sorted(k for k in set(saved) | set(want) if saved.get(k) != want.get(k))
        raise CodecFormatError(
            f"{path}: checkpoint was written for another configuration (differs in {diff}); "
            "remove it or train with the same settings to resume"
        )
    model.load_state_dict({k[6:]: torch.from_numpy(v.copy()) for k, v in arrays.items() if k.startswith("model.")})
    best = {k[5:]: torch.from_numpy(v.copy()) for k, v in arrays.items() if k.startswith("best.")} or None
    state: dict[int, dict[str, torch.Tensor]] = {}
    for k, v in arrays.items():
        if k.startswith("optim."):
            _, idx, name = k.split(".", 2)
            state.setdefault(int(idx), {})[name] = torch.from_numpy(v.copy())
    optimizer.load_state_dict({"state": state, "param_groups": groups})
    return epoch, result, best, bad_epochs


class _Batches(torch.utils.data.Dataset):
    """Indexable by a whole batch of row indices (used with ``batch_size=None``)."""

    def __init__(self, x: torch.Tensor, valid: torch.Tensor):
        self.x, self.valid = x, valid

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, idx: Any) -> tuple[torch.Tensor, torch.Tensor]:
        i = torch.as_tensor(idx)
        return self.x[i], self.valid[i]


def _loss_fn(loss_kw: Mapping[str, float]) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
    return lambda y, x, v: recipe_loss(y, x, v, **loss_kw)


def validation_loss(
    model: nn.Module, x: torch.Tensor, valid: torch.Tensor, *, device: torch.device,
    loss_kw: Mapping[str, float], chunk: int = 256,
) -> float:
    """The recipe loss on ``x`` (no augmentation), averaged over rows."""
    loss = _loss_fn(loss_kw)
    cuda = device.type == "cuda"
    total = 0.0
    model.eval()
    with torch.inference_mode():
        for s in range(0, len(x), chunk):
            xb = x[s : s + chunk].to(device, non_blocking=True)
            vb = valid[s : s + chunk].to(device, non_blocking=True)
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=cuda):
                _, y = model(xb)
            total += float(loss(y.float(), xb, vb)) * len(xb)
    return total / max(len(x), 1)


def train_autoencoder(
    model: nn.Module,
    x: torch.Tensor,
    valid: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    device: torch.device,
    config: Mapping[str, Any],
    val: tuple[torch.Tensor, torch.Tensor] | None = None,
    augment: bool = True,
    schedule: str = "one_cycle",
    patience: int = 0,
    min_epoch_steps: int = 1,
    latent_noise: float = 0.0,
    loss_kw: Mapping[str, float] | None = None,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    resume: bool = False,
    progress: bool = True,
    on_epoch: Callable[[int, float], None] | None = None,
) -> TrainResult:
    """Train on preprocessed cutouts ``x`` (masked by ``valid``); the model ends with the kept
    weights (the best validation epoch's, or the last epoch's without ``val``).

    ``loss_kw`` are :func:`~astromodal_image.network.recipe_loss`'s weights (default: plain
    masked MSE); ``patience`` 0 never stops early. An epoch runs at least ``min_epoch_steps``
    batches: on a small sample, several passes, each with its own order and flips.
    ``latent_noise`` > 0 adds uniform noise of that width, in units of each latent channel's
    batch standard deviation, to the latents the decoder sees in training (a stand-in for the
    codebook's quantisation: the decoder learns to be robust to it). On CUDA: pinned host memory, non-blocking
    copies and bf16 autocast. The batch order and flips of each epoch depend only on ``seed``
    and the epoch number, so a resumed run matches an unbroken one.
    """
    from tqdm.auto import tqdm

    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    loss_kw = dict(loss_kw or {"source_level": math.inf, "source_weight": 0.0, "colour_weight": 0.0})
    loss_fn = _loss_fn(loss_kw)
    cuda = device.type == "cuda"
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    start, result, best, bad = 0, TrainResult(), None, 0
    ckpt = Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir is not None else None
    if ckpt is not None and resume and ckpt.is_file():
        start, result, best, bad = load_checkpoint(ckpt, model, optimizer, config=config)
        model.to(device)
    loader_kw: dict[str, Any] = {"batch_size": None, "pin_memory": cuda}
    dataset = _Batches(x, valid)
    n = len(x)
    per_pass = (n + batch_size - 1) // batch_size
    passes = max(1, -(-int(min_epoch_steps) // per_pass))
    per_epoch = per_pass * passes
    total_steps = per_epoch * epochs
    for epoch in range(start, epochs):
        if result.stopped_early:
            break
        batches = []
        for p in range(passes):
            perm = np.random.default_rng([seed, epoch] if p == 0 else [seed, epoch, 2, p]).permutation(n)
            batches += [perm[i : i + batch_size].tolist() for i in range(0, n, batch_size)]
        flips = np.random.default_rng([seed, epoch, 1]).integers(0, 8, len(batches)) if augment else None
        loader = torch.utils.data.DataLoader(dataset, sampler=batches, **loader_kw)
        gen = torch.Generator().manual_seed(int(np.random.default_rng([seed, epoch, 3]).integers(2**62)))
        model.train()
        total, count = 0.0, 0
        bar = tqdm(loader, total=len(batches), desc=f"image AE epoch {epoch + 1}/{epochs}",
                   disable=not progress, leave=False)
        for b, (xb, vb) in enumerate(bar):
            if schedule == "one_cycle":
                rate, beta1 = one_cycle(epoch * per_epoch + b, total_steps, lr)
                for group in optimizer.param_groups:
                    group["lr"] = rate
                    group["betas"] = (beta1, group["betas"][1])
            xb = xb.to(device, non_blocking=True)
            vb = vb.to(device, non_blocking=True)
            if flips is not None and flips[b]:
                xb, vb = dihedral(xb, int(flips[b])), dihedral(vb, int(flips[b]))
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=cuda):
                if latent_noise:
                    z = model.encoder(xb)
                    spread = z.detach().float().std(dim=(0, 2, 3), keepdim=True)
                    u = torch.rand(z.shape, generator=gen, device="cpu").to(z.device, z.dtype) - 0.5
                    y = model.decoder(z + latent_noise * spread.to(z.dtype) * u)
                else:
                    _, y = model(xb)
            loss = loss_fn(y.float(), xb, vb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(xb)
            count += len(xb)
            bar.set_postfix(loss=f"{total / count:.4f}")
        result.history.append(total / max(count, 1))
        if val is not None and len(val[0]):
            v = validation_loss(model, val[0], val[1], device=device, loss_kw=loss_kw)
            result.val_history.append(v)
            if best is None or v < min(result.val_history[:-1], default=math.inf):
                best = {k: t.detach().cpu().clone() for k, t in model.state_dict().items()}
                result.best_epoch, bad = epoch + 1, 0
            else:
                bad += 1
            result.stopped_early = bool(patience) and bad >= patience and epoch + 1 < epochs
        else:
            result.best_epoch = epoch + 1
        if ckpt is not None:
            save_checkpoint(ckpt, model, optimizer, epoch=epoch + 1, config=config, result=result,
                            best=best, bad_epochs=bad)
        if on_epoch is not None:
            on_epoch(epoch + 1, result.history[-1])
    if best is not None:
        model.load_state_dict(best)
    model.eval()
    return result
