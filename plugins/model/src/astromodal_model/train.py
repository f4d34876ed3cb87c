"""Masked multimodal training: AdamW, warmup + cosine, clipping, bf16 on CUDA, DDP, checkpoints,
validation with the best model kept and early stopping, torch.compile on CUDA."""

from __future__ import annotations

import copy
import json
import math
import os
from collections.abc import Mapping
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from astromodal_core.errors import ConfigError, DataError
from astromodal_core.store import store_metadata

from .config import ModelConfig, TrainConfig, load_model_yaml, split_config
from .data import MaskedTokenDataset, to_device, validation_batches, validation_rows
from .keys import check_fingerprints, check_keys_match, keys_from_json, keys_to_json
from .model import AstroModel
from .threads import torch_threads

CHECKPOINT_FILE = "checkpoint.safetensors"
HISTORY_FILE = "history.json"
MODEL_DIR = "model"


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warmup to ``lr``, then cosine decay to ``lr * min_lr_ratio`` at ``steps``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    span = max(1, cfg.steps - cfg.warmup_steps)
    t = min(1.0, (step - cfg.warmup_steps) / span)
    floor = cfg.lr * cfg.min_lr_ratio
    return floor + 0.5 * (cfg.lr - floor) * (1 + math.cos(math.pi * t))


