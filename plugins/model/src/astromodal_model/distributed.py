"""Run :func:`train_model` in several CPU processes with the gloo backend (tests, debugging).

Real multi-GPU runs use ``torchrun`` (see the README); this helper starts ``world_size``
processes with ``torch.multiprocessing.spawn`` and the same environment torchrun would set.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _worker(rank: int, world_size: int, port: int, args: dict[str, Any]) -> None:
    import torch
    import torch.distributed as dist

    from .train import train_model

    os.environ.update(
        {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
         "WORLD_SIZE": str(world_size), "LOCAL_RANK": str(rank)}
    )
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        _, history = train_model(
            args["store_path"], args["config"], args["out_dir"], progress=False, device="cpu",
            resume=False,
        )
        if rank == 0:
            Path(args["out_dir"], "ddp_history.json").write_text(json.dumps(history))
    finally:
        dist.destroy_process_group()


def spawn_cpu_training(
    store_path: str | os.PathLike[str],
    config: dict[str, Any],
    out_dir: str | os.PathLike[str],
    *,
    world_size: int = 2,
) -> dict[str, Any]:
    """Train with ``world_size`` gloo processes on CPU; return rank 0's history."""
    import torch.multiprocessing as mp

    args = {"store_path": str(store_path), "config": config, "out_dir": str(out_dir)}
    mp.spawn(_worker, args=(world_size, _free_port(), args), nprocs=world_size, join=True)
    return json.loads(Path(out_dir, "ddp_history.json").read_text())
