"""Benchmark of astromodal-spectra: k-means fit / assignment against scikit-learn and faiss,
reconstruction error against tokens per spectrum (patch_size 1, 4, 8, 16), and peak RSS of
streamed encoding. Every baseline is measured in the same run.

    .venv/bin/python benchmarks/bench_spectrum.py                 # full run (2,000,000 vectors)
    .venv/bin/python benchmarks/bench_spectrum.py --n 200000 --rss-rows 2000   # quick

Results are written up in benchmarks/results_spectra.md.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ARMS = {"b": 2751, "r": 2326, "z": 2881}


def spectra(n: int, npix: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """DESI-like galaxy spectra: continuum, a few emission lines, noise; and their ivar."""
    x = np.linspace(0, 1, npix)
    amp = 10 ** rng.uniform(-0.5, 1.0, (n, 1))
    slope = rng.uniform(-0.5, 1.5, (n, 1))
    flux = amp * (1 + slope * x + 0.2 * np.sin(12 * x + rng.uniform(0, 6, (n, 1))))
    for _ in range(3):
        c = rng.uniform(0.05, 0.95, (n, 1))
        flux += amp * rng.uniform(0, 4, (n, 1)) * np.exp(-0.5 * ((x - c) / 0.0015) ** 2)
    sig = np.abs(amp) * rng.uniform(0.05, 0.5, (n, 1)) * (1 + 0.5 * x)
    flux = flux + rng.normal(size=flux.shape) * sig
    return flux.astype(np.float32), (1 / sig**2).astype(np.float32)


def feature_vectors(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` per-pixel feature vectors of DESI-like spectra, as the tokenizer builds them."""
    from astromodal_spectra.group_model import point_features, row_norm
    from astromodal_spectra.points import Points

    rows = -(-n // ARMS["b"])
    flux, ivar = spectra(rows, ARMS["b"], rng)
    pts = Points(flux.astype(np.float64), 1 / np.sqrt(ivar.astype(np.float64)),
                 np.ones(flux.shape, bool), np.full(rows, ARMS["b"]))
    norm, _ = row_norm(pts, "flux_ivar")
    return point_features(pts, norm, "flux_ivar").reshape(-1, 2)[:n]


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def bench_kmeans(n: int, k: int, rng: np.random.Generator) -> dict:
    from astromodal_core.kmeans import HAVE_NUMBA, assign, fit_kmeans

    x = feature_vectors(n, rng)
    res: dict = {"n": n, "k": k, "d": int(x.shape[1]), "numba": HAVE_NUMBA}
    assign(x[:1000], x[:k])  # load / compile the numba kernels outside the timings
    assign(x[:50000], x[:k])  # (grid path: needs enough points per cell)
    centers, t_fit = timed(lambda: fit_kmeans(x, k, seed=0, n_iter=20))
    labels, t_assign = timed(lambda: assign(x, centers))
    res["ours"] = {"fit_s": t_fit, "assign_s": t_assign, "assign_Mpts_s": n / t_assign / 1e6,
                   "mse": float(((x - centers[labels]) ** 2).sum(1).mean())}
    _, t_np = timed(lambda: assign(x[: n // 10], centers, backend="numpy"))
    res["ours_numpy_assign_Mpts_s"] = n / 10 / t_np / 1e6
    try:
        import faiss

        km = faiss.Kmeans(x.shape[1], k, niter=20, seed=0, verbose=False)
        _, t_ftrain = timed(lambda: km.train(x))
        index = faiss.IndexFlatL2(x.shape[1])
        index.add(centers)
        (_, fl), t_fsearch = timed(lambda: index.search(x, 1))
        _, fl2 = km.index.search(x, 1)
        res["faiss"] = {"fit_s": t_ftrain, "assign_s": t_fsearch,
                        "assign_Mpts_s": n / t_fsearch / 1e6,
                        "mse": float(((x - km.centroids[fl2[:, 0]]) ** 2).sum(1).mean()),
                        "same_assignment_as_ours": float((fl[:, 0] == labels).mean())}
    except ImportError:
        res["faiss"] = None
    from sklearn.cluster import MiniBatchKMeans

    mbk = MiniBatchKMeans(n_clusters=k, random_state=0, n_init=1, batch_size=4096)
    _, t_sfit = timed(lambda: mbk.fit(x))
    sl, t_spred = timed(lambda: mbk.predict(x))
    res["sklearn"] = {"fit_s": t_sfit, "assign_s": t_spred, "assign_Mpts_s": n / t_spred / 1e6,
                      "mse": float(((x - mbk.cluster_centers_[sl]) ** 2).sum(1).mean())}
    return res


def cube(path: Path, rows: int, rng: np.random.Generator, chunk: int = 500) -> Path:
    writer = None
    for s in range(0, rows, chunk):
        m = min(chunk, rows - s)
        cols = {"id": pa.array(np.arange(s, s + m), pa.int64())}
        for arm, npix in ARMS.items():
            flux, ivar = spectra(m, npix, rng)
            cols[f"desi_flux_{arm}"] = pa.FixedSizeListArray.from_arrays(pa.array(flux.ravel()), npix)
            cols[f"desi_ivar_{arm}"] = pa.FixedSizeListArray.from_arrays(pa.array(ivar.ravel()), npix)
        table = pa.table({k: (v.cast(pa.list_(pa.float32())) if k != "id" else v)
                          for k, v in cols.items()})
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
    writer.close()
    return path


def bench_patches(tmp: Path, rng: np.random.Generator, rows: int, k: int) -> list[dict]:
    from astromodal_spectra import SpectrumTokenizer

    train = cube(tmp / "patch_train.parquet", rows, rng)
    test = cube(tmp / "patch_test.parquet", max(20, rows // 4), rng)
    table = pq.read_table(test)
    out = []
    for p in (1, 4, 8, 16):
        tok = SpectrumTokenizer(codebook_size=k, progress=False,
                                groups=[{"name": f"desi_{a}", "kind": "flux_ivar", "patch_size": p}
                                        for a in ARMS])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            _, t_fit = timed(lambda tok=tok: tok.train([train]))
        result, t_enc = timed(lambda tok=tok: tok.encode(test))
        row = {"patch_size": p, "fit_s": t_fit, "encode_rows_s": table.num_rows / t_enc}
        for arm in ARMS:
            dec = tok.decode(result, f"desi_{arm}")
            flux = np.array(table.column(f"desi_flux_{arm}").to_pylist())
            ivar = np.array(table.column(f"desi_ivar_{arm}").to_pylist())
            row[f"tokens_{arm}"] = int(result[f"tokens_desi_{arm}"].shape[1])
            row[f"chi_{arm}"] = float(np.median(np.abs(dec.flux - flux) * np.sqrt(ivar)))
        out.append(row)
    return out


def bench_rss(tmp: Path, rng: np.random.Generator, rows: int) -> dict:
    from astromodal_spectra import SpectrumTokenizer

    train = cube(tmp / "rss_train.parquet", 200, rng)
    tok = SpectrumTokenizer(codebook_size=256, progress=False, batch_size=256,
                            groups=[f"desi_{a}" for a in ARMS]).train([train])
    tok.save(tmp / "rss_config.npz")
    out = []
    for n_rows in (max(1, rows // 5), rows):
        out.append(_rss_one(tmp, rng, n_rows))
    return out


def _rss_one(tmp: Path, rng: np.random.Generator, rows: int) -> dict:
    big = cube(tmp / f"rss_{rows}.parquet", rows, rng)
    code = (
        "import resource, sys, time\n"
        "from astromodal_spectra import SpectrumTokenizer\n"
        f"tok = SpectrumTokenizer.load({str(tmp / 'rss_config.npz')!r})\n"
        "t = time.perf_counter()\n"
        f"tok.encode_to_store({str(big)!r}, {str(tmp / 'rss_tokens.parquet')!r}, progress=False)\n"
        "dt = time.perf_counter() - t\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, dt)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    rss_mb, dt = (float(v) for v in out.stdout.split()[-2:])
    size_mb = big.stat().st_size / 2**20
    big.unlink()
    return {"rows": rows, "file_mb": size_mb, "peak_rss_mb": rss_mb, "encode_s": dt,
            "rows_per_s": rows / dt}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=2_000_000, help="feature vectors for k-means")
    ap.add_argument("--k", type=int, default=2048, help="codebook size")
    ap.add_argument("--patch-rows", type=int, default=200, help="training spectra for patches")
    ap.add_argument("--rss-rows", type=int, default=200_000, help="rows of the RSS test file")
    ap.add_argument("--json", action="store_true", help="print JSON only")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    results: dict = {}
    report = print if not args.json else (lambda *a, **k: None)
    results["kmeans"] = km = bench_kmeans(args.n, args.k, rng)
    report(f"k-means: {km['n']:,} vectors (d={km['d']}), codebook {km['k']}, numba={km['numba']}")
    report(f"{'method':<28}{'fit s':>9}{'assign s':>10}{'assign Mpt/s':>14}{'MSE':>11}")
    for name in ("ours", "faiss", "sklearn"):
        r = km.get(name)
        if r:
            report(f"{name:<28}{r['fit_s']:>9.2f}{r['assign_s']:>10.2f}"
                   f"{r['assign_Mpts_s']:>14.2f}{r['mse']:>11.3g}")
    report(f"ours (numpy path) assign: {km['ours_numpy_assign_Mpts_s']:.2f} Mpt/s")
    if km.get("faiss"):
        f = km["faiss"]
        report(f"ratios ours/faiss: assign throughput "
               f"{km['ours']['assign_Mpts_s'] / f['assign_Mpts_s']:.2f}, fit time "
               f"{km['ours']['fit_s'] / f['fit_s']:.2f}; same labels {f['same_assignment_as_ours']:.5f}")
    s = km["sklearn"]
    report(f"ratios ours/sklearn: assign throughput {km['ours']['assign_Mpts_s'] / s['assign_Mpts_s']:.2f}, "
           f"fit time {km['ours']['fit_s'] / s['fit_s']:.2f}", flush=True)
    with tempfile.TemporaryDirectory() as d:
        results["patches"] = bench_patches(Path(d), rng, args.patch_rows, args.k)
        report("\npatch_size  tokens/spectrum (b+r+z)  median |dec-flux|*sqrt(ivar) b/r/z   fit s")
        for r in results["patches"]:
            toks = sum(r[f"tokens_{a}"] for a in ARMS)
            chis = "/".join(f"{r[f'chi_{a}']:.3f}" for a in ARMS)
            report(f"{r['patch_size']:>10}  {toks:>23}  {chis:>36}  {r['fit_s']:>6.1f}", flush=True)
        results["rss"] = bench_rss(Path(d), rng, args.rss_rows)
        report()
        for r in results["rss"]:
            report(f"streamed encode of {r['rows']:,} rows x 3 arms ({r['file_mb']:.0f} MB "
                   f"parquet): peak RSS {r['peak_rss_mb']:.0f} MB, {r['rows_per_s']:.0f} rows/s")
    results["self_maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if args.json:
        print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
