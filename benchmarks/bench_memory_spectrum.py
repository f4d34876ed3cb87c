"""Peak memory of SpectrumTokenizer training and streamed encoding against input size.

Writes synthetic DESI-like b-arm spectra (2751 pixels, flux + ivar, the generator of
``bench_spectrum.py``) to one parquet file per size, then runs each step in a fresh child
process and reads its peak RSS (``resource.getrusage``):

* ``import``: the child imports astromodal_spectra and loads numba kernels (the fixed cost);
* ``train``: ``SpectrumTokenizer(progress=False).train([file])`` at the default settings
  (codebook 2048, 2,000,000 sampled features, 5000 rows per file, 2000 points per row);
* ``encode_to_store``: the trained tokenizer streams the whole file into a token store.

    .venv/bin/python benchmarks/bench_memory_spectrum.py                  # 5k, 20k, 50k rows
    .venv/bin/python benchmarks/bench_memory_spectrum.py --sizes 2000 --json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).parent))

from bench_spectrum import spectra  # noqa: E402

NPIX = 2751  # DESI b arm

_CHILD = r"""
import json, resource, sys, time, warnings
from astromodal_spectra import SpectrumTokenizer
from astromodal_core.kmeans import assign
import numpy as np
assign(np.zeros((4, 2), np.float32), np.ones((2, 2), np.float32))  # load the numba kernels
step, cube, config, store = sys.argv[1:5]
t = time.perf_counter()
if step == "train":
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        SpectrumTokenizer(progress=False).train([cube]).save(config)
elif step == "encode_to_store":
    SpectrumTokenizer.load(config).encode_to_store(cube, store)
dt = time.perf_counter() - t
print(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "seconds": dt}))
"""


def write_cube(path: Path, rows: int, seed: int = 0, chunk: int = 1000) -> Path:
    """``rows`` DESI-like b-arm spectra (list<float32> flux and ivar) written chunk by chunk."""
    rng = np.random.default_rng(seed)
    writer = None
    for s in range(0, rows, chunk):
        m = min(chunk, rows - s)
        flux, ivar = spectra(m, NPIX, rng)
        table = pa.table({
            "id": pa.array(np.arange(s, s + m), pa.int64()),
            "desi_flux_b": pa.FixedSizeListArray.from_arrays(pa.array(flux.ravel()), NPIX)
            .cast(pa.list_(pa.float32())),
            "desi_ivar_b": pa.FixedSizeListArray.from_arrays(pa.array(ivar.ravel()), NPIX)
            .cast(pa.list_(pa.float32())),
        })
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
    assert writer is not None
    writer.close()
    return path


def run_step(step: str, cube: Path, config: Path, store: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", _CHILD, step, str(cube), str(config), str(store)],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{step} on {cube} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[5000, 20000, 50000],
                    help="rows (spectra) per input file")
    ap.add_argument("--json", action="store_true", help="print JSON only")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for n in args.sizes:
            cube = write_cube(tmp / f"desi_b_{n}.parquet", n)
            config, store = tmp / f"spectrum_{n}.npz", tmp / f"tokens_{n}.parquet"
            row = {"rows": n, "file_mb": cube.stat().st_size / 2**20,
                   "input_mb": n * NPIX * 8 / 2**20}
            for step in ("import", "train", "encode_to_store"):
                row[step] = run_step(step, cube, config, store)
            rows.append(row)
            for p in tmp.iterdir():
                p.unlink()
            if not args.json:
                print(f"{n:>7,} spectra ({row['file_mb']:.0f} MB parquet, {row['input_mb']:.0f} MB "
                      f"flux+ivar): import {row['import']['peak_rss_mb']:.0f} MB, train "
                      f"{row['train']['peak_rss_mb']:.0f} MB ({row['train']['seconds']:.0f} s), "
                      f"encode_to_store {row['encode_to_store']['peak_rss_mb']:.0f} MB "
                      f"({row['encode_to_store']['seconds']:.0f} s)", flush=True)
    if args.json:
        print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
