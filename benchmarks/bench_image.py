"""Benchmark of the image plugin: encode throughput and reconstruction quality.

    .venv/bin/python benchmarks/bench_image.py [--n-encode 2048] [--n-train 384] [--epochs 4]

Throughput: cutouts/s of ``ImageTokenizer.encode`` end to end from a parquet datacube
(default architecture, 96x96 pixels, 12 S-PLUS bands) at batch sizes 32, 256 and 1024, on the
CPU always and on CUDA when present (bf16 autocast, pinned memory, non-blocking copies,
prefetching reader). The baseline, measured in the same run on the same file and weights, is
the straightforward implementation: the core ``list_column`` reader (float64), torch's
elementwise ``asinh`` on contiguous NCHW tensors, ``torch.no_grad`` and the same encoder and
codebook. A read-only pass (parquet -> float32 arrays) gives the I/O ceiling.

Quality: the tokenizer is trained on synthetic galaxies (``astromodal_image.synthetic``) and
evaluated on a held-out set: RMS of (reconstruction - input) per band in units of that band's
sky noise, for decoded tokens and for decoded continuous latents, and against the noiseless
truth (the autoencoder denoises).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from astromodal_image import SPLUS_BANDS, cutout_table, iter_cutouts
from astromodal_image.network import preprocess
from astromodal_image.synthetic import sky_sigma, synthetic_cutouts
from astromodal_image.tokenizer import ImageTokenizer, resolve_device

from astromodal_core.io import id_column, iter_batches, list_column

SIZE = 96
BANDS = list(SPLUS_BANDS)


def write_cube(path: Path, n: int, seed: int, chunk: int = 256) -> None:
    """A datacube of ``n`` synthetic cutouts, written in chunks to bound memory."""
    import pyarrow.parquet as pq

    tmp = path.with_suffix(".tmp")
    writer = None
    for s in range(0, n, chunk):
        m = min(chunk, n - s)
        table = cutout_table(np.arange(s, s + m), synthetic_cutouts(m, len(BANDS), SIZE, seed=seed + s), BANDS)
        if writer is None:
            writer = pq.ParquetWriter(tmp, table.schema)
        writer.write_table(table, row_group_size=chunk)
    writer.close()
    os.replace(tmp, path)


def baseline_encode(tok: ImageTokenizer, path: Path, batch_size: int) -> int:
    """The straightforward pipeline, for the ratio: float64 reader, torch asinh, no_grad, NCHW."""
    model = tok._ensure_model().to("cpu").eval()
    off, sc = (torch.as_tensor(tok.band_offset), torch.as_tensor(tok.band_scale))
    n = 0
    for batch in iter_batches(path, ["id", *tok.band_columns], batch_size=batch_size):
        ids = id_column(batch, "id", path)
        planes = []
        for col in tok.band_columns:
            values, _ = list_column(batch, col, path)
            planes.append(values.reshape(len(ids), SIZE, SIZE))
        flux = torch.from_numpy(np.stack(planes, 1).astype(np.float32))
        with torch.no_grad():
            x, valid = preprocess(flux, off, sc)
            z = model.encoder(x)
            tok._quantize(z).numpy().astype(np.uint16)
        n += len(ids)
    return n


def read_only(path: Path, batch_size: int) -> int:
    n = 0
    for ids, _ in iter_cutouts(path, BANDS, SIZE, batch_size=batch_size, buffers=1):
        n += len(ids)
    return n


def timed(fn, *args, repeat: int = 1) -> tuple[float, float]:
    """Best (wall seconds, CPU seconds of this process over all threads) of ``repeat`` runs."""
    best = (float("inf"), float("inf"))
    for _ in range(repeat):
        c, t = _cpu(), time.perf_counter()
        fn(*args)
        best = min(best, (time.perf_counter() - t, _cpu() - c))
    return best


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n-encode", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=1, help="best of this many encode runs")
    ap.add_argument("--n-train", type=int, default=384)
    ap.add_argument("--n-heldout", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--quick", action="store_true", help="tiny sizes, to check the script runs")
    args = ap.parse_args()
    if args.quick:
        args.n_encode, args.n_train, args.n_heldout, args.epochs = 256, 64, 16, 1
    torch.set_num_threads(args.threads)
    cuda = torch.cuda.is_available()
    print(f"# image benchmark: torch {torch.__version__}, {args.threads} CPU threads, "
          f"CUDA {'yes: ' + torch.cuda.get_device_name() if cuda else 'no'}")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        train_path, enc_path = tmp / "train.parquet", tmp / "encode.parquet"
        t = time.perf_counter()
        write_cube(train_path, args.n_train, seed=10_000_000)
        write_cube(enc_path, args.n_encode, seed=0)
        print(f"wrote {args.n_train} + {args.n_encode} cutouts ({SIZE}x{SIZE}x{len(BANDS)}) "
              f"in {time.perf_counter() - t:.1f}s; encode file {enc_path.stat().st_size / 1e6:.0f} MB")

        # one pass an epoch (min_epoch_steps=1): this script measures speed; the training
        # recipe's quality on real data is benchmarks/bench_image_quality.py
        tok = ImageTokenizer(max_cutouts=args.n_train, epochs=args.epochs, batch_size=32, min_epoch_steps=1)
        t = time.perf_counter()
        tok.train(train_path, progress=False, device="cuda" if cuda else "cpu")
        print(f"trained default architecture {tok.channels} -> grid {tok.grid_shape}, "
              f"{args.epochs} epochs on {args.n_train} cutouts in {time.perf_counter() - t:.1f}s; "
              f"loss {', '.join(f'{h:.3f}' for h in tok.history)}")

        tok.encode(enc_path, batch_size=32)  # warm-up (numba cache, allocator)
        print("\n## encode throughput (cutouts/s, end to end from parquet)\n")
        print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores "
              "(other processes share the CPU: compare the ratio and the CPU ms per cutout)\n")
        print("| device | batch | ours | baseline | ratio | read-only | ours CPU ms/cutout | "
              "baseline CPU ms/cutout |")
        print("|---|---|---|---|---|---|---|---|")
        n = args.n_encode
        rates = {}
        for bs in (32, 256, 1024):
            ours, ours_cpu = timed(tok.encode, enc_path, bs, repeat=args.repeat)
            base, base_cpu = timed(baseline_encode, tok, enc_path, bs)
            ro, _ = timed(read_only, enc_path, bs)
            rates[("cpu", bs)] = n / ours
            print(f"| cpu | {bs} | {n / ours:.0f} | {n / base:.0f} | {base / ours:.2f}x | "
                  f"{n / ro:.0f} | {1e3 * ours_cpu / n:.2f} | {1e3 * base_cpu / n:.2f} |")
        if cuda:
            dev = resolve_device("cuda")
            for bs in (32, 256, 1024):
                # the device path: bf16, pinned buffers, and a reader thread prefetching the next batch
                tok.encode(enc_path, batch_size=bs, device="cuda", prefetch=True)
                torch.cuda.synchronize(dev)
                t, _ = timed(lambda b=bs: tok.encode(enc_path, batch_size=b, device="cuda", prefetch=True), repeat=2)
                rates[("cuda", bs)] = n / t
                print(f"| cuda | {bs} | {n / t:.0f} | - | - | - | - | - |")
        print()
        for (dev_name, bs), rate in rates.items():
            print(f"encode throughput: {rate:.0f} cutouts/s ({dev_name}, batch {bs}, end to end from parquet)")
        if not cuda:
            print("encode throughput on CUDA (prefetching reader): unmeasured, no GPU in this run")

        print("\n## reconstruction on a held-out set (RMS / sky noise, per band)\n")
        seed = 20_000_000
        noisy = synthetic_cutouts(args.n_heldout, len(BANDS), SIZE, seed=seed)
        clean = synthetic_cutouts(args.n_heldout, len(BANDS), SIZE, seed=seed, noise=False)
        tokens, latents = tok.encode_array(noisy)
        rec_tok = tok.decode(tokens)
        rec_lat = tok.decode_latents(latents)
        sigma = sky_sigma(len(BANDS))
        const = np.median(noisy, axis=(0, 2, 3), keepdims=True)

        def rms(a: np.ndarray, b: np.ndarray) -> np.ndarray:
            return np.sqrt(np.mean((a - b) ** 2, axis=(0, 2, 3))) / sigma

        faint = clean < 0.1 + 3 * sigma[None, :, None, None]  # sky-dominated pixels

        def rms_faint(a: np.ndarray, b: np.ndarray) -> np.ndarray:
            d = np.where(faint, a - b, 0.0) ** 2
            return np.sqrt(d.sum(axis=(0, 2, 3)) / faint.sum(axis=(0, 2, 3))) / sigma

        rows = {
            "tokens vs input": rms(rec_tok, noisy),
            "tokens vs input, faint pixels": rms_faint(rec_tok, noisy),
            "tokens vs truth, faint pixels": rms_faint(rec_tok, clean),
            "latents vs input": rms(rec_lat, noisy),
            "tokens vs noiseless truth": rms(rec_tok, clean),
            "constant image vs input": rms(np.broadcast_to(const, noisy.shape), noisy),
        }
        print("| band | " + " | ".join(rows) + " |")
        print("|---|" + "---|" * len(rows))
        for j, band in enumerate(BANDS):
            print(f"| {band} | " + " | ".join(f"{v[j]:.2f}" for v in rows.values()) + " |")
        print("| median | " + " | ".join(f"{np.median(v):.2f}" for v in rows.values()) + " |")
        resolve_device("cpu")
    return 0


if __name__ == "__main__":
    sys.exit(main())
