"""Photometric redshifts of real BOSS galaxies: the model through the CLI against a random forest
and kNN on the raw magnitudes and colours, measured in the same run.

    .venv/bin/python benchmarks/bench_photoz.py                 # the recorded run
    .venv/bin/python benchmarks/bench_photoz.py --steps 300     # a quick look

Data: ``../shared/data/photoz/`` (12,000 SDSS-III BOSS DR10 galaxies, ugriz model magnitudes
and errors and the spectroscopic redshift; see its PROVENANCE.md). It is read from there (set
``ASTROMODAL_PHOTOZ_DATA`` or ``--data`` for another place), never copied into the project:
the script writes its working parquet files under ``--out``. Train on ``boss_dr10_1.csv``,
evaluate on ``boss_dr10_3.csv``.

The model goes the documented way, every stage a CLI command: ``astromodal tokenizers train``
(quantile bins for ugriz and z) -> ``astromodal encode`` -> ``astromodal train --tokenizers``
-> ``astromodal predict --target tok_z --exclude tok_z --probs`` (its point estimate is the
median of the predicted distribution) and ``astromodal embed --exclude tok_z``. The baselines
are scikit-learn's RandomForestRegressor and KNeighborsRegressor on ugriz + the four colours.

Figures: sigma_NMAD of dz = (z_phot - z) / (1 + z), outlier fraction (|dz| > 0.15), median
bias, the CRPS of the predicted distribution (the model's over its bins; the forest's over its
trees' predictions; kNN's over its neighbours' redshifts) and the PIT histogram, flat within
the printed tolerance when every one of its 10 bins has a density within 1 +- 0.2. Embedding
retrieval: the median |dz| / (1 + z) between a galaxy and its 5 nearest neighbours (cosine in
the model's centred embedding; Euclidean in the PCA of the standardised raw inputs that keeps
95 % of their variance, and in all nine of them), against random galaxies. GPU: with a CUDA device the script also times the ``base`` preset on these tokens
(bf16 autocast, fused AdamW, torch.compile) and prints tokens/s and MFU; on CPU it says those
figures are unmeasured.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from astromodal_model.scoring import crps, photoz_metrics, pit, pit_flat, pit_histogram

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "photoz"
BANDS = "ugriz"
PIT_TOLERANCE = 0.2
CPU_SECONDS: dict[str, float] = {}
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12}


def model_yaml(steps: int, seed: int, threads: int | None, with_errors: bool, batch_size: int = 256) -> dict[str, Any]:
    """The model and training settings of the recorded run (a tiny transformer, masked
    multimodal training with the redshift as a focus key, best validation checkpoint)."""
    keys = [f"tok_mag_pstotal_{b}" for b in BANDS] + ["tok_z"]
    if with_errors:
        keys += [f"tok_err_mag_pstotal_{b}" for b in BANDS]
    train: dict[str, Any] = {
        "steps": steps, "batch_size": batch_size, "lr": 2.0e-3, "warmup_steps": min(100, steps // 10),
        "min_lr_ratio": 0.05, "input_budget": 16, "target_budget": 8,
        "focus_keys": ["tok_z"], "focus_prob": 0.5, "val_fraction": 0.1, "val_every": max(1, steps // 12),
        "checkpoint_every": steps, "seed": seed, "token_keys": keys, "ema_decay": 0.999,
    }
    if threads is not None:
        train["threads"] = threads
    return {"model": {"preset": "tiny"}, "train": train}


def tokenizer_yaml(with_errors: bool) -> dict[str, Any]:
    cols = [f"mag_pstotal_{b}" for b in BANDS] + ["z"]
    if with_errors:
        cols += [f"err_mag_pstotal_{b}" for b in BANDS]
    return {"tokenizers": {"scalar": {
        "n_bins": 1024, "scalar_columns": cols, "apply_row_filter": False, "apply_magerr_filter": False,
    }}}


def read_csv(path: Path, first_id: int) -> dict[str, np.ndarray]:
    """A BOSS csv as canonical columns (``mag_pstotal_<band>``, ``err_mag_pstotal_<band>``,
    ``z``) with an ``id``."""
    import pandas as pd

    d = pd.read_csv(path)
    out = {"id": np.arange(len(d), dtype=np.int64) + first_id}
    for b in BANDS:
        out[f"mag_pstotal_{b}"] = d[f"MAG_{b.upper()}"].to_numpy(np.float64)
        out[f"err_mag_pstotal_{b}"] = d[f"MAGERR_{b.upper()}"].to_numpy(np.float64)
    out["z"] = d["Z"].to_numpy(np.float64)
    return out


def raw_features(cat: dict[str, np.ndarray]) -> np.ndarray:
    """ugriz and the four colours u-g, g-r, r-i, i-z."""
    m = np.stack([cat[f"mag_pstotal_{b}"] for b in BANDS], axis=1)
    return np.concatenate([m, m[:, :-1] - m[:, 1:]], axis=1)


def cli(*args: str, threads: int | None = None) -> tuple[float, str]:
    """Run ``astromodal ARGS``; (wall seconds, stdout); its CPU seconds go to ``CPU_SECONDS``.
    A failure raises with its stderr."""
    exe = shutil.which("astromodal", path=str(Path(sys.executable).parent))
    cmd = [exe] if exe else [sys.executable, "-m", "astromodal_model"]
    env = dict(os.environ)
    if threads is not None:  # the tokenizer stages' numpy / numba threads
        env.setdefault("OMP_NUM_THREADS", str(threads))
        env.setdefault("NUMBA_NUM_THREADS", str(threads))
    t = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    res = subprocess.run([*cmd, *args], capture_output=True, text=True, env=env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if res.returncode:
        raise RuntimeError(f"astromodal {' '.join(args)} failed:\n{res.stderr}")
    CPU_SECONDS[args[0]] = CPU_SECONDS.get(args[0], 0.0) + (after.ru_utime - before.ru_utime) + (
        after.ru_stime - before.ru_stime)
    return time.perf_counter() - t, res.stdout


def distribution_scores(atoms: np.ndarray, probs: np.ndarray | None, z: np.ndarray) -> dict[str, Any]:
    p = pit(atoms, probs, z)
    flat, worst = pit_flat(p, PIT_TOLERANCE)
    return {"crps": float(np.mean(crps(atoms, probs, z))), "pit_hist": pit_histogram(p).round(3).tolist(),
            "pit_flat": bool(flat), "pit_worst": round(worst, 3)}


def retrieval(emb: np.ndarray, z: np.ndarray, k: int = 5, metric: str = "cosine") -> float:
    """Median over galaxies of the median |z_nb - z| / (1 + z) of their k nearest neighbours
    (cosine: after centring the vectors)."""
    from sklearn.neighbors import NearestNeighbors

    if metric == "cosine":
        emb = emb - emb.mean(0)
    nn = NearestNeighbors(n_neighbors=k + 1, metric=metric).fit(emb)
    idx = nn.kneighbors(emb, return_distance=False)[:, 1:]
    return float(np.median(np.median(np.abs(z[idx] - z[:, None]), axis=1) / (1 + z)))


def gpu_throughput(tokens: Path, tokenizers: Path, steps: int = 30, batch: int = 256) -> dict[str, Any]:
    """Training tokens/s and MFU of the ``base`` preset on CUDA (bf16 autocast, fused AdamW,
    compiled blocks) on these tokens; {"unmeasured": reason} without a CUDA device."""
    import torch

    if not torch.cuda.is_available():
        return {"unmeasured": "no CUDA device in this run"}
    from astromodal_model import AstroModel, ModelConfig
    from astromodal_model.data import global_batches, to_device
    from astromodal_model.masking import mask_batch
    from astromodal_model.train import compile_blocks

    dev = torch.device("cuda")
    cfg = ModelConfig.preset("base")
    model = AstroModel.from_tokenizer_set(tokenizers, cfg).to(dev)
    compiled = compile_blocks(model, True, dev)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    stream = global_batches(tokens, model.token_keys, batch_size=batch, seed=0, val_fraction=0.0)
    batches = []
    for s in range(steps + 5):
        ids, dense = next(stream)
        batches.append(to_device(mask_batch(ids, dense, model.key_names, input_budget=16, target_budget=8,
                                            step=s, focus=["tok_z"], focus_prob=0.5), dev))

    def step(b: dict) -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            sums, counts = model.loss_terms(b)
        loss = (sums / counts.clamp_min(1)).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for b in batches[:5]:
        step(b)
    torch.cuda.synchronize()
    t = time.perf_counter()
    n_tok = 0
    flops = 0.0
    d, h = cfg.dim, int(cfg.dim * cfg.mlp_ratio)
    for b in batches[5:]:
        step(b)
        E, T = int(b["enc_valid"].sum()), int(b["dec_valid"].sum())
        n_tok += E + T
        # 3 x forward matmul FLOPs (enc: qkv+proj+mlp per token; dec: + cross q/proj, context k/v)
        flops += 3 * (cfg.encoder_depth * E * (8 * d * d + 4 * d * h)
                      + cfg.decoder_depth * (T * (16 * d * d + 4 * d * h) + E * 4 * d * d))
    torch.cuda.synchronize()
    sec = time.perf_counter() - t
    name = torch.cuda.get_device_name()
    peak = next((v for k, v in PEAK_BF16.items() if k in name), None)
    return {"device": name, "compiled": compiled, "batch": batch, "steps": steps, "step_s": sec / steps,
            "tokens_per_s": n_tok / sec, "model_tflops": flops / sec / 1e12,
            "mfu": None if peak is None else flops / sec / peak, "peak_tflops": None if peak is None else peak / 1e12}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=None,
                    help="folder of boss_dr10_{1,3}.csv (default: $ASTROMODAL_PHOTOZ_DATA or ../shared/data/photoz)")
    ap.add_argument("--out", type=Path, default=Path("bench_photoz_output"))
    ap.add_argument("--steps", type=int, default=5000)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: the model's default)")
    ap.add_argument("--with-errors", action="store_true", help="also tokenize the magnitude errors as inputs")
    args = ap.parse_args()
    named = args.data is not None or "ASTROMODAL_PHOTOZ_DATA" in os.environ
    if args.data is None:
        args.data = Path(os.environ.get("ASTROMODAL_PHOTOZ_DATA", DEFAULT_DATA))
    files = [args.data / "boss_dr10_1.csv", args.data / "boss_dr10_3.csv"]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        message = f"bench_photoz: data not found: {missing[0]} (see ../shared/data/photoz/PROVENANCE.md)"
        if named:  # a folder the user named: a mistake
            sys.exit(message)
        print(f"{message}; skipped")  # the default place, absent in this checkout: `make bench` goes on
        return
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    train_cat, test_cat = read_csv(files[0], 0), read_csv(files[1], 1_000_000)
    pq.write_table(pa.table(train_cat), out / "train.parquet")
    pq.write_table(pa.table(test_cat), out / "test.parquet")
    (out / "tokenizers.yaml").write_text(yaml.safe_dump(tokenizer_yaml(args.with_errors), sort_keys=False))
    (out / "model.yaml").write_text(yaml.safe_dump(model_yaml(args.steps, args.seed, args.threads,
                                                              args.with_errors, args.batch_size), sort_keys=False))
    th = args.threads
    wall: dict[str, float] = {}
    tok = str(out / "tokenizers")
    wall["tokenizers train"], _ = cli("tokenizers", "train", "--config", str(out / "tokenizers.yaml"),
                                      "--out", tok, "--workers", "1", "--quiet", str(out / "train.parquet"),
                                      threads=th)
    t_enc = 0.0
    for name in ("train", "test"):
        sec, _ = cli("encode", "--config", str(out / "tokenizers.yaml"), "--tokenizers", tok, "--out",
                     str(out / f"store_{name}"), "--merged", str(out / f"{name}_tokens.parquet"), "--workers", "1",
                     "--force", "--quiet", str(out / f"{name}.parquet"), threads=th)
        t_enc += sec
    wall["encode (both files)"] = t_enc
    thread_args = ["--threads", str(th)] if th else []
    wall["train"], stdout = cli("train", "--tokens", str(out / "train_tokens.parquet"), "--config",
                                str(out / "model.yaml"), "--out", str(out / "run"), "--tokenizers", tok,
                                "--no-resume", "--quiet", "--json", *thread_args)
    summary = json.loads(stdout)
    wall["predict"], _ = cli("predict", "--model", str(out / "run" / "model"), "--tokens",
                             str(out / "test_tokens.parquet"), "--target", "tok_z", "--exclude", "tok_z",
                             "--tokenizers", tok, "--probs", "--out", str(out / "pred.parquet"), "--quiet",
                             *thread_args)
    wall["embed"], _ = cli("embed", "--model", str(out / "run" / "model"), "--tokens",
                           str(out / "test_tokens.parquet"), "--exclude", "tok_z", "--out",
                           str(out / "emb.parquet"), "--quiet", *thread_args)

    from astromodal_core.tokenizer_set import TokenizerSet

    tset = TokenizerSet.read(tok)
    values = tset.load(tset.owner("tok_z")).token_values("tok_z")
    pred = pq.read_table(out / "pred.parquet").to_pydict()
    where = {int(i): n for n, i in enumerate(test_cat["id"])}
    rows = np.array([where[int(i)] for i in pred["id"]])
    z = test_cat["z"][rows]
    probs = np.asarray(pred["probs"], dtype=np.float64)
    results: dict[str, Any] = {"n_train": len(train_cat["id"]), "n_test": len(z), "steps": args.steps,
                               "train_summary": summary}
    model = {**photoz_metrics(np.asarray(pred["median"]), z), **distribution_scores(values, probs, z)}

    from sklearn.ensemble import RandomForestRegressor
    from sklearn.neighbors import KNeighborsRegressor
    from sklearn.preprocessing import StandardScaler

    x_train, x_test = raw_features(train_cat), raw_features(test_cat)[rows]
    z_train = train_cat["z"]
    t = time.perf_counter()
    rf = RandomForestRegressor(n_estimators=200, random_state=args.seed, n_jobs=th or 1).fit(x_train, z_train)
    trees = np.stack([tree.predict(x_test) for tree in rf.estimators_], axis=1)
    wall["random forest (fit + predict)"] = time.perf_counter() - t
    forest = {**photoz_metrics(trees.mean(1), z), **distribution_scores(trees, None, z)}
    t = time.perf_counter()
    scaler = StandardScaler().fit(x_train)
    knn = KNeighborsRegressor(n_neighbors=20, weights="distance").fit(scaler.transform(x_train), z_train)
    dist, idx = knn.kneighbors(scaler.transform(x_test))
    w = 1.0 / np.maximum(dist, 1e-12)
    wall["kNN (fit + predict)"] = time.perf_counter() - t
    knn_pred = knn.predict(scaler.transform(x_test))
    near = {**photoz_metrics(knn_pred, z), **distribution_scores(z_train[idx], w, z)}
    results["methods"] = {"model (median)": model, "random forest": forest, "kNN (k=20)": near}

    emb_table = pq.read_table(out / "emb.parquet").to_pydict()
    emb_rows = np.array([where[int(i)] for i in emb_table["id"]])
    emb = np.asarray(emb_table["embedding"], dtype=np.float64)
    z_emb = test_cat["z"][emb_rows]
    from sklearn.decomposition import PCA

    raw = StandardScaler().fit_transform(raw_features(test_cat)[emb_rows])
    rand = np.random.default_rng(args.seed).integers(0, len(z_emb), (len(z_emb), 5))
    pca = PCA(0.95, svd_solver="full").fit_transform(raw)
    results["retrieval"] = {
        f"model embedding ({emb.shape[1]} dims, cosine)": retrieval(emb, z_emb),
        f"PCA of the raw inputs ({pca.shape[1]} components, 95 % of the variance)": retrieval(
            pca, z_emb, metric="euclidean"),
        "all 9 raw inputs, standardised": retrieval(raw, z_emb, metric="euclidean"),
        "random galaxies": float(np.median(np.median(np.abs(z_emb[rand] - z_emb[:, None]), 1) / (1 + z_emb))),
    }
    history = json.loads((out / "run" / "history.json").read_text())
    results["best"], results["stopped_early"] = history.get("best"), history.get("stopped_early")
    results["wall_s"] = {k: round(v, 1) for k, v in wall.items()}
    results["cpu_s"] = {k: round(v, 1) for k, v in CPU_SECONDS.items()}
    results["load_average"] = os.getloadavg()
    results["gpu"] = gpu_throughput(out / "train_tokens.parquet", out / "tokenizers")
    m, f = model, forest
    results["done_when"] = {
        "sigma_nmad <= forest": m["sigma_nmad"] <= f["sigma_nmad"],
        "outliers <= forest": m["outliers"] <= f["outliers"],
        f"PIT flat within +-{PIT_TOLERANCE}": m["pit_flat"],
        "CPU training <= 900 s": CPU_SECONDS["train"] <= 900,
    }
    (out / "results.json").write_text(json.dumps(results, indent=2))
    report(results)


def report(r: dict[str, Any]) -> None:
    print(f"BOSS DR10: train {r['n_train']} galaxies (boss_dr10_1), test {r['n_test']} (boss_dr10_3); "
          f"model steps {r['steps']}, best validation at step {r['best'] and r['best']['step']}"
          + (f", stopped early at {r['stopped_early']}" if r["stopped_early"] else ""))
    print(f"\n| method | sigma_NMAD | outliers | bias | CRPS | PIT max dev (tolerance {PIT_TOLERANCE}) |")
    print("|---|---|---|---|---|---|")
    for name, v in r["methods"].items():
        print(f"| {name} | {v['sigma_nmad']:.4f} | {100 * v['outliers']:.2f} % | {v['bias']:+.4f} | "
              f"{v['crps']:.4f} | {v['pit_worst']:.2f} ({'flat' if v['pit_flat'] else 'not flat'}) |")
    print("\nPIT histograms (density in 10 bins of [0, 1]; 1.0 = calibrated):")
    for name, v in r["methods"].items():
        print(f"  {name:16s} " + " ".join(f"{x:.2f}" for x in v["pit_hist"]))
    print("\nRetrieval, median |dz|/(1+z) to the 5 nearest neighbours (lower is better):")
    for name, v in r["retrieval"].items():
        print(f"  {name:58s} {v:.4f}")
    print("\nWall time (s): " + ", ".join(f"{k} {v}" for k, v in r["wall_s"].items()))
    print("CPU time of the CLI commands (s): " + ", ".join(f"{k} {v}" for k, v in r["cpu_s"].items())
          + "; load average at the end " + ", ".join(f"{x:.1f}" for x in r["load_average"]))
    g = r["gpu"]
    if "unmeasured" in g:
        print(f"GPU: tokens/s and MFU unmeasured ({g['unmeasured']})")
    else:
        mfu = "n/a (unknown peak)" if g["mfu"] is None else f"{100 * g['mfu']:.1f} %"
        print(f"GPU {g['device']}: base preset, batch {g['batch']}, {g['step_s'] * 1e3:.1f} ms/step, "
              f"{g['tokens_per_s']:,.0f} tokens/s, {g['model_tflops']:.1f} TFLOP/s, MFU {mfu}")
    print("\nDone when: " + ", ".join(f"{k}: {'yes' if v else 'NO'}" for k, v in r["done_when"].items()))


if __name__ == "__main__":
    main()
