"""SpectrumTokenizer end to end against a plain faiss pipeline on DESI-like b-arm spectra.

    .venv/bin/python benchmarks/bench_spectrum_pipeline.py                  # 20,000 rows
    .venv/bin/python benchmarks/bench_spectrum_pipeline.py --rows 4000 --repeat 1   # quick

Data: ``--rows`` DESI-like b-arm spectra (2751 pixels, ``bench_spectrum.spectra``) in a parquet
file of ``id`` and list<float32> ``desi_flux_b`` / ``desi_ivar_b`` columns, as the tokenizer
reads them. Both pipelines, in the same run, interleaved, best of ``--repeat``:

* ours: ``SpectrumTokenizer(codebook_size=k, groups=["desi_b"]).train([file])`` (the default
  per-pixel representation: features ``(flux / scale, sigma / scale)``, scale the row's median
  abs(flux), bounded sample of ``max_rows_per_file`` rows x ``max_points_per_row`` pixels into a
  reservoir of ``max_features_per_group`` vectors, 20 Lloyd iterations on at most 256 points a
  centroid) and ``encode_to_store(file, out)`` (record batches of ``batch_size`` rows);
* faiss pipeline: pyarrow ``iter_batches`` of the same columns, the same per-pixel features in
  plain numpy (``np.nanmedian`` scale, quantile norm bins), the same sample sizes, and
  ``faiss.Kmeans`` (same k, same iterations, 256 points a centroid) for training;
  ``faiss.IndexFlatL2.search`` of every valid pixel against the same centroids, then the tokens
  written with ``pyarrow.parquet`` for encoding.

Printed: wall and process CPU seconds of each, the ratio ours / faiss (train, encode), our
per-stage profile (read, convert, features, sample, kernel, assemble, write;
``benchmarks/_profile.py``) and the load average. Nothing here is a timed assertion.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).parent))
from _profile import StageProfile, load_average  # noqa: E402
from bench_memory_spectrum import NPIX, write_cube  # noqa: E402

STAGES = ("read", "convert", "features", "sample", "kernel", "assemble", "write")


# ------------------------------------------------------------------------------ faiss pipeline
def _batch_arrays(batch: pa.RecordBatch) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """ids, offsets, flux, ivar (flat float64) of one record batch."""
    ids = batch.column("id").to_numpy()
    f, v = batch.column("desi_flux_b"), batch.column("desi_ivar_b")
    off = f.offsets.to_numpy().astype(np.int64)
    flux = f.values.to_numpy()[off[0]:off[-1]].astype(np.float64)
    ivar = v.values.to_numpy()[off[0]:off[-1]].astype(np.float64)
    return ids, off - off[0], flux, ivar


def _rows(flux: np.ndarray, ivar: np.ndarray, off: np.ndarray, width: int) -> tuple:
    """Padded (n, width) flux, sigma, valid and each row's log10 scale (plain numpy)."""
    n = len(off) - 1
    lens = np.diff(off)
    r = np.repeat(np.arange(n), lens)
    c = np.arange(len(flux)) - np.repeat(off[:-1], lens)
    fl = np.full((n, width), np.nan)
    iv = np.zeros((n, width))
    fl[r, c], iv[r, c] = flux, ivar
    valid = np.isfinite(fl) & (iv > 0)
    sig = np.where(valid, 1.0 / np.sqrt(np.where(valid, iv, 1.0)), np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # rows without data
        scale = np.nanmedian(np.where(valid, np.abs(fl), np.nan), axis=1)
    scale = np.where(scale > 0, scale, 1.0)
    return fl, sig, valid, np.log10(scale)


def _features(fl: np.ndarray, sig: np.ndarray, valid: np.ndarray, log_scale: np.ndarray) -> np.ndarray:
    s = 10.0 ** log_scale[:, None]
    return np.stack([(fl / s)[valid], np.minimum(sig / s, 10.0)[valid]], axis=1).astype(np.float32)


def _edges(norms: np.ndarray, n_bins: int) -> np.ndarray:
    q = np.unique(np.quantile(norms, np.linspace(0, 1, n_bins // 2 + 1)))
    u = np.linspace(norms.min() - 0.5, norms.max() + 0.5, max(2, n_bins + 1 - len(q)))
    return np.unique(np.concatenate([q, u]))


def faiss_train(path: Path, k: int, n_iter: int, rows_sample: int, points_per_row: int,
                max_features: int, norm_bins: int, batch_size: int, seed: int = 0) -> dict:
    import faiss

    pf = pq.ParquetFile(path)
    rng = np.random.default_rng(seed)
    chosen = np.zeros(pf.metadata.num_rows, bool)
    chosen[rng.choice(len(chosen), size=min(rows_sample, len(chosen)), replace=False)] = True
    norms, vecs, start = [], [], 0
    for batch in pf.iter_batches(batch_size=batch_size, columns=["id", "desi_flux_b", "desi_ivar_b"]):
        _, off, flux, ivar = _batch_arrays(batch)
        fl, sig, valid, ls = _rows(flux, ivar, off, int(np.diff(off).max(initial=1)))
        has = valid.any(axis=1)
        norms.append(ls[has])
        pick = chosen[start:start + batch.num_rows] & has
        start += batch.num_rows
        if pick.any():
            feat = _features(fl[pick], sig[pick], valid[pick], ls[pick])
            vecs.append(feat[rng.random(len(feat)) < points_per_row / NPIX])
    x = np.concatenate(vecs)
    if len(x) > max_features:
        x = x[rng.choice(len(x), size=max_features, replace=False)]
    edges = _edges(np.concatenate(norms), norm_bins)
    km = faiss.Kmeans(2, k, niter=n_iter, seed=seed, verbose=False, max_points_per_centroid=256)
    km.train(np.ascontiguousarray(x))
    return {"centroids": km.centroids, "edges": edges}


def faiss_encode(path: Path, out: Path, centroids: np.ndarray, edges: np.ndarray,
                 batch_size: int) -> None:
    import faiss

    index = faiss.IndexFlatL2(centroids.shape[1])
    index.add(np.ascontiguousarray(centroids, dtype=np.float32))
    k = len(centroids)
    centres = 0.5 * (edges[:-1] + edges[1:])
    writer = None
    pf = pq.ParquetFile(path)
    for batch in pf.iter_batches(batch_size=batch_size, columns=["id", "desi_flux_b", "desi_ivar_b"]):
        ids, off, flux, ivar = _batch_arrays(batch)
        fl, sig, valid, ls = _rows(flux, ivar, off, NPIX)
        has = valid.any(axis=1)
        ntok = np.clip(np.searchsorted(edges, ls, side="right") - 1, 0, len(edges) - 2)
        feat = _features(fl, sig, valid, np.where(has, centres[ntok], 0.0))
        tok = np.full(valid.shape, k, dtype=np.uint16)
        tok[valid] = index.search(feat, 1)[1][:, 0]
        table = pa.table({"id": ids,
                          "tok": pa.FixedSizeListArray.from_arrays(pa.array(tok.ravel()), NPIX),
                          "tok_norm": np.where(has, ntok, len(edges) - 1).astype(np.uint16)})
        writer = writer or pq.ParquetWriter(out, table.schema)
        writer.write_table(table)
    assert writer is not None
    writer.close()


# ------------------------------------------------------------------------------ ours
def stage_targets() -> list[tuple[object, str, str]]:
    """The functions of our path timed as stages (those that exist in this version)."""
    import astromodal_spectra.fused as fused
    import astromodal_spectra.group_model as gm
    import astromodal_spectra.sampler as sampler
    import astromodal_spectra.tokenizer as tk

    import astromodal_core.blocks.codebook as codebook
    import astromodal_core.io as core_io
    import astromodal_core.kmeans as kmeans
    import astromodal_core.sampling as sampling
    import astromodal_core.store as store

    wanted = [
        (core_io, "iter_batches", "read"), (tk, "iter_batches", "read"),
        (tk, "read_points", "convert"), (tk, "id_column", "convert"),
        (fused, "read_flux_rows", "convert"),
        (gm, "row_norm", "features"), (sampler, "row_norm", "features"),
        (gm, "point_features", "features"), (gm, "patchify", "features"),
        (sampler, "sample_vectors", "features"), (fused.FluxRows, "patch_valid", "features"),
        (fused.FluxRows, "features", "features"), (fused.FluxRows, "sample", "features"),
        (sampler.GroupSample, "scan", "sample"), (sampler.GroupSample, "add", "sample"),
        (sampling.BottomK, "sample", "sample"), (sampling.BottomK, "_compact", "sample"),
        (codebook, "assign", "kernel"), (codebook, "fit_kmeans", "kernel"),
        (kmeans.NearestCentroid, "__call__", "kernel"),
        (gm.GroupModel, "encode_points", "assemble"), (gm.GroupModel, "encode_pixels", "assemble"),
        (tk.SpectrumTokenizer, "_encode_batch", "assemble"),
        (codebook.KMeansCodebook, "encode", "assemble"),
        (store.TokenStoreWriter, "write", "write"),
    ]
    return [(o, a, s) for o, a, s in wanted if hasattr(o, a)]


def timed(fn) -> tuple[object, float, float]:
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t, time.process_time() - c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=20_000, help="spectra in the file")
    ap.add_argument("--k", type=int, default=2048, help="codebook size")
    ap.add_argument("--n-iter", type=int, default=20, help="Lloyd iterations (both)")
    ap.add_argument("--repeat", type=int, default=2, help="runs of each (interleaved), best kept")
    ap.add_argument("--dir", type=Path, default=None, help="folder for the files (default: a temp dir)")
    ap.add_argument("--json", action="store_true", help="print JSON only")
    args = ap.parse_args()
    report = print if not args.json else (lambda *a, **k: None)
    from astromodal_spectra import SpectrumTokenizer

    import astromodal_core.kmeans as km

    res: dict = {"rows": args.rows, "pixels": NPIX, "k": args.k, "n_iter": args.n_iter,
                 "repeat": args.repeat, "numba": km.HAVE_NUMBA}
    with tempfile.TemporaryDirectory(dir=args.dir) as d:
        tmp = Path(d)
        path, t_make, _ = timed(lambda: write_cube(tmp / "desi_b.parquet", args.rows))
        res["file_mb"] = path.stat().st_size / 2**20
        report(f"{args.rows:,} DESI-like b-arm spectra ({NPIX} px), {res['file_mb']:.0f} MB parquet "
               f"(written in {t_make:.1f} s); codebook {args.k}, {args.n_iter} iterations")
        settings = {"codebook_size": args.k, "n_iter": args.n_iter, "groups": ["desi_b"],
                    "progress": False}
        tok = SpectrumTokenizer(**settings)
        same = {"rows_sample": tok.max_rows_per_file, "points_per_row": tok.max_points_per_row,
                "max_features": tok.max_features_per_group, "norm_bins": tok.norm_bins,
                "batch_size": tok.batch_size}
        # warm-up: numba kernels compiled / loaded from cache, faiss's OpenMP pool started
        small = write_cube(tmp / "warm.parquet", 300, seed=1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            warm = SpectrumTokenizer(**{**settings, "codebook_size": 64}).train([small])
            warm.encode_to_store(small, tmp / "warm.tokens.parquet")
            wf = faiss_train(small, 64, 2, **{**same, "rows_sample": 50})
            faiss_encode(small, tmp / "warm.faiss.parquet", wf["centroids"], wf["edges"], same["batch_size"])
        res["load_before"] = load_average()
        report(res["load_before"])
        runs: dict[str, list[tuple[float, float]]] = {n: [] for n in
                                                      ("ours_train", "faiss_train", "ours_encode", "faiss_encode")}
        profiles: dict[str, StageProfile] = {}
        fitted = None
        for rep in range(args.repeat):
            prof = StageProfile()
            with prof.patch(stage_targets()), prof.run():
                fitted = SpectrumTokenizer(**settings).train([path])
            runs["ours_train"].append((prof.wall, prof.cpu))
            if prof.wall == min(w for w, _ in runs["ours_train"]):
                profiles["train"] = prof
            fit, wall, cpu = timed(lambda: faiss_train(path, args.k, args.n_iter, **same))
            runs["faiss_train"].append((wall, cpu))
            out = tmp / f"ours{rep}.tokens.parquet"
            prof = StageProfile()
            with prof.patch(stage_targets()), prof.run():
                fitted.encode_to_store(path, out)
            runs["ours_encode"].append((prof.wall, prof.cpu))
            if prof.wall == min(w for w, _ in runs["ours_encode"]):
                profiles["encode"] = prof
            out.unlink()
            assert isinstance(fit, dict)
            _, wall, cpu = timed(lambda fit=fit: faiss_encode(
                path, tmp / "faiss.tokens.parquet", fit["centroids"], fit["edges"], same["batch_size"]))
            runs["faiss_encode"].append((wall, cpu))
            last = {n: r[-1][0] for n, r in runs.items()}
            report(f"  run {rep + 1}: " + ", ".join(f"{n} {w:.2f} s (cpu {c:.2f})"
                                                  for n, r in runs.items() for w, c in r[-1:])
                   + f"; this run's ours/faiss: train {last['ours_train'] / last['faiss_train']:.2f}, "
                   f"encode {last['ours_encode'] / last['faiss_encode']:.2f}", flush=True)
        res["load_after"] = load_average()
        for name, r in runs.items():
            res[name] = {"best_s": min(w for w, _ in r), "cpu_s": min(c for _, c in r),
                         "all_s": [w for w, _ in r]}
        for what in ("train", "encode"):
            res[f"ratio_{what}_per_run"] = [o[0] / f[0] for o, f in zip(runs[f"ours_{what}"], runs[f"faiss_{what}"])]
            res[f"ratio_{what}"] = res[f"ours_{what}"]["best_s"] / res[f"faiss_{what}"]["best_s"]
            res[f"ratio_{what}_cpu"] = res[f"ours_{what}"]["cpu_s"] / res[f"faiss_{what}"]["cpu_s"]
            res[f"profile_{what}"] = profiles[what].as_dict()
        # same data, same centroids: how often our exact assignment and faiss agree
        assert fitted is not None
        sub = write_cube(tmp / "check.parquet", 200, seed=2)
        ours = fitted.encode(sub)["tokens_desi_b"]
        book = fitted.models["desi_b"].codebook
        edges = fitted.models["desi_b"].edges
        faiss_encode(sub, tmp / "check.faiss.parquet", book, edges, 1024)
        theirs = np.stack(pq.read_table(tmp / "check.faiss.parquet").column("tok").to_numpy(zero_copy_only=False))
        res["same_tokens_as_faiss"] = float((ours == theirs).mean())
    report(f"\n{'':16s}{'ours s':>9s}{'faiss s':>9s}{'ours/faiss':>11s}{'cpu ours':>10s}{'cpu faiss':>10s}{'cpu ratio':>10s}")
    for what in ("train", "encode"):
        o, f = res[f"ours_{what}"], res[f"faiss_{what}"]
        report(f"{what:16s}{o['best_s']:9.2f}{f['best_s']:9.2f}{res[f'ratio_{what}']:11.2f}"
               f"{o['cpu_s']:10.2f}{f['cpu_s']:10.2f}{res[f'ratio_{what}_cpu']:10.2f}")
    report(f"encode throughput: ours {args.rows * NPIX / res['ours_encode']['best_s'] / 1e6:.1f} M pixels/s, "
           f"faiss pipeline {args.rows * NPIX / res['faiss_encode']['best_s'] / 1e6:.1f} M pixels/s; "
           f"same tokens as faiss on {100 * res['same_tokens_as_faiss']:.3f}% of pixels (same centroids)")
    report(f"load: before {res['load_before']}; after {res['load_after']}\n")
    report(profiles["train"].report("SpectrumTokenizer.train([file]) (best run)", STAGES))
    report(profiles["encode"].report("SpectrumTokenizer.encode_to_store(file) (best run)", STAGES))
    if args.json:
        print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
