"""The report's PNG plots (matplotlib, Agg backend)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

PathLike = str | os.PathLike[str]
CLASS_COLORS = {"star": "tab:orange", "galaxy": "tab:blue", "qso": "tab:purple"}


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # GaiaXPy's plotter turns on usetex at import; the report needs no LaTeX installation
    matplotlib.rcParams["text.usetex"] = False

    return plt


def _smooth(x: np.ndarray, width: int = 9) -> np.ndarray:
    return np.convolve(x, np.ones(width) / width, mode="same")


def spectrum_plot(examples: Mapping[str, Any], row: int, title: str, path: PathLike) -> Path:
    """Observed DESI b/r/z flux, its token reconstruction, and the residual in noise units."""
    plt = _plt()
    fig, (ax, rax) = plt.subplots(2, 1, figsize=(11, 5.6), sharex=True,
                                  gridspec_kw={"height_ratios": [3, 1]})
    colors = {"desi_b": "tab:blue", "desi_r": "tab:red", "desi_z": "tab:brown"}
    shown = []
    for name in ("desi_b", "desi_r", "desi_z"):
        if name not in examples:
            continue
        ex = examples[name]
        f, w = ex["flux"][row], ex["ivar"][row]
        if not len(f):
            continue
        wave = ex["wavelength"] if ex["wavelength"] is not None else np.arange(len(f))
        good = w > 0
        rec = ex["decoded"][row, : len(f)]
        obs = np.where(good, f, np.nan)
        ax.plot(wave, _smooth(np.nan_to_num(obs)), color="k", lw=0.6,
                label="observed (9-pixel mean)" if not shown else None)
        ax.plot(wave, _smooth(rec), color=colors[name], lw=1.4, alpha=0.7,
                label=f"reconstruction from tokens, {name[-1]} arm")
        rax.plot(wave, np.where(good, (f - rec) * np.sqrt(np.where(good, w, 0)), np.nan),
                 color=colors[name], lw=0.4)
        shown.append(obs)
    ax.set_ylabel("flux [1e-17 erg/s/cm$^2$/A]")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, ncol=2)
    if shown:
        lo, hi = np.nanpercentile(_smooth(np.nan_to_num(np.concatenate(shown))), [0.5, 99.8])
        ax.set_ylim(lo - 0.15 * abs(hi - lo), hi + 0.25 * abs(hi - lo))
    rax.axhline(0, color="k", lw=0.6)
    rax.set_ylim(-4, 4)
    rax.set_ylabel("residual / noise")
    rax.set_xlabel("observed wavelength [Angstrom]")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def _rgb(img: np.ndarray, idx: Sequence[int], scale: float) -> np.ndarray:
    rgb = np.stack([img[i] for i in idx], axis=-1)
    return np.clip(np.arcsinh(np.clip(rgb, 0, None) / scale) / np.arcsinh(30.0), 0, 1)


def cutout_plot(examples: Mapping[str, Any], rows: Sequence[int], labels: Sequence[str],
                path: PathLike) -> Path:
    """Observed and reconstructed cutouts (I, R, G as RGB) and the R-band residual."""
    plt = _plt()
    bands = list(examples["bands"])
    idx = [bands.index(b) for b in ("I", "R", "G") if b in bands] or [0, 0, 0]
    r_idx = bands.index("R") if "R" in bands else 0
    fig, axes = plt.subplots(len(rows), 3, figsize=(7.5, 2.6 * len(rows)), squeeze=False)
    for k, (row, label) in enumerate(zip(rows, labels)):
        obs, dec = examples["observed"][row], examples["decoded"][row]
        border = np.concatenate([obs[r_idx, :3].ravel(), obs[r_idx, -3:].ravel()])
        sigma = 1.4826 * np.median(np.abs(border - np.median(border))) or 1.0
        scale = 2 * sigma
        axes[k, 0].imshow(_rgb(obs, idx, scale), origin="lower")
        axes[k, 1].imshow(_rgb(dec, idx, scale), origin="lower")
        res = axes[k, 2].imshow((obs[r_idx] - dec[r_idx]) / sigma, origin="lower", cmap="RdBu_r",
                                vmin=-5, vmax=5)
        axes[k, 0].set_ylabel(label, fontsize=9)
        for a in axes[k]:
            a.set_xticks([])
            a.set_yticks([])
        fig.colorbar(res, ax=axes[k, 2], fraction=0.046, label="sigma")
    axes[0, 0].set_title("observed (I,R,G)", fontsize=9)
    axes[0, 1].set_title("reconstructed from tokens", fontsize=9)
    axes[0, 2].set_title("R residual / noise", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def prediction_plot(task: Mapping[str, Any], kind: str, path: PathLike) -> Path:
    """Predicted vs true (model | kNN), coloured by class, with the metrics in the titles."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.6), sharex=True, sharey=True)
    true = task["true"]
    lo, hi = float(np.min(true)), float(np.max(true))
    pad = 0.05 * (hi - lo + 1e-9)
    for ax, who in zip(axes, ("model", "knn")):
        pred = task[f"pred_{who}"]
        for c, color in CLASS_COLORS.items():
            sel = task["class"] == c
            if sel.any():
                ax.scatter(true[sel], pred[sel], s=9, alpha=0.7, color=color, label=c)
        ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="k", lw=0.8)
        m = task[who]
        name = ("tiny astromodal model (median)" if who == "model"
                else "scikit-learn kNN (same photometric tokens)")
        if kind == "z":
            sub = f"sigma_NMAD {m['sigma_nmad']:.3f}, outliers {100 * m['outliers']:.1f}%"
        else:
            sub = f"median abs error {m['median_abs']:.3f}, rms {m['rms']:.3f} mag"
        ax.set_title(f"{name}\n{sub}", fontsize=9)
        ax.set_xlabel(f"true {task['target']}")
        ax.set_xlim(lo - pad, hi + pad)
        ax.set_ylim(lo - pad, hi + pad)
    axes[0].set_ylabel(f"predicted {task['target']}")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"predicted vs true {task['target']} on {len(true)} held-out objects", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def token_histograms(usage: Mapping[str, Mapping[str, Any]], keys: Sequence[str], path: PathLike) -> Path:
    """Token-id histograms of a few keys, with usage and perplexity in each title."""
    plt = _plt()
    n = len(keys)
    cols = min(3, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.8 * rows), squeeze=False)
    for ax, key in zip(axes.ravel(), keys):
        u = usage[key]
        counts = u["counts"]
        ax.bar(np.arange(len(counts)), counts, width=1.0, color="tab:green")
        ax.set_title(f"{key}\n{100 * u['usage']:.0f}% of {u['vocab']} ids used, "
                     f"perplexity {u['perplexity']:.0f}", fontsize=8)
        ax.set_xlabel("token id", fontsize=8)
        ax.set_ylabel("count", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def loss_plot(loss: Sequence[float], path: PathLike) -> Path:
    """The model's training loss per step."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(np.arange(1, len(loss) + 1), loss, lw=0.8)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (cross-entropy)")
    ax.set_title("tiny model training loss")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
