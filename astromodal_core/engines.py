"""Execution engines: the same task functions on local processes or a dask cluster.

- :class:`LocalEngine`: a process pool started fresh (forkserver / spawn, never fork), or
  the calling process with ``workers=1``.
- :class:`DaskEngine`: a dask.distributed cluster by scheduler address, or a local one.

Both offer ``imap_unordered`` (``(index, result)`` pairs as tasks finish, so a caller can fold
results while memory holds only a few) and ``map`` (results in input order). Tasks receive
plain data (names, config dicts, paths), so they travel to any worker with the same packages.
"""

from __future__ import annotations

import abc
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from .errors import ConfigError


def _bar(total: int, desc: str, progress: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="file", disable=not progress, leave=False)


class Engine(abc.ABC):
    """Runs a function over items."""

    name = "engine"

    @abc.abstractmethod
    def imap_unordered(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> Iterator[tuple[int, Any]]:
        """Yield ``(index, fn(items[index]))`` as tasks finish; a failed task raises here."""

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any], *, desc: str = "",
            progress: bool = True) -> list[Any]:
        """Apply ``fn`` to every item; results in input order."""
        items = list(items)
        results: list[Any] = [None] * len(items)
        with _bar(len(items), desc, progress) as bar:
            for i, result in self.imap_unordered(fn, items):
                results[i] = result
                bar.update()
        return results

    def close(self) -> None:  # noqa: B027 - engines without workers have nothing to release
        """Release workers."""

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _init_worker(path: list[str], plugins: dict[str, str]) -> None:
    """Give a fresh worker process the parent's import path and the module plugins the parent
    registered in-process (tests, notebooks), so its registry is the parent's."""
    import importlib
    import sys

    sys.path[:] = path
    if plugins:
        from .registry import register_plugin

        for name, module in plugins.items():
            register_plugin(importlib.import_module(module), name)


