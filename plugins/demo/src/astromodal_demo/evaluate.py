"""Measurements for the report: per-codec reconstruction quality and per-key token usage.

Reconstruction is measured on one datacube file by encoding it, decoding the tokens with the
tokenizer's own decoder and comparing with the file's values:

- ``scalar``: median absolute error (bin median - value) per column, and whether the mask
  token is exactly where a value is missing (NaN or a 99 / -99 sentinel);
- ``spectrum``: DESI arms as chi = sqrt(mean(ivar * (decoded - flux)^2)) over good pixels
  (1 means "within the noise"), ZTF light curves as median |decoded - observed| magnitude,
  Gaia XP as the rms coefficient error relative to the first coefficient;
- ``image``: residual rms in units of the background noise, and the relative error of the
  total flux of bright objects.

A section this module does not know gets token-usage figures only.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from astromodal_core.store import iter_token_store, store_metadata

PathLike = str | os.PathLike[str]
SENTINELS = (99.0, -99.0)


def token_usage(store: PathLike, *, batch_size: int = 4096) -> dict[str, dict[str, Any]]:
    """Per token key: rows with data, tokens, distinct ids used, share of the vocabulary used,
    perplexity (exp of the entropy of the token distribution) and the id counts."""
    meta = store_metadata(store)
    keys = meta["token_keys"]
    counts = {k: np.zeros(v.vocab_size, dtype=np.int64) for k, v in keys.items()}
    rows = dict.fromkeys(keys, 0)
    total = 0
    for ids, cols in iter_token_store(store, batch_size=batch_size):
        total += len(ids)
        for name, value in cols.items():
            key = keys[name]
            if isinstance(value, tuple):
                flat, indptr = value
                rows[name] += int(np.count_nonzero(np.diff(indptr)))
                counts[name] += np.bincount(flat.astype(np.int64), minlength=key.vocab_size)
                continue
            arr = np.asarray(value).reshape(len(ids), -1).astype(np.int64)
            real = arr != key.mask_token if key.mask_token is not None else np.ones_like(arr, bool)
            rows[name] += int(np.count_nonzero(real.any(axis=1)))
            counts[name] += np.bincount(arr.ravel(), minlength=key.vocab_size)
    out = {}
    for name, key in keys.items():
        c = counts[name].copy()
        if key.mask_token is not None:
            c[key.mask_token] = 0
        n_real = key.vocab_size - (1 if key.mask_token is not None else 0)
        tot = int(c.sum())
        p = c[c > 0] / max(tot, 1)
        out[name] = {
            "rows_with_data": rows[name], "rows": total, "tokens": tot,
            "distinct": int(np.count_nonzero(c)), "vocab": n_real,
            "usage": float(np.count_nonzero(c) / n_real) if n_real else 0.0,
            "perplexity": float(math.exp(-(p * np.log(p)).sum())) if tot else 0.0,
            "counts": c[:n_real],
        }
    return out


def _list_rows(table: Any, name: str) -> list[np.ndarray]:
    col = table.column(name).combine_chunks()
    offsets = col.offsets.to_numpy()
    values = col.values.to_numpy(zero_copy_only=False).astype(np.float64)
    return [values[offsets[i] : offsets[i + 1]] for i in range(len(col))]


def scalar_quality(tok: Any, path: PathLike) -> dict[str, Any]:
    """Median |decoded - value| per column and whether the mask token marks exactly the
    missing values."""
    res = tok.encode(path, progress=False)
    values, _ = tok.decode(res["scalar_tokens"])
    cols = list(res["scalar_cols"])
    cmap = getattr(tok, "column_map", {}) or {}
    table = pq.read_table(path, columns=[cmap.get(c, c) for c in cols])
    per_col, mask_ok = {}, True
    for j, c in enumerate(cols):
        truth = table.column(cmap.get(c, c)).to_numpy(zero_copy_only=False).astype(np.float64)
        missing = ~np.isfinite(truth) | np.isin(truth, SENTINELS)
        masked = res["scalar_tokens"][:, j] == tok.n_bins
        mask_ok &= bool(np.array_equal(missing, masked))
        ok = ~missing
        per_col[c] = float(np.median(np.abs(values[ok, j] - truth[ok]))) if ok.any() else float("nan")
    mags = [v for c, v in per_col.items() if c.startswith("mag_") and np.isfinite(v)]
    return {
        "metric": "median abs(decoded - true)",
        "per_column": per_col,
        "summary": {"magnitudes (mag)": float(np.median(mags)) if mags else float("nan"),
                    **({"z": per_col["z"]} if "z" in per_col else {})},
        "mask_exact": mask_ok,
        "rows": int(len(res["ids"])),
    }


def spectrum_quality(tok: Any, path: PathLike) -> tuple[dict[str, Any], dict[str, Any]]:
    """Per group reconstruction figures, and example arrays for the spectrum plot."""
    res = tok.encode(path, progress=False)
    groups: dict[str, Any] = {}
    examples: dict[str, Any] = {}
    for name, model in tok.models.items():
        spec = model.spec
        decoded = tok.decode(res, name)
        if spec["kind"] == "flux_ivar":
            table = pq.read_table(path, columns=[spec["flux_col"], spec["ivar_col"]])
            flux = _list_rows(table, spec["flux_col"])
            ivar = _list_rows(table, spec["ivar_col"])
            dec = np.asarray(decoded.flux, dtype=np.float64)
            chis = []
            for i, (f, w) in enumerate(zip(flux, ivar)):
                if len(f) and np.any(w > 0):
                    good = w > 0
                    chis.append(float(np.sqrt(np.mean(w[good] * (dec[i, : len(f)][good] - f[good]) ** 2))))
            groups[name] = {"metric": "chi (1 = within noise)",
                            "value": float(np.median(chis)) if chis else float("nan"), "rows": len(chis)}
            examples[name] = {"flux": flux, "ivar": ivar, "decoded": dec,
                              "wavelength": None if decoded.wavelength is None else np.asarray(decoded.wavelength)}
        elif spec["kind"] == "ztf_mag_err":
            table = pq.read_table(path, columns=[spec["mag_col"]])
            mags = _list_rows(table, spec["mag_col"])
            dec = np.asarray(decoded.mag, dtype=np.float64)
            errs = [np.abs(dec[i, : len(m)] - m) for i, m in enumerate(mags) if len(m)]
            errs = [e[np.isfinite(e)] for e in errs]
            flat = np.concatenate(errs) if errs else np.empty(0)
            groups[name] = {"metric": "median abs(decoded - observed) (mag)",
                            "value": float(np.median(flat)) if flat.size else float("nan"),
                            "rows": len(errs)}
        elif spec["kind"] == "gaiaxpy_xp":
            band = spec["xp_band"].lower()
            table = pq.read_table(path, columns=[f"{band}_coefficients"])
            coef = _list_rows(table, f"{band}_coefficients")
            dec = np.asarray(decoded.coefficients, dtype=np.float64)
            rel = [float(np.sqrt(np.mean((dec[i, : len(c)] - c) ** 2)) / abs(c[0]))
                   for i, c in enumerate(coef) if len(c) and c[0] != 0 and np.all(np.isfinite(dec[i, : len(c)]))]
            groups[name] = {"metric": "rms coefficient error / abs(c0)",
                            "value": float(np.median(rel)) if rel else float("nan"), "rows": len(rel)}
    return groups, examples


def image_quality(tok: Any, path: PathLike, *, max_rows: int = 400) -> tuple[dict[str, Any], dict[str, Any]]:
    """Residual rms / background noise and total-flux error; example cutouts for the plot."""
    res = tok.encode(path, progress=False)
    n = min(len(res["ids"]), max_rows)
    dec = tok.decode(res["image_tokens"][:n])
    cols = [f"{tok.column_prefix}{b}" for b in tok.bands]
    table = pq.read_table(path, columns=cols).slice(0, n)
    size = tok.cutout_size
    obs = np.full((n, len(cols), size, size), np.nan)
    for j, c in enumerate(cols):
        for i, r in enumerate(_list_rows(table, c)):
            if len(r) == size * size:
                obs[i, j] = r.reshape(size, size)
    have = np.isfinite(obs).all(axis=(1, 2, 3)) & np.isfinite(dec).all(axis=(1, 2, 3))
    border = np.concatenate([obs[:, :, :3, :].reshape(n, len(cols), -1),
                             obs[:, :, -3:, :].reshape(n, len(cols), -1)], axis=2)
    with warnings.catch_warnings():  # rows without cutouts are all-NaN, and excluded below
        warnings.simplefilter("ignore", RuntimeWarning)
        sigma = 1.4826 * np.nanmedian(np.abs(border - np.nanmedian(border, axis=2, keepdims=True)), axis=2)
        resid = np.sqrt(np.nanmean((dec - obs) ** 2, axis=(2, 3))) / sigma
    tot_obs = obs.sum(axis=(2, 3))
    tot_dec = dec.sum(axis=(2, 3))
    bright = have[:, None] & (tot_obs > 50 * sigma * size)
    rel = np.abs(tot_dec - tot_obs)[bright] / tot_obs[bright]
    quality = {
        "residual rms / noise": float(np.nanmedian(resid[have])) if have.any() else float("nan"),
        "total flux error (bright)": float(np.median(rel)) if rel.size else float("nan"),
        "rows": int(have.sum()),
    }
    return quality, {"observed": obs, "decoded": dec, "bands": list(tok.bands), "ids": res["ids"][:n]}


def reconstruction(section: str, tok: Any, path: PathLike) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(figures, plot examples)`` for one trained tokenizer (empty for unknown sections)."""
    if section == "scalar" and hasattr(tok, "decode") and hasattr(tok, "scalar_cols"):
        return scalar_quality(tok, path), {}
    if section == "spectrum" and hasattr(tok, "models"):
        groups, examples = spectrum_quality(tok, path)
        return {"groups": groups}, examples
    if section == "image" and hasattr(tok, "decode"):
        return image_quality(tok, path)
    return {}, {}


def summarise_quality(section: str, figures: Mapping[str, Any]) -> str:
    """One line for the summary table."""
    if not figures:
        return "token usage only"
    if "error" in figures:
        return f"failed: {figures['error']}"
    if section == "scalar":
        s = figures["summary"]
        parts = [f"{k} {v:.3g}" for k, v in s.items()]
        return "median abs error: " + ", ".join(parts) + ("; mask exact" if figures["mask_exact"] else "; MASK MISMATCH")
    if section == "spectrum":
        return "; ".join(f"{g} {v['value']:.3g}" for g, v in figures["groups"].items())
    if section == "image":
        return (f"residual {figures['residual rms / noise']:.3g} x noise, "
                f"flux err {figures['total flux error (bright)']:.3g}")
    return ", ".join(f"{k} {v}" for k, v in figures.items())
