"""The autoencoder training loop and its safetensors checkpoints (model + optimizer, resumable).

A checkpoint holds ``model.<name>`` tensors, the Adam state flattened to
``optim.<param index>.<name>`` tensors, and in its metadata the epoch counter, the optimizer's
param groups, the loss history and the tokenizer configuration it belongs to (a resume with
another configuration is refused).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from astromodal_core import CodecFormatError
from astromodal_core.serialize import load_safetensors, save_safetensors

from .network import masked_mse

CHECKPOINT_NAME = "image_autoencoder_checkpoint.safetensors"


def save_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    epoch: int,
    config: Mapping[str, Any],
    history: list[float],
) -> None:
    """Write model and optimizer state after ``epoch`` completed epochs, atomically."""
    tensors = {f"model.{k}": v.detach().cpu().numpy() for k, v in model.state_dict().items()}
    sd = optimizer.state_dict()
    for idx, state in sd["state"].items():
        for name, value in state.items():
            arr = value.detach().cpu().numpy() if torch.is_tensor(value) else np.asarray(value)
            tensors[f"optim.{idx}.{name}"] = arr
    meta = {
        "epoch": str(int(epoch)),
        "param_groups": json.dumps(sd["param_groups"]),
        "history": json.dumps([float(h) for h in history]),
        "config": json.dumps(dict(config), sort_keys=True),
    }
    save_safetensors(path, tensors, meta)


def load_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    config: Mapping[str, Any],
) -> tuple[int, list[float]]:
    """Restore a checkpoint into ``model`` and ``optimizer``; return (epochs done, loss history)."""
    arrays, meta = load_safetensors(path)
    try:
        saved = json.loads(meta["config"])
        epoch = int(meta["epoch"])
        groups = json.loads(meta["param_groups"])
        history = [float(h) for h in json.loads(meta["history"])]
    except (KeyError, ValueError) as exc:
        raise CodecFormatError(f"{path}: not an image autoencoder checkpoint ({exc})") from exc
    want = json.loads(json.dumps(dict(config), sort_keys=True))
    if saved != want:
        diff = sorted(k for k in set(saved) | set(want) if saved.get(k) != want.get(k))
        raise CodecFormatError(
            f"{path}: checkpoint was written for another configuration (differs in {diff}); "
            "remove it or train with the same settings to resume"
        )
    model_sd = {k[6:]: torch.from_numpy(v.copy()) for k, v in arrays.items() if k.startswith("model.")}
    model.load_state_dict(model_sd)
    state: dict[int, dict[str, torch.Tensor]] = {}
    for k, v in arrays.items():
        if k.startswith("optim."):
            _, idx, name = k.split(".", 2)
            state.setdefault(int(idx), {})[name] = torch.from_numpy(v.copy())
    optimizer.load_state_dict({"state": state, "param_groups": groups})
    return epoch, history


class _Batches(torch.utils.data.Dataset):
    """Indexable by a whole batch of row indices (used with ``batch_size=None``)."""

    def __init__(self, x: torch.Tensor, valid: torch.Tensor):
        self.x, self.valid = x, valid

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, idx: Any) -> tuple[torch.Tensor, torch.Tensor]:
        i = torch.as_tensor(idx)
        return self.x[i], self.valid[i]


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
    checkpoint_dir: str | os.PathLike[str] | None = None,
    resume: bool = False,
    progress: bool = True,
    on_epoch: Callable[[int, float], None] | None = None,
) -> list[float]:
    """Train on preprocessed cutouts ``x`` (masked by ``valid``); return the mean loss per epoch.

    On CUDA: pinned host memory, non-blocking copies and bf16 autocast. The batch order of each
    epoch depends only on ``seed`` and the epoch number, so a resumed run matches an unbroken one.
    """
    from tqdm.auto import tqdm

    cuda = device.type == "cuda"
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    start, history = 0, []
    ckpt = Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir is not None else None
    if ckpt is not None and resume and ckpt.is_file():
        start, history = load_checkpoint(ckpt, model, optimizer, config=config)
        model.to(device)
    loader_kw: dict[str, Any] = {"batch_size": None, "pin_memory": cuda}
    dataset = _Batches(x, valid)
    n = len(x)
    for epoch in range(start, epochs):
        perm = np.random.default_rng([seed, epoch]).permutation(n)
        batches = [perm[i : i + batch_size].tolist() for i in range(0, n, batch_size)]
        loader = torch.utils.data.DataLoader(dataset, sampler=batches, **loader_kw)
        model.train()
        total, count = 0.0, 0
        bar = tqdm(loader, total=len(batches), desc=f"image AE epoch {epoch + 1}/{epochs}",
                   disable=not progress, leave=False)
        for xb, vb in bar:
            xb = xb.to(device, non_blocking=True)
            vb = vb.to(device, non_blocking=True)
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=cuda):
                _, y = model(xb)
            loss = masked_mse(y.float(), xb, vb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(xb)
            count += len(xb)
            bar.set_postfix(loss=f"{total / count:.4f}")
        history.append(total / max(count, 1))
        if ckpt is not None:
            save_checkpoint(ckpt, model, optimizer, epoch=epoch + 1, config=config, history=history)
        if on_epoch is not None:
            on_epoch(epoch + 1, history[-1])
    model.eval()
    return history