class LocalEngine(Engine):
    """A local process pool; ``workers=1`` runs the tasks in this process (no pool).

    Workers start from a fresh interpreter (``forkserver``, or ``spawn`` where there is none),
    never by forking this process: a fork taken after numba, OpenMP or torch started their
    thread pools can deadlock. A worker that dies (killed, out of memory) is reported as a
    :class:`~astromodal_core.errors.AstromodalError` naming the item it was running.
    """

    name = "local"

    def __init__(self, workers: int | None = None):
        if workers is not None and workers < 1:
            raise ConfigError(f"workers must be >= 1, got {workers}")
        self.workers = max(1, workers if workers is not None else (os.cpu_count() or 1))
        self._pool: Any = None

    def _get_pool(self) -> Any:
        if self._pool is None:
            import multiprocessing as mp
            import sys
            from concurrent.futures import ProcessPoolExecutor

            from .registry import inprocess_plugins

            method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers, mp_context=mp.get_context(method),
                initializer=_init_worker, initargs=(list(sys.path), inprocess_plugins()))
        return self._pool

    def imap_unordered(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> Iterator[tuple[int, Any]]:
        from concurrent.futures import as_completed
        from concurrent.futures.process import BrokenProcessPool

        from .errors import AstromodalError

        items = list(items)
        if self.workers == 1 or len(items) <= 1:
            for i, item in enumerate(items):
                yield i, fn(item)
            return
        pool = self._get_pool()
        futures = {pool.submit(fn, item): i for i, item in enumerate(items)}
        try:
            for fut in as_completed(futures):
                i = futures.pop(fut)
                try:
                    result = fut.result()
                except BrokenProcessPool as exc:
                    self._pool = None
                    raise AstromodalError(
                        f"a worker process died (killed or out of memory) while running {items[i]!r}"
                    ) from exc
                yield i, result
        finally:
            for fut in futures:
                fut.cancel()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None


def _register_in_worker(plugins: dict[str, str]) -> None:
    """Register the parent's in-process module plugins in a dask worker (its path is its own)."""
    import importlib

    from .registry import get_plugin_manager, register_plugin

    pm = get_plugin_manager()
    for name, module in plugins.items():
        if not pm.has_plugin(name):
            register_plugin(importlib.import_module(module), name)


def _plugins_worker_plugin(plugins: dict[str, str]) -> Any:
    from distributed import WorkerPlugin

    class AstromodalPlugins(WorkerPlugin):
        """Registers the parent's in-process plugins in every worker, restarted ones too."""

        name = "astromodal-plugins"

        def setup(self, worker: Any) -> None:
            _register_in_worker(plugins)

    return AstromodalPlugins()


class DaskEngine(Engine):
    """The same tasks on a dask.distributed cluster: ``address`` of its scheduler, or none to
    start a local cluster of ``workers`` processes (one thread each, loopback only).

    Module plugins registered in this process (tests, notebooks) are registered in every
    worker, as :class:`LocalEngine` does. A worker that dies while running a task (killed, out
    of memory) is retried by dask up to ``distributed.scheduler.allowed-failures`` times; then
    an :class:`~astromodal_core.errors.AstromodalError` names the item.
    """

    name = "dask"

    def __init__(self, address: str | None = None, *, workers: int | None = None):
        try:
            from distributed import Client, LocalCluster
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ConfigError(
                "the dask engine needs dask.distributed: pip install 'astromodal-core[distributed]'"
            ) from exc
        if workers is not None and workers < 1:
            raise ConfigError(f"workers must be >= 1, got {workers}")
        del Client, LocalCluster  # imported above only to fail early without distributed
        self.cluster: Any = None
        self.workers = workers
        self.address = address
        self._client: Any = None
        if address is not None:
            self._connect(address)  # a wrong address fails here; a local cluster starts on first use

    def _connect(self, address: str) -> None:
        from distributed import Client

        self._client = Client(address)
        from .registry import inprocess_plugins

        plugins = inprocess_plugins()
        if plugins:
            self._client.register_plugin(_plugins_worker_plugin(plugins))

    @property
    def client(self) -> Any:
        """The dask client (a local cluster is started on first use)."""
        if self._client is None:
            from distributed import LocalCluster

            self.cluster = LocalCluster(n_workers=self.workers or os.cpu_count() or 1, threads_per_worker=1,
                                        processes=True, host="127.0.0.1", dashboard_address=None)
            self.address = self.cluster.scheduler_address
            try:
                self._connect(self.address)
            except BaseException:
                self.cluster.close()
                self.cluster = None
                raise
        return self._client

    def imap_unordered(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> Iterator[tuple[int, Any]]:
        from distributed import KilledWorker
        from distributed import as_completed as dask_completed

        from .errors import AstromodalError

        items = list(items)
        if not items:
            return
        futures = [self.client.submit(fn, item, pure=False) for item in items]
        index = {f.key: i for i, f in enumerate(futures)}
        finished = dask_completed(futures)
        pending = {f.key: f for f in futures}
        del futures  # as_completed holds them; each is released once consumed
        try:
            for fut in finished:
                i = index[fut.key]
                pending.pop(fut.key, None)
                try:
                    result = fut.result()
                except KilledWorker as exc:
                    raise AstromodalError(
                        f"a dask worker died (killed or out of memory) while running {items[i]!r}"
                    ) from exc
                fut.release()
                yield i, result
        finally:
            if pending:  # an error or an early stop: the tasks not yet run are cancelled
                self.client.cancel(list(pending.values()))

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        if self.cluster is not None:
            self.cluster.close()
            self.cluster = None


def make_engine(scheduler: str | None = None, workers: int | None = None, *,
                dask: bool = False) -> Engine:
    """A dask engine when ``scheduler`` is an address (or a local dask cluster of ``workers``
    processes when ``dask``), else a local process pool."""
    if scheduler:
        return DaskEngine(scheduler)
    return DaskEngine(workers=workers) if dask else LocalEngine(workers)
