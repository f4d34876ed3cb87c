"""Benchmark of the S-PLUS ScalarTokenizer (astromodal-splus).

    python benchmarks/bench_scalar.py [--rows 2000000] [--bins 1024] [--json]
        in-memory throughput on a rows x 12 float32 table (2% NaN): scikit-learn
        KBinsDiscretizer.transform, np.searchsorted per column, ScalarTokenizer.encode_arrays
        (numba kernel and numpy fallback) on the same edges, tokens checked identical on every
        finite value; training time on the same rows; parquet -> tokens end to end
        (``encode(path)`` and ``encode_to_store``) against pyarrow's bare read of the same
        columns, best and median of ``--repeat`` runs, wall and CPU, tokens/s per core, with a
        per-stage profile of each (read, convert, kernel, wait, write; benchmarks/_profile.py)
        and the load average beside; decode error / photometric error per band.

    python benchmarks/bench_scalar.py e2e [--rows 2000000] [--repeat 3]
        only the parquet -> tokens part (and its stage profiles).

    python benchmarks/bench_scalar.py decode-demo demo_datacube_000.parquet demo_datacube_001.parquet
        decode error per column on demo datacube files (trained on the first file).

    python benchmarks/bench_scalar.py make-parquet --rows 20000000 big.parquet
    /usr/bin/time -v python benchmarks/bench_scalar.py encode-store big.parquet
        peak RSS of streaming a large file into a token store (record batches).

Ratios are against baselines measured in the same run; nothing here is a timed assertion.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from astromodal_splus import BANDS, ScalarTokenizer
from astromodal_splus.synthetic import COLOURS

MAGS = [f"mag_pstotal_{b}" for b in BANDS]


def make_columns(n: int, seed: int, id_start: int = 0, nan_frac: float = 0.02) -> dict[str, np.ndarray]:
    """id, 12 magnitudes (float32, ``nan_frac`` NaN) and their errors, S-PLUS-like."""
    rng = np.random.default_rng(seed)
    lo, hi = 10 ** (0.3 * 13.5), 10 ** (0.3 * 21.8)
    r = (np.log10(lo + rng.random(n) * (hi - lo)) / 0.3).astype(np.float32)
    cols: dict[str, np.ndarray] = {"id": np.arange(id_start, id_start + n, dtype=np.int64)}
    for b in BANDS:
        true = r + np.float32(COLOURS[b]) + rng.normal(0, 0.25, n).astype(np.float32)
        err = (0.003 + 0.02 * 10 ** (0.4 * (true - 20.0))).astype(np.float32)
        mag = true + rng.standard_normal(n, dtype=np.float32) * err
        nan = rng.random(n) < nan_frac
        mag[nan] = np.nan
        err[nan] = np.nan
        cols[f"mag_pstotal_{b}"] = mag
        cols[f"err_mag_pstotal_{b}"] = err
    return cols


def best_of(fn, repeat: int = 3) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def throughput(args: argparse.Namespace) -> dict:
    from sklearn.preprocessing import KBinsDiscretizer

    n = args.rows
    res: dict = {"rows": n, "columns": 12, "n_bins": args.bins}
    cols = make_columns(n, seed=0)
    table = np.column_stack([cols[c] for c in MAGS])  # (n, 12) float32
    values = table.size
    finite = np.isfinite(table)
    res["nan_fraction"] = float(1 - finite.mean())

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.parquet"
        pq.write_table(pa.table(cols), path, row_group_size=65_536)

        # training ---------------------------------------------------------------------------
        for label, cap in (("train_s_per_file_cap_100k", 100_000), ("train_s_full_2m_reservoir", None)):
            tok = ScalarTokenizer(n_bins=args.bins, scalar_columns=MAGS, progress=False,
                                  max_values_per_col=2_000_000, max_values_per_file_per_col=cap)
            t0 = time.perf_counter()
            tok.train([path])
            res[label] = time.perf_counter() - t0
        res["effective_bins_min"] = min(tok.effective_bins.values())
        edges = [tok.bins[c].edges for c in MAGS]

        # in-memory encoding -----------------------------------------------------------------
        kb = KBinsDiscretizer(n_bins=args.bins, encode="ordinal", strategy="quantile",
                              quantile_method="linear", subsample=None)
        kb.fit(np.nan_to_num(table[:20_000], nan=18.0))
        kb.bin_edges_ = np.array([np.r_[-np.inf, e, np.inf] for e in edges], dtype=object)
        kb.n_bins_ = np.array([len(e) + 1 for e in edges])
        filled = np.where(finite, table, np.float32(18.0))  # sklearn refuses NaN
        filled_f = np.asfortranarray(filled)
        t_sk_c, sk = best_of(lambda: kb.transform(filled), args.repeat)
        t_sk_f, _ = best_of(lambda: kb.transform(filled_f), args.repeat)
        t_sk = min(t_sk_c, t_sk_f)  # compare with sklearn's better memory order
        columns = [np.ascontiguousarray(table[:, j]) for j in range(table.shape[1])]
        t_ss, ss = best_of(lambda: np.column_stack(
            [np.searchsorted(e, columns[j], side="right") for j, e in enumerate(edges)]), args.repeat)
        tok.encode_arrays(table[:1000])  # compile / warm the kernel
        t_nb, tokens = best_of(lambda: tok.encode_arrays(table), args.repeat)
        tok.backend = "numpy"
        t_np, tokens_np = best_of(lambda: tok.encode_arrays(table), args.repeat)
        tok.backend = "auto"
        res["identical_to_searchsorted_on_finite"] = bool(np.array_equal(tokens[finite], ss[finite]))
        res["identical_to_sklearn_on_finite"] = bool(np.array_equal(tokens[finite], sk[finite].astype(np.int64)))
        res["numpy_fallback_identical"] = bool(np.array_equal(tokens, tokens_np))
        res["nan_is_mask_token"] = bool(np.all(tokens[~finite] == args.bins))
        res["sklearn_kbins_C_order_Mvalues_per_s"] = values / t_sk_c / 1e6
        res["sklearn_kbins_F_order_Mvalues_per_s"] = values / t_sk_f / 1e6
        for name, t in (("sklearn_kbins", t_sk), ("np_searchsorted", t_ss),
                        ("encode_numba", t_nb), ("encode_numpy_fallback", t_np)):
            res[f"{name}_Mvalues_per_s"] = values / t / 1e6
        res["ratio_encode_vs_sklearn"] = t_sk / t_nb
        res["ratio_encode_vs_searchsorted"] = t_ss / t_nb
        res["ratio_fallback_vs_sklearn"] = t_sk / t_np

        # parquet end to end (with the per-stage profile) --------------------------------------
        res.update(end_to_end(tok, path, ["id", *MAGS], args.repeat, Path(tmp)))
        np.testing.assert_array_equal(tok.encode(path, progress=False)["scalar_tokens"], tokens)

        # decode quality -----------------------------------------------------------------------
        test = make_columns(200_000, seed=1, id_start=10**9)
        ttab = np.column_stack([test[c] for c in MAGS])
        decoded, _ = tok.decode(tok.encode_arrays(ttab))
        res["median_abs_decode_error_over_err"] = {}
        for j, c in enumerate(MAGS):
            e = test["err_" + c].astype(np.float64)
            ok = np.isfinite(ttab[:, j])
            res["median_abs_decode_error_over_err"][c] = float(
                np.median(np.abs(decoded[ok, j] - ttab[ok, j].astype(np.float64)) / e[ok]))
    return res


def runs(fn, repeat: int) -> dict[str, float]:
    """Wall and process-CPU seconds of ``repeat`` runs: best and median of each."""
    walls, cpus = [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return {"best_s": min(walls), "median_s": float(np.median(walls)),
            "cpu_best_s": min(cpus), "cpu_median_s": float(np.median(cpus))}


def stage_targets() -> list[tuple[object, str, str]]:
    """The functions of the scalar encode path timed as stages (read, convert, kernel, wait,
    write; ``scalar_mask`` is written inside the kernel tasks); names an older version lacks
    are skipped."""
    import astromodal_splus.tokenizer as tokenizer

    import astromodal_core.blocks.quantile as quantile
    import astromodal_core.blocks.simd as simd
    import astromodal_core.store as store

    wanted = [
        (tokenizer, "iter_batches", "read"),
        (tokenizer, "id_column", "convert"),
        (tokenizer, "_float_column", "convert"),
        (tokenizer.ScalarTokenizer, "_token_inputs", "convert"),
        (quantile, "_encode_kernel", "kernel"),
        (simd, "encode_f32", "kernel"),
        (tokenizer.ScalarTokenizer, "_finish", "wait"),
        (store.TokenStoreWriter, "write", "write"),
    ]
    return [(owner, attr, stage) for owner, attr, stage in wanted if hasattr(owner, attr)]


STAGES = ("read", "convert", "kernel", "wait", "write")


def end_to_end(tok: ScalarTokenizer, path: Path, read_cols: list[str], repeat: int, tmp: Path) -> dict:
    """``encode(path)`` and ``encode_to_store`` against pyarrow's bare read of the same
    columns, ``repeat`` runs each (best and median), and one profiled run of each."""
    import os

    from _profile import StageProfile, load_average

    res: dict = {"load_before": load_average()}
    n_values = pq.ParquetFile(path).metadata.num_rows * len(tok.scalar_columns)
    tok.encode(path, progress=False)  # warm: numba cache, page cache
    store = tmp / "bench.tokens.parquet"
    res["bare_read_table"] = runs(lambda: pq.read_table(path, columns=read_cols), repeat)

    def batch_read() -> None:
        for b in pq.ParquetFile(path, pre_buffer=False).iter_batches(batch_size=tok.batch_size, columns=read_cols):
            for i in range(b.num_columns):
                b.column(i).to_numpy(zero_copy_only=False)

    res["bare_batches"] = runs(batch_read, repeat)
    res["encode"] = runs(lambda: tok.encode(path, progress=False), repeat)
    res["encode_to_store"] = runs(lambda: tok.encode_to_store(path, store), repeat)
    read, enc, st = res["bare_read_table"], res["encode"], res["encode_to_store"]
    res["ratio_encode_vs_read_best"] = enc["best_s"] / read["best_s"]
    res["ratio_encode_vs_read_median"] = enc["median_s"] / read["median_s"]
    res["ratio_encode_vs_read_cpu"] = enc["cpu_best_s"] / read["cpu_best_s"]
    res["ratio_store_vs_read_best"] = st["best_s"] / read["best_s"]
    res["ratio_store_vs_read_median"] = st["median_s"] / read["median_s"]
    res["encode_Mtokens_per_s"] = n_values / enc["best_s"] / 1e6
    res["encode_Mtokens_per_cpu_s"] = n_values / enc["cpu_best_s"] / 1e6  # per core
    res["cores"] = os.cpu_count()
    for label, fn in (("encode", lambda: tok.encode(path, progress=False)),
                      ("encode_to_store", lambda: tok.encode_to_store(path, store))):
        prof = StageProfile()
        with prof.patch(stage_targets()), prof.run():
            fn()
        res[f"profile_{label}"] = prof.as_dict()
        res[f"profile_{label}_text"] = prof.report(f"{label} (one run)", STAGES)
    res["load_after"] = load_average()
    return res


def print_end_to_end(res: dict) -> None:
    """The parquet -> tokens figures and their stage profiles."""
    def fig(name: str) -> str:
        r = res[name]
        return (f"best {r['best_s']:.3f} s, median {r['median_s']:.3f} s "
                f"(CPU {r['cpu_best_s']:.3f} s)")

    print(f"  parquet -> tokens ({res['load_before']} before, {res['load_after']} after):")
    print(f"    bare read_table            {fig('bare_read_table')}")
    print(f"    bare batches + to_numpy    {fig('bare_batches')}")
    print(f"    encode(path)               {fig('encode')}")
    print(f"    encode_to_store            {fig('encode_to_store')}")
    print(f"    encode / read_table        x{res['ratio_encode_vs_read_best']:.2f} best, "
          f"x{res['ratio_encode_vs_read_median']:.2f} median, x{res['ratio_encode_vs_read_cpu']:.2f} CPU "
          "(goal <= x1.5)")
    print(f"    encode_to_store / read     x{res['ratio_store_vs_read_best']:.2f} best, "
          f"x{res['ratio_store_vs_read_median']:.2f} median")
    print(f"    encode: {res['encode_Mtokens_per_s']:.1f} M tokens/s wall, "
          f"{res['encode_Mtokens_per_cpu_s']:.1f} M tokens per CPU-second (per core; {res['cores']} cores)")
    print(res["profile_encode_text"])
    print(res["profile_encode_to_store_text"])


def e2e_only(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.parquet"
        pq.write_table(pa.table(make_columns(args.rows, seed=0)), path, row_group_size=65_536)
        tok = ScalarTokenizer(n_bins=1024, scalar_columns=MAGS, progress=False).train([path])
        res = end_to_end(tok, path, ["id", *MAGS], args.repeat, Path(tmp))
    if args.json:
        print(json.dumps({k: v for k, v in res.items() if not k.endswith("_text")}, indent=2))
    else:
        print(f"ScalarTokenizer parquet -> tokens: {args.rows:,} rows x 12 float32 columns, 1024 bins")
        print_end_to_end(res)
    return 0


def make_parquet(args: argparse.Namespace) -> None:
    chunk = 1_000_000
    cols0 = make_columns(10, seed=0)
    schema = pa.table({k: cols0[k] for k in ["id", *MAGS]}).schema
    with pq.ParquetWriter(args.path, schema) as w:
        for i, start in enumerate(range(0, args.rows, chunk)):
            n = min(chunk, args.rows - start)
            cols = make_columns(n, seed=100 + i, id_start=start)
            w.write_table(pa.table({k: cols[k] for k in schema.names}), row_group_size=131_072)
    print(f"wrote {args.rows} rows to {args.path} ({Path(args.path).stat().st_size / 1e6:.0f} MB)")


def encode_store(args: argparse.Namespace) -> None:
    train = make_columns(200_000, seed=7)
    with tempfile.TemporaryDirectory() as tmp:
        tpath = Path(tmp) / "train.parquet"
        pq.write_table(pa.table(train), tpath)
        del train
        tok = ScalarTokenizer(n_bins=1024, scalar_columns=MAGS, progress=not args.quiet).train([tpath])
    t0 = time.perf_counter()
    if args.in_memory:
        res = tok.encode(args.path, return_mask=False)
        rows, where = len(res["ids"]), "memory (encode, return_mask=False)"
    else:
        store = tok.encode_to_store(args.path, Path(args.path).with_suffix(".tokens.parquet"))
        rows, where = pq.ParquetFile(store).metadata.num_rows, str(store)
        store.unlink()
    dt = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"encoded {rows} rows x 12 columns to {where} in {dt:.1f} s "
          f"({rows * 12 / dt / 1e6:.1f} M values/s); peak RSS {peak_mb:.0f} MB")


def decode_demo(args: argparse.Namespace) -> None:
    """Median |decode(encode(x)) - x| / err per column: train on the first file, test on the rest."""
    tok = ScalarTokenizer(progress=False).train(args.files[:1])
    print(f"{'column':18s} {'bins':>5s} {'rows':>7s}  median |decode(encode(x)) - x| / err")
    for path in args.files[1:]:
        res = tok.encode(path, progress=False)
        decoded, _ = tok.decode(res["scalar_tokens"])
        table = pq.read_table(path)
        for j, c in enumerate(tok.scalar_columns):
            x = table.column(c).to_numpy(zero_copy_only=False).astype(np.float64)
            ok = ~res["scalar_mask"][:, j]
            err_col = "err_" + c if c.startswith("mag_") else c + "_error"
            if err_col in table.column_names:
                e = table.column(err_col).to_numpy(zero_copy_only=False).astype(np.float64)
                stat = f"{np.median(np.abs(decoded[ok, j] - x[ok]) / e[ok]):.4f}"
            else:  # redshift: no error column, report |dz| / (1 + z)
                stat = f"{np.median(np.abs(decoded[ok, j] - x[ok]) / (1 + x[ok])):.2e} (|dz|/(1+z))"
            print(f"{c:18s} {tok.effective_bins[c]:5d} {int(ok.sum()):7d}  {stat}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd")
    p.add_argument("--rows", type=int, default=2_000_000)
    p.add_argument("--bins", type=int, default=1024)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    mk = sub.add_parser("make-parquet", help="write a large S-PLUS-like parquet file")
    mk.add_argument("--rows", type=int, default=20_000_000)
    mk.add_argument("path")
    es = sub.add_parser("encode-store", help="stream a parquet file into a token store")
    es.add_argument("path")
    es.add_argument("--quiet", action="store_true")
    es.add_argument("--in-memory", action="store_true", help="time encode() (the seed's dict) instead")
    e2e = sub.add_parser("e2e", help="only parquet -> tokens end to end, with stage profiles")
    e2e.add_argument("--rows", type=int, default=2_000_000)
    e2e.add_argument("--repeat", type=int, default=3)
    e2e.add_argument("--json", action="store_true")
    dd = sub.add_parser("decode-demo", help="decode error on demo datacube files (train on the first)")
    dd.add_argument("files", nargs="+")
    args = p.parse_args(argv)
    if args.cmd == "decode-demo":
        decode_demo(args)
        return 0
    if args.cmd == "make-parquet":
        make_parquet(args)
        return 0
    if args.cmd == "e2e":
        return e2e_only(args)
    if args.cmd == "encode-store":
        encode_store(args)
        return 0
    res = throughput(args)
    if args.json:
        print(json.dumps({k: v for k, v in res.items() if not k.endswith("_text")}, indent=2))
        return 0
    print(f"ScalarTokenizer benchmark: {res['rows']:,} rows x 12 float32 columns, "
          f"{res['nan_fraction']:.1%} NaN, {res['n_bins']} bins")
    for name in ("sklearn_kbins_C_order", "sklearn_kbins_F_order", "sklearn_kbins", "np_searchsorted",
                 "encode_numba", "encode_numpy_fallback"):
        print(f"  {name:24s} {res[name + '_Mvalues_per_s']:8.1f} M values/s")
    print(f"  encode / sklearn        x{res['ratio_encode_vs_sklearn']:.1f}")
    print(f"  encode / searchsorted   x{res['ratio_encode_vs_searchsorted']:.1f}")
    print(f"  fallback / sklearn      x{res['ratio_fallback_vs_sklearn']:.1f}")
    print(f"  identical tokens: searchsorted {res['identical_to_searchsorted_on_finite']}, "
          f"sklearn {res['identical_to_sklearn_on_finite']}, fallback {res['numpy_fallback_identical']}, "
          f"NaN -> mask {res['nan_is_mask_token']}")
    print(f"  training: {res['train_s_per_file_cap_100k']:.2f} s (per-file cap 100k), "
          f"{res['train_s_full_2m_reservoir']:.2f} s (2M reservoir per column)")
    print_end_to_end(res)
    worst = max(res["median_abs_decode_error_over_err"].values())
    print(f"  decode: worst band median |decode(encode(m)) - m| / err = {worst:.4f}")
    for c, v in res["median_abs_decode_error_over_err"].items():
        print(f"    {c:18s} {v:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
