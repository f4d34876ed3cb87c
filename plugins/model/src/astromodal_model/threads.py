"""How many CPU threads torch uses for training, embedding and prediction."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from astromodal_core.errors import ConfigError


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity), else ``os.cpu_count()``."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def default_threads() -> int:
    """Half the usable cores (shared by the processes of a ``torchrun`` node), at least 1 and
    at most 8.

    torch's own default (every core) collapses when another process wants one: its worker
    threads wait on each other, and a step that took 0.05 s took about 1 s on a shared 2-core
    machine. Leaving half the cores free avoids that; pass ``threads`` (CLI ``--threads``) to
    use more on a machine of your own.
    """
    local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1))
    return max(1, min(8, usable_cores() // (2 * local)))


def check_threads(threads: int | None) -> int:
    """``threads``, or :func:`default_threads` for None; a ConfigError for anything but an int >= 1."""
    if threads is None:
        return default_threads()
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ConfigError(f"threads must be a positive int, got {threads!r}")
    return threads


@contextmanager
def torch_threads(threads: int | None) -> Iterator[int]:
    """Run the block with ``threads`` torch intra-op threads (None: :func:`default_threads`),
    restoring the previous setting afterwards; yields the number used."""
    import torch

    n = check_threads(threads)
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield n
    finally:
        torch.set_num_threads(old)
