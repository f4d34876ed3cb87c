"""Throughput of the multi-file pipeline (astromodal_core.pipeline) against direct calls.

Baseline, measured in the same run (after a warm-up call, so JIT compilation is not counted): a plain loop calling ``ScalarTokenizer.train(files)`` and
``tokenizer.encode(f)`` for every file (what a user would write by hand). Then the pipeline:
``train_tokenizers`` / ``encode_files`` with one worker (tasks in-process, plus the atomic token
store writes) and with a local process pool, and a re-run that skips every file. Also the demo
datacube generator (objects per second per contribution).

    .venv/bin/python benchmarks/bench_pipeline.py [--files 8] [--rows 50000] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

BANDS = ("u", "j0378", "j0395", "j0410", "j0430", "g", "j0515", "r", "j0660", "i", "j0861", "z")


def make_files(root: Path, n_files: int, rows: int) -> list[Path]:
    rng = np.random.default_rng(0)
    files = []
    for k in range(n_files):
        cols = {"id": np.arange(rows, dtype=np.int64) + k * rows}
        for b in BANDS:
            m = rng.normal(19.5, 1.5, rows).astype(np.float32)
            m[rng.uniform(size=rows) < 0.05] = 99.0
            cols[f"mag_pstotal_{b}"] = m
            cols[f"err_mag_pstotal_{b}"] = np.where(m == 99, 99, 0.02 + 0.01 * rng.random(rows)).astype(np.float32)
        path = root / f"cube_{k:03d}.parquet"
        pq.write_table(pa.table(cols), path)
        files.append(path)
    return files


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--rows", type=int, default=50_000)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--sky", type=int, default=500, help="objects for the datacube benchmark")
    args = ap.parse_args()

    from astromodal.tokenizers import ScalarTokenizer
    from astromodal_core.pipeline import LocalEngine, encode_files, train_tokenizers

    section = {"n_bins": 1024, "scalar_columns": [f"mag_pstotal_{b}" for b in BANDS],
               "max_values_per_col": 200_000, "progress": False}
    config = {"tokenizers": {"scalar": section}}
    total = args.files * args.rows
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        files = make_files(root, args.files, args.rows)
        print(f"{args.files} files x {args.rows} rows x {len(BANDS)} magnitude columns, "
              f"{args.workers} workers, {os.cpu_count()} cores")

        ScalarTokenizer(**section).train(files[:1]).encode(files[0], progress=False)  # JIT warm-up
        direct, t_train_direct = timed(lambda: ScalarTokenizer(**section).train(files))
        _, t_enc_direct = timed(lambda: [direct.encode(f, progress=False) for f in files])

        with LocalEngine(1) as eng:
            saved, t_train_1 = timed(lambda: train_tokenizers(config, files, root / "tok1", engine=eng, progress=False))
            _, t_enc_1 = timed(lambda: encode_files(files, root / "tok1", root / "store1", engine=eng, progress=False))
        with LocalEngine(args.workers) as eng:
            saved_p, t_train_p = timed(lambda: train_tokenizers(config, files, root / "tokp", engine=eng, progress=False))
            _, t_enc_p = timed(lambda: encode_files(files, root / "tokp", root / "storep", engine=eng, progress=False))
            rec, t_skip = timed(lambda: encode_files(files, root / "tokp", root / "storep", engine=eng, progress=False))
        assert saved[0].fingerprint == saved_p[0].fingerprint == direct.fingerprint
        assert all(r["status"] == "skipped" for r in rec)

        rows = [
            ("train: direct ScalarTokenizer.train (baseline)", t_train_direct, 1.0),
            ("train: pipeline, 1 worker", t_train_1, t_train_direct / t_train_1),
            (f"train: pipeline, {args.workers} workers", t_train_p, t_train_direct / t_train_p),
            ("encode: direct tokenizer.encode loop (baseline, no store)", t_enc_direct, 1.0),
            ("encode: pipeline, 1 worker (+ atomic store writes)", t_enc_1, t_enc_direct / t_enc_1),
            (f"encode: pipeline, {args.workers} workers", t_enc_p, t_enc_direct / t_enc_p),
            ("encode: re-run, every file skipped", t_skip, t_enc_direct / t_skip),
        ]
        print(f"{'step':<58} {'seconds':>8} {'rows/s':>12} {'vs baseline':>12}")
        for name, sec, ratio in rows:
            print(f"{name:<58} {sec:8.2f} {total / sec:12,.0f} {ratio:11.2f}x")

    try:
        from astromodal_demo.sky import Sky
        from astromodal_image.demo import DEMO_COLUMNS as image
        from astromodal_spectra.demo import DEMO_COLUMNS as spectra
        from astromodal_splus.demo import DEMO_COLUMNS as splus
    except ImportError as exc:
        print(f"datacube generators skipped ({exc})")
        return
    sky = Sky.generate(args.sky, 0)
    print(f"\ndemo datacube generators, {args.sky} objects")
    for contrib in (splus, spectra, image):
        _, sec = timed(lambda c=contrib: c(sky, {"cutout_size": 32}))
        print(f"  {contrib.name:<8} {sec:6.2f} s  {args.sky / sec:8.0f} objects/s")


if __name__ == "__main__":
    main()
