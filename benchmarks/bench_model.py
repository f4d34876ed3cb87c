"""Benchmark of the astromodal model plugin: training tokens/s and MFU, embeddings/s, model vs kNN.

    .venv/bin/python benchmarks/bench_model.py            # CPU: tiny preset (+ base on CUDA)
    .venv/bin/python benchmarks/bench_model.py --quick    # fewer steps

MFU is computed the nanoGPT / PaLM way: model FLOPs per training step (3x the forward
matmul FLOPs, attention included, embedding lookups excluded) times steps per second,
divided by a peak. On CUDA the peak is the vendor's dense bf16 number for the GPU (H100/H200
SXM: 989 TFLOP/s); on CPU there is no meaningful vendor peak, so the denominator is the
fp32 matmul throughput measured in this run (a 2048^3 torch.matmul), and the script says so.
The model-vs-kNN comparison trains the tiny preset on the synthetic token store of
astromodal_model.synthetic and predicts the held-out scalar tok_t_c from the other keys,
against scikit-learn's KNeighborsRegressor on the same input tokens, on the same held-out rows.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from astromodal_model import AstroModel, ModelConfig
from astromodal_model.data import to_device
from astromodal_model.masking import mask_batch

from astromodal_core import TokenKey

PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12}


def bench_keys() -> dict[str, TokenKey]:
    """A realistic mix: 12 photometric scalars, a 3-arm spectrum, a 16x16 image grid."""
    keys = [TokenKey(f"tok_mag_{i}", 1025, "scalar", mask_token=1024) for i in range(12)]
    keys += [TokenKey(f"tok_spec_{a}", 1025, "ragged", max_length=256, mask_token=1024) for a in "brz"]
    keys.append(TokenKey("tok_image", 1025, "grid", max_length=256, shape=(16, 16), mask_token=1024))
    return {k.name: k for k in keys}


def dense_rows(keys: dict[str, TokenKey], n: int, seed: int = 0) -> dict[str, np.ndarray]:
    g = np.random.default_rng(seed)
    return {k: g.integers(0, 1024, (n, 1 if key.layout == "scalar" else key.max_length)) for k, key in keys.items()}


def forward_flops(cfg: ModelConfig, E: int, T: int, vocab: int) -> float:
    """Matmul FLOPs of one forward pass of one sample with E encoder and T target tokens."""
    d, h = cfg.dim, int(cfg.dim * cfg.mlp_ratio)
    enc = cfg.encoder_depth * E * (2 * 4 * d * d + 2 * 2 * d * h + 2 * 2 * E * d)
    dec_tok = 2 * 4 * d * d + 2 * 2 * T * d + 2 * 2 * d * d + 2 * 2 * E * d + 2 * 2 * d * h
    dec = cfg.decoder_depth * (T * dec_tok + E * 2 * 2 * d * d)  # + cross-attention k, v of the context
    heads = T * 2 * d * vocab
    return float(enc + dec + heads)


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int = 2048, reps: int = 10) -> float:
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    sync(device)
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - t)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench_training(preset: str, device: torch.device, batch: int, steps: int, E: int = 600, T: int = 200) -> dict:
    keys = bench_keys()
    torch.manual_seed(0)
    model = AstroModel(ModelConfig.preset(preset), keys).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, **({"fused": True} if device.type == "cuda" else {}))
    dense = dense_rows(keys, batch * 4)
    ids = np.arange(batch * 4)
    t0 = time.perf_counter()
    batches = [
        mask_batch(ids[i * batch:(i + 1) * batch], {k: v[i * batch:(i + 1) * batch] for k, v in dense.items()},
                   list(keys), input_budget=E, target_budget=T, step=i)
        for i in range(4)
    ]
    mask_rows_s = 4 * batch / (time.perf_counter() - t0)
    batches = [to_device(b, device) for b in batches]
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)

    def step(b):
        with amp:
            s, c = model.loss_terms(b)
        loss = (s / c.clamp_min(1)).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    for i in range(2):
        step(batches[i % 4])
    sync(device)
    t = time.perf_counter()
    for i in range(steps):
        step(batches[i % 4])
    sync(device)
    dt = (time.perf_counter() - t) / steps
    vocab = 1025
    flops = 3 * forward_flops(model.config, E, T, vocab) * batch
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        peak = next((v for k, v in PEAK_BF16.items() if k in name), None)
        peak_note = f"vendor dense bf16 peak of {name}" if peak else "measured bf16 matmul (unknown GPU)"
        peak = peak or matmul_peak(device, torch.bfloat16, 8192)
    else:
        peak = matmul_peak(device, torch.float32)
        peak_note = "fp32 torch.matmul 2048^3 measured in this run (CPU: no meaningful vendor peak)"
    return {
        "preset": preset, "device": str(device), "params": model.num_parameters(),
        "batch": batch, "encoder_tokens": E, "target_tokens": T, "step_s": dt,
        "train_tokens_per_s": batch * (E + T) / dt, "model_tflops_per_s": flops / dt / 1e12,
        "peak_tflops_per_s": peak / 1e12, "peak": peak_note, "mfu": flops / dt / peak,
        "masking_rows_per_s": mask_rows_s,
    }


@torch.no_grad()
def bench_embed(preset: str, device: torch.device, batch: int, reps: int, E: int = 600) -> dict:
    keys = bench_keys()
    model = AstroModel(ModelConfig.preset(preset), keys).to(device).eval()
    dense = dense_rows(keys, batch)
    inputs = {k: torch.from_numpy(v).to(device) for k, v in dense.items()}
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)
    with amp:
        model.embed(inputs, E)
        sync(device)
        t = time.perf_counter()
        for _ in range(reps):
            model.embed(inputs, E)
        sync(device)
    dt = (time.perf_counter() - t) / reps
    return {"preset": preset, "device": str(device), "batch": batch, "encoder_tokens": E, "embeddings_per_s": batch / dt}


def bench_vs_knn(steps: int) -> dict:
    from astromodal_model import predict_store, train_model
    from astromodal_model.data import iter_dense_chunks
    from astromodal_model.synthetic import KEYMAP, synthetic_token_store
    from sklearn.neighbors import KNeighborsRegressor

    from astromodal_core.store import read_token_store

    tmp = Path(tempfile.mkdtemp(prefix="bench_model_"))
    train = synthetic_token_store(tmp / "train.parquet", 4000, seed=1)
    test = synthetic_token_store(tmp / "test.parquet", 1000, seed=2, first_id=100_000)
    cfg = {"model": {"preset": "tiny"}, "train": {
        "steps": steps, "batch_size": 64, "lr": 2e-3, "warmup_steps": 20, "input_budget": 24,
        "target_budget": 12, "val_fraction": 0.05, "val_every": steps, "checkpoint_every": steps,
        "chunk_rows": 4096}}
    t = time.perf_counter()
    model, _ = train_model(train, cfg, tmp / "run", progress=False)
    train_s = time.perf_counter() - t
    target = "tok_t_c"
    res = predict_store(model, test, target, codec=np.arange(16.0), progress=False)
    _, cols = read_token_store(test, [target])
    truth = cols[target].astype(float)
    inputs = {k: v for k, v in KEYMAP.items() if k != target}

    def features(path):
        rows = [np.concatenate([d[k].astype(float) for k in inputs], 1) for _, d in iter_dense_chunks(path, inputs)]
        return np.concatenate(rows)  # token ids, -1 where absent

    _, train_cols = read_token_store(train, [target])
    knn = KNeighborsRegressor(n_neighbors=15).fit(features(train), train_cols[target].astype(float))
    knn_pred = knn.predict(features(test))
    return {
        "train_rows": 4000, "test_rows": 1000, "steps": steps, "train_s": train_s,
        "mae_model_bins": float(np.abs(res["mean"] - truth).mean()),
        "mae_knn_bins": float(np.abs(knn_pred - truth).mean()),
        "mae_median_bins": float(np.abs(np.median(train_cols[target]) - truth).mean()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer steps")
    ap.add_argument("--json", action="store_true", help="print JSON")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--knn-steps", type=int, default=0, help="training steps of the model-vs-kNN run")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    out: dict = {"torch": torch.__version__, "threads": torch.get_num_threads()}
    cpu = torch.device("cpu")
    out["train_tiny_cpu"] = bench_training("tiny", cpu, batch=8, steps=3 if args.quick else 10)
    out["embed_tiny_cpu"] = bench_embed("tiny", cpu, batch=64, reps=2 if args.quick else 5)
    if torch.cuda.is_available():
        gpu = torch.device("cuda")
        out["train_base_cuda"] = bench_training("base", gpu, batch=32, steps=10 if args.quick else 30)
        out["embed_base_cuda"] = bench_embed("base", gpu, batch=256, reps=5 if args.quick else 20)
    out["model_vs_knn"] = bench_vs_knn(args.knn_steps or (200 if args.quick else 800))
    if args.json:
        print(json.dumps(out, indent=2))
        return
    for name, r in out.items():
        if isinstance(r, dict):
            print(f"{name}:")
            for k, v in r.items():
                print(f"  {k}: {v:.4g}" if isinstance(v, float) else f"  {k}: {v}")
        else:
            print(f"{name}: {r}")


if __name__ == "__main__":
    main()
