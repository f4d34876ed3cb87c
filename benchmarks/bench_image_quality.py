"""Image tokenizer quality on real multi-band cutouts, against a same-budget linear codebook.

    .venv/bin/python benchmarks/bench_image_quality.py [--epochs 10,20,40] [--legacy] [--quick]

Data: the real SDSS g, r, i images of one field (run 1737, 682 x 496 pixels of 1.19 arcsec,
registered to one grid; ``plugins/image/tests/data/sdss``, see the PROVENANCE there). The two
blank rows the reprojection left at the bottom of r and i are cropped. The field is cut
spatially: 32x32 training cutouts (stride 16, overlapping) from x < 464, held-out cutouts
(32x32, disjoint) from x >= 480, so no held-out pixel was seen in training.

For every epoch count the tokenizer is trained from scratch with the default recipe
(``ImageTokenizer(cutout_size=32, bands=["g", "r", "i"], epochs=E)`` and nothing else; the
recipe picks its best validation epoch) and the held-out cutouts go through tokens and back.
The baseline in the same run has the same token budget: PCA with 2 components on 8x8-pixel
cells of all bands (the tokenizer's 8x8 cells, 2 latents each), then a 1024-entry k-means
codebook of the 2-d coefficients (the core's exact k-means), fit on the same training cutouts,
in the same arcsinh-stretched space as the tokenizer and, separately, in flux.

Figures, per band and for all bands pooled, in units of each band's sky noise sigma
(1.4826 MAD of the training region):

- source RMS: RMS of (reconstruction - input) on pixels above sky + 5 sigma, and its ratio to a
  constant image's (the sky level) on the same pixels;
- sky RMS: the same on pixels far from any source (3x3-smoothed detection image below 4 sigma
  in every band, dilated by 3 pixels), beside the input's own RMS about the sky there (the
  noise): a codec that keeps the sky at the noise has the two equal.
- the source ratio again on pixels of 5 to 500 sigma: the pooled figure is dominated by a few
  bright star cores (the run prints their share), several of them saturated (flat in r).

``--legacy`` adds the previous recipe (batch 64, lr 2e-3, stretch 1, no flips, plain MSE, no
validation, constant learning rate) at the same epoch counts.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from astromodal_image.tokenizer import ImageTokenizer
from scipy import ndimage

DATA = Path(__file__).resolve().parents[1] / "plugins" / "image" / "tests" / "data" / "sdss"
BANDS = ["g", "r", "i"]
SIZE, CELL = 32, 8
X_TRAIN_END, X_TEST_START = 464, 480
LEGACY = dict(batch_size=64, lr=2e-3, stretch=1.0, source_weight=0.0, colour_weight=0.0,
              augment=False, val_fraction=0.0, patience=0, schedule="constant", min_epoch_steps=1)


def load_field() -> np.ndarray:
    """(bands, 494, 682) float32 nanomaggies; rows 0-1 (blank in r and i) cropped."""
    from astropy.io import fits

    planes = [fits.getdata(DATA / f"reprojected_sdss_{b}.fits.bz2").astype(np.float32) for b in BANDS]
    return np.stack(planes)[:, 2:, :]


def tiles(field: np.ndarray, stride: int, x0: int, x1: int) -> np.ndarray:
    h = field.shape[1]
    out = [field[:, y : y + SIZE, x : x + SIZE]
           for y in range(0, h - SIZE + 1, stride) for x in range(x0, x1 - SIZE + 1, stride)]
    return np.ascontiguousarray(np.stack(out), dtype=np.float32)


class Scorer:
    """Source / sky RMS of reconstructions of ``truth`` in sky-sigma units."""

    def __init__(self, truth: np.ndarray, sky: np.ndarray, sigma: np.ndarray):
        self.truth, self.sky, self.sigma = truth, sky[None, :, None, None], sigma[None, :, None, None]
        z = (truth - self.sky) / self.sigma
        self.src = z > 5
        self.faint = (z > 5) & (z <= 500)  # sources without the bright (often saturated) cores
        top = np.sort((z[self.src]) ** 2)[::-1]
        self.top10_share = float(top[:10].sum() / top.sum())
        sm = ndimage.uniform_filter(z, size=(1, 1, 3, 3), mode="nearest") * 3.0  # unit noise
        det = ndimage.binary_dilation((sm > 4.0).any(axis=1), structure=np.ones((1, 7, 7), bool))
        self.skymask = np.repeat(~det[:, None], truth.shape[1], axis=1)
        self.const = self._rms(self.sky - truth)

    def _rms(self, diff: np.ndarray) -> dict[str, tuple[float, float, float]]:
        e = diff / self.sigma
        out = {}
        for j, band in enumerate([*BANDS, "all"]):
            sel = (slice(None),) if band == "all" else (slice(None), j)
            src, sky, faint = self.src[sel], self.skymask[sel], self.faint[sel]
            out[band] = tuple(float(np.sqrt(np.mean(e[sel][m] ** 2))) for m in (src, sky, faint))
        return out

    def score(self, recon: np.ndarray) -> dict[str, dict[str, float]]:
        got = self._rms(recon - self.truth)
        return {b: {"src": got[b][0], "ratio": got[b][0] / self.const[b][0], "sky": got[b][1],
                    "noise": self.const[b][1], "faint_ratio": got[b][2] / self.const[b][2]} for b in got}


def _cells(x: np.ndarray) -> np.ndarray:
    n, b, h, w = x.shape
    return x.reshape(n, b, h // CELL, CELL, w // CELL, CELL).transpose(0, 2, 4, 1, 3, 5).reshape(-1, b * CELL * CELL)


def _uncells(v: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    n, b, h, w = shape
    return v.reshape(n, h // CELL, w // CELL, b, CELL, CELL).transpose(0, 3, 1, 4, 2, 5).reshape(shape)


def pca_codebook(train: np.ndarray, test: np.ndarray, fwd, inv, *, k: int = 1024, seed: int = 0) -> np.ndarray:
    """PCA (2 components) on 8x8-pixel cells of ``fwd(x)``, a k-entry k-means codebook of the
    coefficients; the held-out cutouts through the codebook and back."""
    from astromodal_core.kmeans import assign, fit_kmeans

    tr = _cells(fwd(train)).astype(np.float64)
    mean = tr.mean(0)
    _, _, vt = np.linalg.svd(tr - mean, full_matrices=False)
    comp = vt[:2]
    book = fit_kmeans(((tr - mean) @ comp.T).astype(np.float32), k, seed=seed)
    coef = ((_cells(fwd(test)).astype(np.float64) - mean) @ comp.T).astype(np.float32)
    rec = book[assign(coef, book)].astype(np.float64) @ comp + mean
    return inv(_uncells(rec, test.shape)).astype(np.float32)


def faint_table(rows: dict[str, dict[str, dict[str, float]]]) -> None:
    cols = [*BANDS, "all"]
    print("| codec | " + " | ".join(f"{b}: 5-500 sigma source RMS / constant" for b in cols) + " |")
    print("|---|" + "---|" * len(cols))
    for name, m in rows.items():
        print(f"| {name} | " + " | ".join(f"{m[b]['faint_ratio']:.3f}" for b in cols) + " |")


def table(rows: dict[str, dict[str, dict[str, float]]]) -> None:
    cols = [*BANDS, "all"]
    print("| codec | " + " | ".join(f"{b} src RMS (ratio)" for b in cols) + " | "
          + " | ".join(f"{b} sky RMS / noise" for b in cols) + " |")
    print("|---|" + "---|" * (2 * len(cols)))
    for name, m in rows.items():
        print(f"| {name} | " + " | ".join(f"{m[b]['src']:.0f} ({m[b]['ratio']:.3f})" for b in cols) + " | "
              + " | ".join(f"{m[b]['sky']:.2f} / {m[b]['noise']:.2f}" for b in cols) + " |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", default="10,20,40", help="comma-separated epoch counts")
    ap.add_argument("--stride", type=int, default=16, help="training cutout stride in pixels")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--legacy", action="store_true", help="also train the previous recipe")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a recipe setting of the tokenizer (JSON value), e.g. --set source_weight=0")
    ap.add_argument("--no-baseline", action="store_true", help="skip the PCA baselines")
    ap.add_argument("--quick", action="store_true", help="2 epochs, to check the script runs")
    args = ap.parse_args()
    epochs = [2] if args.quick else [int(e) for e in args.epochs.split(",")]
    overrides = {k: json.loads(v) for k, v in (item.split("=", 1) for item in args.set)}
    torch.set_num_threads(args.threads)
    field = load_field()
    train = tiles(field, args.stride, 0, X_TRAIN_END)
    test = tiles(field, SIZE, X_TEST_START, field.shape[2])
    region = field[:, :, :X_TRAIN_END]
    sky = np.median(region, axis=(1, 2))
    sigma = 1.4826 * np.median(np.abs(region - sky[:, None, None]), axis=(1, 2))
    scorer = Scorer(test, sky, sigma)
    print(f"# image quality on real SDSS g,r,i: {len(train)} training cutouts, {len(test)} held-out, "
          f"{SIZE}x{SIZE}; sky sigma {np.round(sigma, 4).tolist()} nMgy; torch {torch.__version__}, "
          f"{args.threads} thread(s); load average {os.getloadavg()[0]:.1f}")
    print(f"held-out source pixels (> 5 sigma) per band: {scorer.src.sum(axis=(0, 2, 3)).tolist()}, "
          f"of them <= 500 sigma: {scorer.faint.sum(axis=(0, 2, 3)).tolist()}; sky pixels: "
          f"{scorer.skymask.sum(axis=(0, 2, 3)).tolist()}; the 10 brightest source pixels hold "
          f"{100 * scorer.top10_share:.0f}% of a constant image's squared source error\n")

    rows: dict[str, dict[str, dict[str, float]]] = {}
    ref = ImageTokenizer(cutout_size=SIZE, bands=BANDS)
    ref._fit_scales(train, "train")
    off, sc = ref.band_offset[None, :, None, None], ref.band_scale[None, :, None, None]
    t = time.perf_counter()
    if not args.no_baseline:
        rows["PCA(2) + k-means 1024, arcsinh space"] = scorer.score(pca_codebook(
            train, test, lambda a: np.arcsinh((a - off) / sc), lambda y: np.sinh(y) * sc + off))
        rows["PCA(2) + k-means 1024, flux"] = scorer.score(pca_codebook(
            train, test, lambda a: (a - off) / sc, lambda y: y * sc + off))
        print(f"baselines in {time.perf_counter() - t:.0f}s")
    rows["constant image (sky level)"] = scorer.score(np.broadcast_to(sky[None, :, None, None], test.shape))

    name = "default" if not overrides else "default + " + ", ".join(f"{k}={v}" for k, v in overrides.items())
    recipes = [(name, overrides)] + ([("legacy", LEGACY)] if args.legacy else [])
    summary = []
    for name, kw in recipes:
        for e in epochs:
            t = time.perf_counter()
            tok = ImageTokenizer(cutout_size=SIZE, bands=BANDS, epochs=e, max_cutouts=len(train), **kw)
            tok.fit_arrays(train, progress=False)
            tokens, latents = tok.encode_array(test)
            rows[f"{name} recipe, {e} epochs, tokens"] = m = scorer.score(tok.decode(tokens))
            rows[f"{name} recipe, {e} epochs, latents"] = scorer.score(tok.decode_latents(latents))
            summary.append((name, e, tok.best_epoch, len(tok.history), m["all"]["ratio"]))
            print(f"{name} recipe, {e} epochs: {time.perf_counter() - t:.0f}s, kept epoch {tok.best_epoch} "
                  f"of {len(tok.history)} run; train loss {', '.join(f'{h:.3f}' for h in tok.history)}; "
                  f"val loss {', '.join(f'{h:.3f}' for h in tok.val_history) or '-'}", flush=True)
    print()
    table(rows)
    print("\nWithout the bright cores (source pixels of 5 to 500 sigma):\n")
    faint_table(rows)
    best_pca = min((rows[k]["all"]["ratio"] for k in rows if k.startswith("PCA")), default=float("nan"))
    print("\n| recipe | epochs | kept epoch | epochs run | all-band source RMS / constant | <= 0.7 | <= PCA |")
    print("|---|---|---|---|---|---|---|")
    for name, e, best, ran, ratio in summary:
        print(f"| {name} | {e} | {best} | {ran} | {ratio:.3f} | {'yes' if ratio <= 0.7 else 'no'} | "
              f"{'yes' if ratio <= best_pca else 'no'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