class _LossModule(nn.Module):
    """Wraps the model so DistributedDataParallel hooks the training forward."""

    def __init__(self, model: AstroModel, ordinal_smoothing: float = 0.0):
        super().__init__()
        self.model = model
        self.ordinal_smoothing = ordinal_smoothing

    def forward(self, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.loss_terms(batch, ordinal_smoothing=self.ordinal_smoothing)


def _dist() -> tuple[int, int]:
    import torch.distributed as dist

    if not dist.is_available():
        return 0, 1
    if not dist.is_initialized() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _all_reduce(t: torch.Tensor, world: int) -> torch.Tensor:
    if world > 1:
        import torch.distributed as dist

        dist.all_reduce(t)
    return t


def _configs(config: Any, train_config: Any) -> tuple[ModelConfig, TrainConfig]:
    if isinstance(config, (str, os.PathLike)) and Path(config).suffix in (".yaml", ".yml", ".json"):
        mconf, tconf = load_model_yaml(config)
    elif isinstance(config, Mapping) and not isinstance(config, ModelConfig):
        mconf, tconf = split_config(config)
    elif isinstance(config, ModelConfig):
        mconf, tconf = config, TrainConfig()
    elif isinstance(config, str):
        mconf, tconf = ModelConfig.preset(config), TrainConfig()
    elif config is None:
        mconf, tconf = ModelConfig.preset("tiny"), TrainConfig()
    else:
        raise ConfigError(f"cannot read a model config from {type(config).__name__}")
    if train_config is not None:
        tconf = train_config if isinstance(train_config, TrainConfig) else TrainConfig.from_dict(
            {**tconf.to_dict(), **dict(train_config)}
        )
    return mconf, tconf


def _decay_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (decay if p.ndim >= 2 and not name.startswith("token_embed.") else no_decay).append((name, p))
    return [
        {"names": [n for n, _ in decay], "params": [p for _, p in decay], "weight_decay": weight_decay},
        {"names": [n for n, _ in no_decay], "params": [p for _, p in no_decay], "weight_decay": 0.0},
    ]


def save_checkpoint(
    path: Path, model: AstroModel, opt: torch.optim.Optimizer, step: int, history: dict[str, Any],
    mconf: ModelConfig, tconf: TrainConfig, best: Mapping[str, torch.Tensor] | None = None,
    ema: nn.Module | None = None,
) -> None:
    """Model weights, flattened AdamW state, the best weights so far (``best``) and the
    exponential moving average of the weights (``ema``) in one safetensors file (atomic)."""
    from astromodal_core.serialize import save_safetensors

    arrays = {f"model.{k}": v.detach().float().cpu().numpy() for k, v in model.state_dict().items()}
    for k, v in (best or {}).items():
        arrays[f"best.{k}"] = v.detach().float().cpu().numpy()
    for k, v in (ema.state_dict() if ema is not None else {}).items():
        arrays[f"ema.{k}"] = v.detach().float().cpu().numpy()
    for group in opt.param_groups:
        for name, p in zip(group["names"], group["params"]):
            for sk, sv in opt.state.get(p, {}).items():
                arrays[f"optim.{name}.{sk}"] = np.atleast_1d(torch.as_tensor(sv).detach().float().cpu().numpy())
    meta = {
        "step": step, "history": history, "model_config": mconf.to_dict(),
        "train_config": tconf.to_dict(), "token_keys": keys_to_json(model.token_keys),
        "fingerprints": model.fingerprints,
    }
    save_safetensors(path, arrays, meta)


def load_checkpoint(
    path: Path, model: AstroModel, opt: torch.optim.Optimizer, *, allow_mismatch: bool = False,
    ema: nn.Module | None = None,
) -> tuple[int, dict[str, Any], dict[str, torch.Tensor] | None]:
    """Restore weights, optimizer state and the weights' moving average (into ``ema`` when
    the checkpoint has one); return ``(step, history, best weights or None)``.

    The checkpoint's token keys and fingerprints must be the model's (the run resumes on
    tokens from the same tokenizers); a fingerprint difference warns with ``allow_mismatch``.
    """
    from astromodal_core.serialize import load_safetensors

    arrays, meta = load_safetensors(path)
    where = f"the token store of this run (resuming {path})"
    if "token_keys" in meta:
        check_keys_match(keys_from_json(json.loads(meta["token_keys"])), model.token_keys, where=where)
    if "fingerprints" in meta:
        check_fingerprints(json.loads(meta["fingerprints"]), model.fingerprints, model.key_names,
                           where=where, allow_mismatch=allow_mismatch)
    state = {k[len("model."):]: torch.from_numpy(np.array(v)) for k, v in arrays.items() if k.startswith("model.")}
    model.load_state_dict(state)
    opt_state: dict[int, dict[str, torch.Tensor]] = {}
    idx = 0
    dev = model.device
    for group in opt.param_groups:
        for name, p in zip(group["names"], group["params"]):
            entry = {}
            for sk in ("step", "exp_avg", "exp_avg_sq"):
                a = arrays.get(f"optim.{name}.{sk}")
                if a is not None:
                    t = torch.from_numpy(np.array(a))
                    entry[sk] = t.reshape(()) if sk == "step" else t.reshape(p.shape).to(dev)
            if entry:
                opt_state[idx] = entry
            idx += 1
    sd = opt.state_dict()
    opt.load_state_dict({"state": opt_state, "param_groups": sd["param_groups"]})
    best = {k[len("best."):]: torch.from_numpy(np.array(v)) for k, v in arrays.items() if k.startswith("best.")}
    averaged = {k[len("ema."):]: torch.from_numpy(np.array(v)) for k, v in arrays.items() if k.startswith("ema.")}
    if ema is not None and averaged:
        ema.load_state_dict(averaged)
    return int(json.loads(meta["step"])), json.loads(meta["history"]), best or None


@torch.no_grad()
def validate(model: AstroModel, batches: list[dict[str, np.ndarray]], device: torch.device) -> dict[str, float]:
    """Mean cross entropy per token key over fixed validation batches."""
    model.eval()
    K = len(model.key_names)
    sums = torch.zeros(K, dtype=torch.float64)
    counts = torch.zeros(K, dtype=torch.float64)
    for b in batches:
        with _autocast(device):
            s, c = model.loss_terms(to_device(b, device))
        sums += s.double().cpu()
        counts += c.double().cpu()
    model.train()
    return {model.key_names[k]: float(sums[k] / counts[k]) for k in range(K) if counts[k] > 0}


def selection_score(val: Mapping[str, float], focus_val: Mapping[str, float], focus: list[str]) -> float:
    """The validation figure the best model is chosen by: the focus keys' mean loss (predicted
    from all other keys) when there are focus keys, else the mean over every key."""
    if focus:
        got = [focus_val[k] for k in focus if k in focus_val]
        if got:
            return float(np.mean(got))
    return float(np.mean(list(val.values()))) if val else float("inf")


def compile_blocks(model: AstroModel, mode: str | bool | None, device: torch.device) -> bool:
    """``torch.compile`` the encoder and decoder blocks in place (dynamic shapes: batches of
    rows with different token counts). ``mode``: True, False, or "auto"/None (CUDA only).
    Returns whether it compiled."""
    on = device.type == "cuda" if mode in (None, "auto") else bool(mode)
    if not on or not hasattr(torch, "compile"):
        return False
    for block in [*model.encoder, *model.decoder]:
        block.compile(dynamic=True)
    return True


def _autocast(device: torch.device) -> Any:
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def train_model(
    store_path: str | os.PathLike[str],
    config: ModelConfig | Mapping[str, Any] | str | os.PathLike[str] | None = None,
    out_dir: str | os.PathLike[str] = "model_out",
    *,
    train_config: TrainConfig | Mapping[str, Any] | None = None,
    token_keys: Any = None,
    tokenizers: Any = None,
    allow_mismatch: bool = False,
    resume: bool = True,
    progress: bool = True,
    device: str | torch.device | None = None,
    threads: int | None = None,
) -> tuple[AstroModel, dict[str, Any]]:
    """Train on a token store; return ``(model, history)``.

    ``config``: a model.yaml path, a mapping (``{model: ..., train: ...}`` or flat), a
    ModelConfig or a preset name. The model is assembled from the fitted state: the keys the
    store records (written by the fitted tokenizers), or with ``tokenizers`` (a fitted
    :class:`TokenizerSet` or its directory) the set's fitted tokenizers, the store then checked
    against the set (key records and fingerprints; ``allow_mismatch`` turns a fingerprint
    difference into a warning). ``train.token_keys`` or ``token_keys=`` narrow the keys. The
    model records the tokenizer fingerprints. Writes ``out_dir/checkpoint.safetensors``
    (resumed from when present and ``resume``), ``out_dir/history.json`` and the final
    ``out_dir/model/`` (``AstroModel.from_pretrained``). History: ``step``, ``loss``, ``lr``
    per step and ``val`` (``{"step", "loss": {key: mean CE}}`` entries). Under torchrun
    (``WORLD_SIZE`` > 1) it runs DistributedDataParallel; ``batch_size`` is the global batch.

    Every ``val_every`` steps the validation loss is measured; the saved and returned model is
    the best one (``keep_best``, the default), and ``early_stopping`` > 0 stops after that many
    validations without improvement (history: ``best`` = ``{"step", "score"}``,
    ``stopped_early`` = the step, or None). ``threads`` (default: the config's ``threads``,
    else :func:`~astromodal_model.threads.default_threads`) sets torch's CPU threads for the
    run. On CUDA the transformer blocks are compiled (``compile: auto``), the forward runs in
    bf16 autocast and AdamW is fused.
    """
    mconf, tconf = _configs(config, train_config)
    with torch_threads(threads if threads is not None else tconf.threads):
        return _train(store_path, mconf, tconf, out_dir, token_keys=token_keys, tokenizers=tokenizers,
                      allow_mismatch=allow_mismatch, resume=resume, progress=progress, device=device)


def _train(
    store_path: str | os.PathLike[str],
    mconf: ModelConfig,
    tconf: TrainConfig,
    out_dir: str | os.PathLike[str],
    *,
    token_keys: Any,
    tokenizers: Any,
    allow_mismatch: bool,
    resume: bool,
    progress: bool,
    device: str | torch.device | None,
) -> tuple[AstroModel, dict[str, Any]]:
    rank, world = _dist()
    if device is None:
        device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    meta = store_metadata(store_path)
    store_keys = meta["token_keys"]
    wanted = token_keys if token_keys is not None else tconf.token_keys
    names = list(store_keys) if wanted is None else [getattr(k, "name", k) for k in wanted]
    missing = [n for n in names if n not in store_keys]
    if missing:
        raise DataError(f"{store_path}: token store has no key {missing[0]!r}; it has {sorted(store_keys)}")
    if tconf.batch_size % world:
        raise ConfigError(f"batch_size {tconf.batch_size} is not divisible by the world size {world}")
    out_dir = Path(out_dir)
    torch.manual_seed(tconf.seed)
    if tokenizers is not None:
        model = AstroModel.from_tokenizer_set(tokenizers, mconf, token_keys=names)
        model.check_compatible(store_keys, meta.get("fingerprints"), f"token store {store_path}",
                               allow_mismatch=allow_mismatch)
    else:
        model = AstroModel.from_store(store_path, mconf, token_keys=names)
    keys = dict(model.token_keys)
    model = model.to(device)
    groups = _decay_groups(model, tconf.weight_decay)
    fused = {"fused": True} if device.type == "cuda" else {"foreach": True}
    opt = torch.optim.AdamW(groups, lr=tconf.lr, betas=(0.9, 0.95), **fused)
    history: dict[str, Any] = {"step": [], "loss": [], "lr": [], "val": [], "best": None, "stopped_early": None}
    start = 0
    best_state: dict[str, torch.Tensor] | None = None
    ema = copy.deepcopy(model).eval() if tconf.ema_decay > 0 else None
    if ema is not None:
        ema.requires_grad_(False)
    ckpt = out_dir / CHECKPOINT_FILE
    if resume and ckpt.is_file():
        start, history, best_state = load_checkpoint(ckpt, model, opt, allow_mismatch=allow_mismatch, ema=ema)
        history.setdefault("best", None)
        history.setdefault("stopped_early", None)
    if tconf.ordinal_smoothing > 0 and not any(k.ordinal for k in keys.values()):
        import warnings

        warnings.warn(
            f"{store_path}: ordinal_smoothing has no effect: no trained token key is ordinal "
            "(a store encoded before TokenKey.ordinal existed? re-encode it)", stacklevel=2,
        )
    focus = list(tconf.focus_keys or [])
    unknown = [k for k in focus if k not in keys]
    if unknown:
        raise ConfigError(f"train config: focus key {unknown[0]!r} is not a trained token key; "
                          f"keys: {sorted(keys)}")
    compiled = compile_blocks(model, tconf.compile, device)
    history["compiled"] = compiled
    wrapped: nn.Module = _LossModule(model, tconf.ordinal_smoothing)
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        wrapped = DistributedDataParallel(
            wrapped, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True
        )
    val = validation_rows(
        store_path, keys, val_fraction=tconf.val_fraction, seed=tconf.seed,
        max_rows=tconf.val_max_rows, chunk_rows=tconf.chunk_rows,
    )
    val_batches = [] if val is None else validation_batches(
        *val, model.key_names, batch_size=max(1, tconf.batch_size // world),
        input_budget=tconf.input_budget, target_budget=tconf.target_budget,
        alpha=tconf.dirichlet_alpha, seed=tconf.seed, focus=focus, focus_prob=tconf.focus_prob,
    )
    focus_batches = [] if val is None or not focus else validation_batches(
        *val, model.key_names, batch_size=max(1, tconf.batch_size // world),
        input_budget=tconf.input_budget, target_budget=tconf.target_budget,
        alpha=tconf.dirichlet_alpha, seed=tconf.seed, focus=focus, focus_prob=1.0,
    )
    since_best = 0
    if history["val"] and history["best"] is not None:
        since_best = sum(1 for v in history["val"] if v["step"] > history["best"]["step"])
    remaining = 0 if history["stopped_early"] is not None else tconf.steps - start
    dataset = MaskedTokenDataset(
        store_path, keys, model.key_names, batch_size=tconf.batch_size,
        input_budget=tconf.input_budget, target_budget=tconf.target_budget,
        alpha=tconf.dirichlet_alpha, seed=tconf.seed, val_fraction=tconf.val_fraction,
        chunk_rows=tconf.chunk_rows, start_step=start, steps=max(remaining, 0), rank=rank, world_size=world,
        focus=focus, focus_prob=tconf.focus_prob,
    )
    loader = torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=tconf.num_workers)
    from tqdm.auto import tqdm

    bar = tqdm(total=tconf.steps, initial=start, disable=not progress or rank != 0, desc="train", unit="step")
    model.train()
    main = rank == 0
    for batch in loader if remaining > 0 else []:
        step = int(batch["step"])
        lr = lr_at(step, tconf)
        for g in opt.param_groups:
            g["lr"] = lr
        b = to_device(batch, device)
        with _autocast(device):
            sums, counts = wrapped(b)
        n_global = _all_reduce(counts.detach().clone(), world)
        present = n_global > 0
        if not bool(present.any()):
            bar.update(1)
            continue
        k_present = present.sum().clamp_min(1)
        loss = (sums / n_global.clamp_min(1.0))[present].sum() / k_present * world
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if tconf.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), tconf.grad_clip)
        opt.step()
        if ema is not None:
            decay = min(tconf.ema_decay, (1.0 + step) / (10.0 + step))
            with torch.no_grad():
                torch._foreach_lerp_(list(ema.parameters()), list(model.parameters()), 1.0 - decay)
        reported = float(_all_reduce(loss.detach().clone(), world) / world)
        if not math.isfinite(reported):
            raise FloatingPointError(f"training loss is {reported} at step {step}")
        history["step"].append(step)
        history["loss"].append(reported)
        history["lr"].append(lr)
        bar.update(1)
        bar.set_postfix(loss=f"{reported:.4f}")
        done = step + 1
        stop = False
        if val_batches and (done % tconf.val_every == 0 or done == tconf.steps):
            judged = model if ema is None else ema  # the weights that would be saved
            entry: dict[str, Any] = {"step": done, "loss": validate(judged, val_batches, device)}
            if focus_batches:
                entry["focus"] = validate(judged, focus_batches, device)
            entry["score"] = selection_score(entry["loss"], entry.get("focus", {}), focus)
            history["val"].append(entry)
            if history["best"] is None or entry["score"] < history["best"]["score"]:
                history["best"] = {"step": done, "score": entry["score"]}
                since_best = 0
                if tconf.keep_best:
                    best_state = {k: v.detach().clone() for k, v in judged.state_dict().items()}
            else:
                since_best += 1
                stop = tconf.early_stopping > 0 and since_best >= tconf.early_stopping
                if stop:
                    history["stopped_early"] = done
        last = done == tconf.steps or stop
        if main and (done % tconf.checkpoint_every == 0 or last):
            save_checkpoint(ckpt, model, opt, done, history, mconf, tconf, best_state, ema)
        if world > 1 and (done % tconf.checkpoint_every == 0 or last):
            torch.distributed.barrier()
        if stop:
            break
    bar.close()
    if tconf.keep_best and best_state is not None:
        model.load_state_dict(best_state)
    elif ema is not None:
        model.load_state_dict(ema.state_dict())
    if main:
        model.save_pretrained(out_dir / MODEL_DIR)
        from astromodal_core.serialize import atomic_path

        with atomic_path(out_dir / HISTORY_FILE, suffix=".json") as tmp:
            tmp.write_text(json.dumps(history))
    model.eval()
    return model, history
