"""Benchmark of the spectra plugin's ZTF light-curve tokens on real data: tokens per band,
decoded magnitude and time errors of the earlier form (padded rows, delta times) and of the
default (ragged rows, times since the first epoch), in the same run.

Data: the real ZTF light curves of 2289 SNe Ia of the ZTF Bright Transient Survey in
``../shared/data/ztf_snia/ztf_snia_bts.parquet`` (see its PROVENANCE.md; not shipped with
the project). Both tokenizers train on the same rows: all of them (``--split all``, as a
user tokenising a survey does), or 80 % of them, chosen by a hash of the id, with the figures
on the other 20 % (``--split holdout``).

    .venv/bin/python benchmarks/bench_spectrum_lightcurves.py [--split all|holdout] [--json out.json]

Results are written up in benchmarks/results_spectra.md.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "ztf_snia" / "ztf_snia_bts.parquet"
BANDS = ("g", "r")
CONFIGS = {
    "earlier (padded, delta times)": {"layout": "padded", "time_encoding": "delta"},
    "default (ragged, times since first epoch)": {},
}


def split(table: pa.Table, how: str) -> tuple[pa.Table, pa.Table]:
    """``(train, evaluate)`` rows."""
    if how == "all":
        return table, table
    from astromodal_core.sampling import hash_keys

    h = hash_keys(table.column("id").to_numpy(), 0, salt="ztf-bench") % np.uint64(10)
    test = h < np.uint64(2)
    return table.filter(pa.array(~test)), table.filter(pa.array(test))


def truth(table: pa.Table, band: str) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    cols = [table.column(f"ztf_{k}_{band}").to_pylist() for k in ("hmjd", "mag", "magerr")]
    return tuple([np.asarray(r, dtype=np.float64) for r in c] for c in cols)  # type: ignore[return-value]


def figures(tok: Any, path: Path, table: pa.Table) -> dict[str, Any]:
    """Tokens per band, and the decoded errors over every point of every light curve."""
    res = tok.encode(path)
    keys = {k.name: k for k in tok.token_keys}
    out: dict[str, Any] = {}
    for band in BANDS:
        name = f"ztf_{band}"
        dec = tok.decode(res, name)
        times, mags, errs = truth(table, band)
        dt, dm, pull, worst = [], [], [], []
        for i, (t, m, e) in enumerate(zip(times, mags, errs)):
            if not len(t):
                continue
            rel = t - t[0]
            n = len(t)
            ok = ~np.asarray(dec.mask[i, :n])
            d_t = np.abs(np.asarray(dec.time[i, :n])[ok] - rel[ok])
            d_m = np.asarray(dec.mag[i, :n])[ok] - m[ok]
            dt.append(d_t)
            dm.append(np.abs(d_m))
            pull.append(np.abs(d_m) / e[ok])
            worst.append(d_t.max(initial=0.0))
        dt_all, dm_all, pull_all = (np.concatenate(x) for x in (dt, dm, pull))
        key = keys[f"tok_lightcurve_{name}"]
        lengths = np.array([len(t) for t in times])
        main = res.get(f"tokens_{name}")
        stored = main.size if main is not None else len(res[f"tokens_{name}_flat"])
        out[band] = {
            "max_length": key.max_length, "layout": key.layout,
            "longest_light_curve": int(lengths.max()), "points": int(lengths.sum()),
            "tokens_stored": int(stored),
            "padding_fraction": float(1 - lengths.sum() / stored) if stored else 0.0,
            "time_error_days": {"median": float(np.median(dt_all)),
                                "p90": float(np.percentile(dt_all, 90)),
                                "max": float(dt_all.max()),
                                "objects_over_1_day": int(np.sum(np.array(worst) > 1.0))},
            "mag_error": {"median_abs_mag": float(np.median(dm_all)),
                          "median_abs_over_err": float(np.median(pull_all)),
                          "p90_abs_over_err": float(np.percentile(pull_all, 90))},
            "extra_keys": sorted(k for k in keys if k.startswith(f"tok_lightcurve_{name}_")),
            "decoded_points": int(len(dt_all)),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--split", choices=("all", "holdout"), default="all")
    ap.add_argument("--codebook", type=int, default=2048)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    from astromodal_spectra import SpectrumTokenizer

    if not args.data.is_file():
        raise SystemExit(f"{args.data}: not found (the real ZTF sample lives in ../shared/data)")
    table = pq.read_table(args.data)
    train, test = split(table, args.split)
    results: dict[str, Any] = {"rows": {"train": train.num_rows, "evaluate": test.num_rows},
                               "split": args.split, "configs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        ptrain, ptest = Path(tmp) / "train.parquet", Path(tmp) / "test.parquet"
        pq.write_table(train, ptrain)
        pq.write_table(test, ptest)
        for label, extra in CONFIGS.items():
            groups = [{"name": f"ztf_{b}", "kind": "ztf_mag_err", **extra} for b in BANDS]
            tok = SpectrumTokenizer(codebook_size=args.codebook, groups=groups, progress=False)
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # fewer distinct vectors; clipping
                tok.train([ptrain])
                fit_s = time.perf_counter() - t0
                figs = figures(tok, ptest, test)
            results["configs"][label] = {"fit_seconds": round(fit_s, 1), "bands": figs}
            print(f"\n{label} (fit {fit_s:.1f} s)")
            for band, f in figs.items():
                te, me = f["time_error_days"], f["mag_error"]
                print(f"  {band}: {f['layout']} max_length {f['max_length']} (longest light curve "
                      f"{f['longest_light_curve']}), padding {100 * f['padding_fraction']:.1f} %; "
                      f"time error median {te['median']:.3f} d, p90 {te['p90']:.3f} d, max "
                      f"{te['max']:.2f} d ({te['objects_over_1_day']} objects over 1 d); "
                      f"|dmag|/err median {me['median_abs_over_err']:.3f}, p90 "
                      f"{me['p90_abs_over_err']:.3f}; |dmag| median {me['median_abs_mag']:.4f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
