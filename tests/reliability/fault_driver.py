"""A subprocess that runs core write operations in forked children and breaks them on request.

Started once per test module (imports paid once); the test sends one JSON request per line
on stdin and reads one JSON reply per line on stdout. Every operation runs in a child forked
from this process, so a child can be SIGKILLed (by itself, at a chosen I/O event, or by the
driver, after a delay), or run under a file size limit, without touching the test process.
This process never reads a parquet file or starts a thread pool itself, so forking is safe.

Requests (``op`` names an operation of :data:`OPS`, ``args`` its arguments):

- ``{"mode": "count", "op", "args"}`` -> ``{"events": n}``: I/O events one run makes.
- ``{"mode": "kill_at", "op", "args", "k"}`` -> ``{"status": "killed" | "completed" | "error"}``:
  the child kills itself (SIGKILL) just before its ``k``-th event (0-based).
- ``{"mode": "timed", "op", "args_list", "delay"}`` -> ``{"status": ...}``: the child runs the
  operation over ``args_list`` in a loop; the driver SIGKILLs it after ``delay`` seconds.
- ``{"mode": "fsize", "op", "args", "limit"}`` -> ``{"status": "completed"}`` or
  ``{"status": "error", "type", "module", "mro", "msg"}``: run once under RLIMIT_FSIZE =
  ``limit`` bytes with SIGXFSZ ignored, so a write past the limit fails with EFBIG.
- ``{"mode": "concurrent", "jobs": [{"op", "args_list", "n"}, ...]}`` -> ``{"statuses": [...]}``:
  one child per job, all at once, each running its operation ``n`` times over ``args_list``.
"""

from __future__ import annotations

import builtins
import json
import os
import resource
import signal
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ["ASTROMODAL_PLUGINS"] = ""  # only the toys: installed plugins are not under test

import pyarrow.compute  # noqa: E402, F401
import pyarrow.parquet as pq  # noqa: E402

try:  # pyarrow imports pandas on the first to_numpy of a column; pay that once, before forking
    import pandas  # noqa: F401
except ImportError:  # pragma: no cover
    pass
import safetensors.numpy  # noqa: E402, F401  (imported lazily by the core; import before forking)
import tqdm.auto  # noqa: E402, F401
from reliability_toys import ToyTokenizer, ToyTwoTokenizer, register  # noqa: E402

from astromodal_core import pipeline, store_dir  # noqa: E402
from astromodal_core.engines import LocalEngine  # noqa: E402
from astromodal_core.tokenizer_set import TokenizerSet  # noqa: E402

CLASSES = {"toy": ToyTokenizer, "toy2": ToyTwoTokenizer}


def op_save(a: dict[str, Any]) -> None:
    CLASSES[a.get("cls", "toy")].load(a["src"]).save(a["dst"])


def op_set_write(a: dict[str, Any]) -> None:
    TokenizerSet.write(a["dir"], {n: CLASSES[n].load(p) for n, p in a["members"].items()})


def op_train(a: dict[str, Any]) -> None:
    pipeline.train_tokenizers(a["config"], a["files"], a["dir"], engine=LocalEngine(1), progress=False)


def op_encode(a: dict[str, Any]) -> None:
    pipeline.encode_files(a["files"], a["tokdir"], a["store"], engine=LocalEngine(1), progress=False,
                          force=a.get("force", True))


def op_merge(a: dict[str, Any]) -> None:
    store_dir.merge_store(a["store"], a["out"])


OPS: dict[str, Callable[[dict[str, Any]], None]] = {
    "save": op_save, "set_write": op_set_write, "train": op_train, "encode": op_encode,
    "merge": op_merge,
}


# I/O events: each call of these is one event; the kill switch fires before the k-th ------------
class _Switch:
    count = 0
    kill_at: int | None = None

    @classmethod
    def event(cls) -> None:
        if cls.kill_at is not None and cls.count >= cls.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        cls.count += 1


def _wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        _Switch.event()
        return fn(*args, **kwargs)

    return wrapped


def _install_switch(kill_at: int | None) -> None:
    _Switch.count, _Switch.kill_at = 0, kill_at
    for name in ("open", "replace", "rename", "unlink", "fsync", "rmdir", "mkdir"):
        setattr(os, name, _wrap(getattr(os, name)))
    real_open = builtins.open

    def open_(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if any(c in mode for c in "wax+"):
            _Switch.event()
        return real_open(file, mode, *args, **kwargs)

    builtins.open = open_
    for name in ("write_batch", "write_table", "close"):
        setattr(pq.ParquetWriter, name, _wrap(getattr(pq.ParquetWriter, name)))


def _describe(exc: BaseException) -> dict[str, Any]:
    return {"status": "error", "type": type(exc).__name__, "module": type(exc).__module__,
            "mro": [c.__name__ for c in type(exc).__mro__], "msg": str(exc),
            "traceback": "".join(traceback.format_exception(exc))[-3000:]}


def _child(fn: Callable[[], None], report_fd: int) -> None:
    """Run ``fn`` in this forked child; write its outcome to ``report_fd``; never return."""
    try:
        fn()
        out: dict[str, Any] = {"status": "completed", "events": _Switch.count}
    except BaseException as exc:  # report everything, including what must never escape
        out = _describe(exc)
    try:
        os.write(report_fd, json.dumps(out).encode())
    finally:
        os._exit(0)


def _fork(fn: Callable[[], None]) -> tuple[int, int]:
    r, w = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        _child(fn, w)
    os.close(w)
    return pid, r


def _reap(pid: int, r: int) -> dict[str, Any]:
    chunks = []
    while True:
        b = os.read(r, 65536)
        if not b:
            break
        chunks.append(b)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return {"status": "killed", "signal": os.WTERMSIG(status)}
    return json.loads(b"".join(chunks)) if chunks else {"status": "exited", "code": os.waitstatus_to_exitcode(status)}


def _loop(op: str, args_list: list[dict[str, Any]], n: int | None) -> Callable[[], None]:
    def run() -> None:
        i = 0
        while n is None or i < n:
            OPS[op](args_list[i % len(args_list)])
            i += 1

    return run


def handle(req: dict[str, Any]) -> dict[str, Any]:
    mode, op = req["mode"], req.get("op")
    if mode in ("count", "kill_at"):
        k = req.get("k") if mode == "kill_at" else None

        def run() -> None:
            _install_switch(k)
            OPS[op](req["args"])

        return _reap(*_fork(run))
    if mode == "timed":
        pid, r = _fork(_loop(op, req["args_list"], None))
        time.sleep(float(req["delay"]))
        os.kill(pid, signal.SIGKILL)
        return _reap(pid, r)
    if mode == "fsize":
        def limited() -> None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (int(req["limit"]), resource.RLIM_INFINITY))
            OPS[op](req["args"])

        return _reap(*_fork(limited))
    if mode == "concurrent":
        started = [_fork(_loop(j["op"], j["args_list"], int(j["n"]))) for j in req["jobs"]]
        return {"statuses": [_reap(pid, r) for pid, r in started]}
    raise ValueError(f"unknown mode {mode!r}")


def main() -> None:
    register()
    print(json.dumps({"ready": os.getpid()}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            reply = handle(json.loads(line))
        except Exception as exc:  # a driver bug: report it to the test
            reply = {"status": "driver-error", **_describe(exc)}
        print(json.dumps(reply), flush=True)


if __name__ == "__main__":
    main()
