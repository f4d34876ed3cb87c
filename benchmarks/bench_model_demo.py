"""The model against kNN on the demo datacube, with an ablation of the training settings.

Runs on the output of ``astromodal demo`` (its datacube, tokenizers and token store): for each
variant, the tiny model is trained on the store with the test rows' redshift and J0660 tokens
hidden, then predicts them with neither hidden key as input; scikit-learn kNN (k = 10) gets the
model's photometric inputs (the bin values of the other bands' tokens; the model also has the
other modalities) and, as a reference, the unbinned catalogue magnitudes. All
in the same run, on the same test rows. Variants, each adding one thing to the one before:

- ``plain``: 4M masking only (input budget 128), no ordinal features: the previous demo model;
- ``+ordinal``: Fourier features of the id for ordinal keys (``ordinal_features: 16``);
- ``+focus``: half the rows holding tok_z or the held-out band predict them from all others;
- ``+smooth``: Gaussian soft targets 1.5 bins wide for ordinal keys;
- ``+budget64``: input budget 64 (the demo's setting: faster steps, same inputs at predict).

    .venv/bin/astromodal demo --out demo_output          # once
    .venv/bin/python benchmarks/bench_model_demo.py --demo demo_output [--steps 800] [--variants ...]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

VARIANTS = ("plain", "+ordinal", "+focus", "+smooth", "+budget64")


def config_for(variant: str, steps: int, keys: list[str], focus: list[str]) -> dict:
    from astromodal_demo.run import demo_model_config

    cfg = demo_model_config(steps, 0, keys, focus_keys=focus)
    upto = VARIANTS.index(variant)
    train = cfg["train"]
    if upto < VARIANTS.index("+budget64"):
        train["input_budget"] = 128
    if upto < VARIANTS.index("+smooth"):
        train["ordinal_smoothing"] = 0.0
    if upto < VARIANTS.index("+focus"):
        train.pop("focus_keys", None)
        train.pop("focus_prob", None)
    if upto < VARIANTS.index("+ordinal"):
        cfg["model"]["ordinal_features"] = 0
    return cfg


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--demo", default="demo_output", help="an `astromodal demo` output folder")
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=VARIANTS)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from astromodal_demo.model_eval import train_and_evaluate
    from astromodal_demo.run import HELD_OUT_BAND, _truth, model_token_keys

    from astromodal.tokenizers import ScalarTokenizer
    from astromodal_core.store import store_metadata

    demo = Path(args.demo)
    files = sorted((demo / "datacube").glob("*.parquet"))
    if not files or not (demo / "tokens.parquet").is_file():
        raise SystemExit(f"{demo}: not an `astromodal demo` output (run `astromodal demo --out {demo}`)")
    truth = _truth(files)
    store = demo / "tokens.parquet"
    keys = model_token_keys(list(store_metadata(store)["token_keys"]))
    scalar = ScalarTokenizer.load(demo / "tokenizers" / "scalar_tokenizer_config.npz")
    focus = ["tok_z", f"tok_mag_pstotal_{HELD_OUT_BAND}"]
    print(f"demo {demo}: {len(truth['id'])} objects, {len(keys)} token keys, {args.steps} steps, "
          f"torch threads {torch.get_num_threads()}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for v in args.variants:
            t0 = time.perf_counter()
            res = train_and_evaluate(store, Path(tmp) / v.strip("+"), truth, scalar,
                                     held_out_band=HELD_OUT_BAND,
                                     model_config=config_for(v, args.steps, keys, focus),
                                     progress=False)
            sec = time.perf_counter() - t0
            rows.append((v, sec, res["tasks"]))
            z, m = res["tasks"]["tok_z"], res["tasks"][f"tok_mag_pstotal_{HELD_OUT_BAND}"]
            print(json.dumps({"variant": v, "seconds": round(sec, 1),
                              "z": {k: z[k] for k in ("model", "model_mean", "knn", "knn_catalogue")},
                              "j0660": {k: m[k] for k in ("model", "model_mean", "knn", "knn_catalogue")}}))
    print()
    print("| variant | train+eval s | z sigma_NMAD | z outliers | z outliers (mean) | J0660 median abs |")
    print("|---|---|---|---|---|---|")
    for v, sec, t in rows:
        z, m = t["tok_z"], t[f"tok_mag_pstotal_{HELD_OUT_BAND}"]
        print(f"| {v} | {sec:.0f} | {z['model']['sigma_nmad']:.3f} | {100 * z['model']['outliers']:.1f}% | "
              f"{100 * z['model_mean']['outliers']:.1f}% | {m['model']['median_abs']:.3f} |")
    z, m = rows[-1][2]["tok_z"], rows[-1][2][f"tok_mag_pstotal_{HELD_OUT_BAND}"]
    for name in ("knn", "knn_catalogue"):
        print(f"| kNN ({'photometric tokens' if name == 'knn' else 'catalogue mags'}) | - | {z[name]['sigma_nmad']:.3f} | "
              f"{100 * z[name]['outliers']:.1f}% | - | {m[name]['median_abs']:.3f} |")
    print(f"\nn = {z['model']['n']} test objects with a redshift, {m['model']['n']} with J0660")


if __name__ == "__main__":
    main()
