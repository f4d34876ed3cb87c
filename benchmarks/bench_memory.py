"""Peak RSS against input size for the scalar paths (issue: memory bounded by batch, not file).

    python benchmarks/bench_memory.py [--max-rows 8000000] [--max-files 120] [--json]

Each measurement runs in a fresh Python process, which reports its own peak RSS
(``ru_maxrss``), so one measurement never inherits another's memory:

- ``encode``: ``astromodal encode`` (the pipeline: every tokenizer of a fitted set streamed
  batch by batch into a store part) of one scalar file of N rows x 24 columns (12 S-PLUS
  magnitudes + their errors), N = max-rows / 8, / 4, / 2, max-rows.
- ``train``: ``astromodal tokenizers train`` (the pipeline on one worker) over F files of
  100,000 rows each, F = max-files / 12, / 3, max-files.

The baseline printed beside each figure is the bare interpreter with the packages imported
(what any run pays), measured the same way. The target is <= 1 GB for every row.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent

_CHILD = r"""
import json, resource, sys
from pathlib import Path
job, args = sys.argv[1], json.loads(sys.argv[2])
import astromodal_core.pipeline as P
from astromodal_splus import BANDS
COLS = [f"{p}mag_pstotal_{b}" for p in ("", "err_") for b in BANDS]  # 24 columns
if job == "encode":
    P.encode_files([args["file"]], args["tok"], args["store"], engine=P.LocalEngine(1), progress=False, force=True)
elif job == "train":
    P.train_tokenizers({"tokenizers": {"scalar": {"n_bins": 1024, "scalar_columns": COLS}}}, args["files"], args["tok"],
                       engine=P.LocalEngine(1), progress=False)
print(json.dumps({"peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def child(job: str, **args: object) -> float:
    out = subprocess.run([sys.executable, "-c", _CHILD, job, json.dumps(args)], check=True,
                         capture_output=True, text=True)
    return float(json.loads(out.stdout.strip().splitlines()[-1])["peak_mb"])


def write_scalar_file(path: Path, rows: int, seed: int, chunk: int = 500_000) -> Path:
    """A rows x (id + 24 float32) S-PLUS-like parquet, written chunk by chunk."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    sys.path.insert(0, str(HERE))
    from bench_scalar import make_columns

    writer = None
    for start in range(0, rows, chunk):
        n = min(chunk, rows - start)
        table = pa.table(make_columns(n, seed * 1_000_003 + start, id_start=seed * 10**9 + start))
        if writer is None:
            writer = pq.ParquetWriter(path, table.schema)
        writer.write_table(table, row_group_size=65_536)
    assert writer is not None
    writer.close()
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--max-rows", type=int, default=8_000_000)
    ap.add_argument("--max-files", type=int, default=120)
    ap.add_argument("--only", choices=["train", "encode"], default=None, help="run one of the two")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    results: dict[str, list[dict[str, float]]] = {"encode": [], "train": []}
    with tempfile.TemporaryDirectory(prefix="bench_memory") as tmp:
        d = Path(tmp)
        base = child("none")
        n_small = a.max_files if a.only != "encode" else max(1, a.max_files // 12)
        small = [write_scalar_file(d / f"f{i:03d}.parquet", 100_000, i) for i in range(n_small)]
        for f in sorted({max(1, n_small // 12), max(1, n_small // 3), n_small}):
            mb = child("train", files=[str(p) for p in small[:f]], tok=str(d / f"tok{f}"))
            results["train"].append({"files": f, "rows": f * 100_000, "peak_mb": mb})
            print(f"train  {f:>4} files x 100k rows: peak RSS {mb:7.0f} MB  (bare imports {base:.0f} MB)", flush=True)
        tok = d / f"tok{max(1, a.max_files // 12)}"
        for rows in sorted({a.max_rows // 8, a.max_rows // 4, a.max_rows // 2, a.max_rows}) if a.only != "train" else ():
            big = write_scalar_file(d / "big.parquet", rows, 999)
            mb = child("encode", file=str(big), tok=str(tok), store=str(d / "store"))
            results["encode"].append({"rows": rows, "values": rows * 24, "peak_mb": mb})
            print(f"encode {rows:>9,} rows x 24 cols:   peak RSS {mb:7.0f} MB  (bare imports {base:.0f} MB)", flush=True)
            big.unlink()
    worst = max(r["peak_mb"] for rs in results.values() for r in rs)
    print(f"worst peak RSS {worst:.0f} MB; target <= 1024 MB: {'met' if worst <= 1024 else 'NOT met'}")
    if not results["encode"]:
        return
    growth = np.polyfit([r["rows"] for r in results["encode"]], [r["peak_mb"] for r in results["encode"]], 1)[0]
    print(f"encode RSS growth: {growth * 1e6:.1f} MB per million rows")
    if a.json:
        print(json.dumps({"baseline_mb": base, **results}))


if __name__ == "__main__":
    main()
