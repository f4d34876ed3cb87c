"""Per-stage profile of a benchmark's end-to-end run (shared by the bench_*.py scripts).

A :class:`StageProfile` times named stages (read, convert, mask, kernel, assemble, write...)
of the real code path: :meth:`StageProfile.patch` swaps functions of a module or class for
timed wrappers while a ``with`` block runs, so the library needs no profiling hooks::

    prof = StageProfile()
    with prof.patch([(tokenizer_module, "iter_batches", "read"),
                     (quantile_module, "_encode_kernel", "kernel")]):
        with prof.run():
            tok.encode(path)
    print(prof.report("encode(path)"))

Times are exclusive (a stage called inside another is not counted twice) and summed over
calls; stages that run on worker threads are summed over threads, so they may exceed the wall
time when they overlap the main thread. ``rest`` is the main thread's wall time outside every
stage (Python glue, waiting on workers).
"""

from __future__ import annotations

import functools
import inspect
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any

__all__ = ["StageProfile", "load_average"]


def load_average() -> str:
    """The 1/5/15-minute load averages and the core count, e.g. ``"load 5.2 4.8 4.1 on 2 cores"``."""
    import os

    try:
        one, five, fifteen = os.getloadavg()
    except OSError:  # pragma: no cover - platforms without getloadavg
        return "load unknown"
    return f"load {one:.1f} {five:.1f} {fifteen:.1f} on {os.cpu_count()} cores"


class _Frame:
    __slots__ = ("name", "start", "cpu", "child", "child_cpu")

    def __init__(self, name: str) -> None:
        self.name = name
        self.start = time.perf_counter()
        self.cpu = time.thread_time()
        self.child = 0.0
        self.child_cpu = 0.0


class StageProfile:
    """Exclusive seconds and calls per named stage, over every thread."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.worker_seconds: dict[str, float] = defaultdict(float)
        self.cpu_seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.wall = 0.0
        self.cpu = 0.0
        self._main = threading.get_ident()
        self._local = threading.local()
        self._lock = threading.Lock()

    # -- timing ------------------------------------------------------------------------------
    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time the block as stage ``name`` (exclusive of stages entered inside it)."""
        stack = getattr(self._local, "stack", None)
        if stack is None:
            stack = self._local.stack = []
        frame = _Frame(name)
        stack.append(frame)
        try:
            yield
        finally:
            elapsed = time.perf_counter() - frame.start
            cpu = time.thread_time() - frame.cpu
            stack.pop()
            if stack:
                stack[-1].child += elapsed
                stack[-1].child_cpu += cpu
            with self._lock:
                own = elapsed - frame.child
                self.cpu_seconds[name] += cpu - frame.child_cpu
                if threading.get_ident() == self._main:
                    self.seconds[name] += own
                else:
                    self.worker_seconds[name] += own
                self.calls[name] += 1

    @contextmanager
    def run(self) -> Iterator[None]:
        """Time the whole run (the wall time the stages are compared with)."""
        self._main = threading.get_ident()
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.wall += time.perf_counter() - t0
            self.cpu += time.process_time() - c0

    def reset(self) -> None:
        """Forget every time (e.g. after a warm-up run)."""
        self.seconds.clear()
        self.worker_seconds.clear()
        self.cpu_seconds.clear()
        self.calls.clear()
        self.wall = 0.0
        self.cpu = 0.0

    # -- wrapping the code under test ------------------------------------------------------------
    def wrap(self, fn: Callable[..., Any], name: str) -> Callable[..., Any]:
        """``fn`` timed as stage ``name``; a generator function has each step timed instead."""
        if inspect.isgeneratorfunction(fn):
            @functools.wraps(fn)
            def gen_wrapper(*args: Any, **kwargs: Any) -> Iterator[Any]:
                it = fn(*args, **kwargs)
                while True:
                    with self.stage(name):
                        try:
                            item = next(it)
                        except StopIteration:
                            return
                    yield item

            return gen_wrapper

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self.stage(name):
                return fn(*args, **kwargs)

        return wrapper

    @contextmanager
    def patch(self, targets: Sequence[tuple[Any, str, str]]) -> Iterator[StageProfile]:
        """While the block runs, ``owner.attr`` is timed as ``stage`` for every
        ``(owner, attr, stage)``; the originals come back afterwards."""
        with ExitStack() as stack:
            for owner, attr, name in targets:
                original = inspect.getattr_static(owner, attr)
                fn = getattr(owner, attr)
                wrapped = self.wrap(fn, name)
                if isinstance(original, staticmethod):
                    wrapped = staticmethod(wrapped)
                elif isinstance(original, classmethod):
                    wrapped = classmethod(self.wrap(original.__func__, name))
                elif inspect.isclass(owner):
                    wrapped = self.wrap(original, name)
                setattr(owner, attr, wrapped)
                stack.callback(setattr, owner, attr, original)
            yield self

    # -- reporting -----------------------------------------------------------------------------------
    def as_dict(self) -> dict[str, Any]:
        """``{"wall_s", "cpu_s", "rest_s", "stages": {name: {"s", "worker_s", "cpu_s", "calls"}}}``:
        per stage the main thread's and the worker threads' exclusive wall seconds and the CPU
        seconds of the threads that called it (a library's own threads, e.g. pyarrow's decoders,
        count only in the process total ``cpu_s``)."""
        names = list(dict.fromkeys([*self.seconds, *self.worker_seconds]))
        main = sum(self.seconds.values())
        return {
            "wall_s": self.wall,
            "cpu_s": self.cpu,
            "rest_s": max(0.0, self.wall - main),
            "stages": {n: {"s": self.seconds.get(n, 0.0), "worker_s": self.worker_seconds.get(n, 0.0),
                           "cpu_s": self.cpu_seconds.get(n, 0.0), "calls": self.calls.get(n, 0)}
                       for n in names},
        }

    def report(self, title: str, order: Sequence[str] = ()) -> str:
        """A small table: each stage's main-thread seconds (and share of the wall), worker-thread
        seconds, CPU seconds and calls; ``rest`` is the main thread outside every stage."""
        d = self.as_dict()
        wall = d["wall_s"] or float("nan")
        names = [n for n in order if n in d["stages"]] + [n for n in d["stages"] if n not in order]
        lines = [f"  stage profile of {title}: wall {d['wall_s']:.3f} s, process CPU {d['cpu_s']:.3f} s",
                 f"    {'stage':10s} {'main s':>8s} {'% wall':>7s} {'worker s':>9s} {'cpu s':>7s} {'calls':>6s}"]
        for n in names:
            s = d["stages"][n]
            worker = f"{s['worker_s']:9.3f}" if s["worker_s"] else f"{'-':>9s}"
            lines.append(f"    {n:10s} {s['s']:8.3f} {100 * s['s'] / wall:6.1f}% {worker} "
                         f"{s['cpu_s']:7.3f} {s['calls']:6d}")
        lines.append(f"    {'rest':10s} {d['rest_s']:8.3f} {100 * d['rest_s'] / wall:6.1f}%")
        return "\n".join(lines)
