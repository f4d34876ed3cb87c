"""Benchmark of DESI spectra as a few hundred tokens: the ``level_shape`` encoding (per patch of
P pixels a level token and a shape token) against the per-pixel tokenizer (one token a pixel),
the earlier patch vectors (``patch_size`` 16, one token per 16 pixels) and a PCA baseline of the
same token budget as ``level_shape``, all trained on the same spectra in the same run.

Reconstruction: chi2 per pixel, ``mean(ivar * (decoded - observed)^2)`` over an object's valid
pixels of one arm (1 = residuals as large as the noise; a codec that recovered the noiseless
spectrum exactly would score 1, one that also kept the noise 0); the decoded flux against the
*observed* ivar.

Data: training spectra are the demo's synthetic DESI spectra (the real coadd wavelength grids
and noise model, ``astromodal_spectra.demo.desi_columns`` on ``--train-sky`` objects of the
demo sky, seed 1); evaluation on other synthetic spectra (seed 2) and on the two real DESI
coadds of ``plugins/spectra/tests/data/desi_real.parquet``, held out unless ``--with-real``
(the demo trains on a datacube that holds them).

    .venv/bin/python benchmarks/bench_spectrum_patches.py [--train-sky 3000] [--with-real] [--json out.json]

Results are written up in benchmarks/results_spectra.md and docs/tokenizers/spectrum.md.
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
REAL = ROOT / "plugins" / "spectra" / "tests" / "data" / "desi_real.parquet"
ARMS = ("b", "r", "z")


def synthetic(n_sky: int, seed: int, out: Path) -> Path:
    """The demo sky's DESI spectra (objects of its spectroscopic sample) as a parquet file."""
    from astromodal_demo.sky import Sky, spectroscopic_sample
    from astromodal_spectra.demo import desi_columns

    sky = Sky.generate(n_sky, seed)
    has = spectroscopic_sample(sky)
    cols = desi_columns(sky, has)
    idx = pa.array(np.flatnonzero(has))
    arrays = {"id": pa.array(np.asarray(sky.ids)[np.flatnonzero(has)])}
    arrays.update({k: v.take(idx) for k, v in cols.items()})
    pq.write_table(pa.table(arrays), out, row_group_size=256)
    return out


def read_arm(path: Path, arm: str) -> tuple[np.ndarray, np.ndarray]:
    t = pq.read_table(path, columns=[f"desi_flux_{arm}", f"desi_ivar_{arm}"])
    rows = [(np.asarray(f, np.float64), np.asarray(w, np.float64))
            for f, w in zip(t.column(0).to_pylist(), t.column(1).to_pylist()) if f]
    return np.array([r[0] for r in rows]), np.array([r[1] for r in rows])


def chi2(decoded: np.ndarray, flux: np.ndarray, ivar: np.ndarray) -> np.ndarray:
    """Per object: mean ivar * (decoded - flux)^2 over valid pixels."""
    ok = ivar > 0
    d = np.where(ok, np.nan_to_num(decoded[:, : flux.shape[1]]) - flux, 0.0)
    return (ivar * d * d * ok).sum(axis=1) / np.maximum(ok.sum(axis=1), 1)


class PCABaseline:
    """Per arm: PCA of flux / scale (scale = median |flux|, kept exactly) with ``n`` components,
    each coefficient quantised into ``bins`` quantile bins of the training coefficients."""

    def __init__(self, n: int, bins: int):
        self.n, self.bins = n, bins

    @staticmethod
    def _z(flux: np.ndarray, ivar: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ok = ivar > 0
        s = np.nanmedian(np.where(ok, np.abs(flux), np.nan), axis=1)
        s = np.where(s > 0, s, 1.0)[:, None]
        return np.where(ok, flux / s, 0.0), s

    def fit(self, flux: np.ndarray, ivar: np.ndarray) -> PCABaseline:
        z, _ = self._z(flux, ivar)
        self.mean = z.mean(axis=0)
        _, _, vt = np.linalg.svd(z - self.mean, full_matrices=False)
        self.v = vt[: self.n]
        coef = (z - self.mean) @ self.v.T
        self.edges = [np.unique(np.quantile(c, np.linspace(0, 1, self.bins + 1))) for c in coef.T]
        return self

    def reconstruct(self, flux: np.ndarray, ivar: np.ndarray) -> np.ndarray:
        z, s = self._z(flux, ivar)
        coef = (z - self.mean) @ self.v.T
        q = np.empty_like(coef)
        for k, e in enumerate(self.edges):
            i = np.clip(np.searchsorted(e, coef[:, k], side="right") - 1, 0, len(e) - 2)
            q[:, k] = 0.5 * (e[i] + e[i + 1])
        return (self.mean + q @ self.v) * s


def tokenizer(kind: str, codebook: int, patch: int) -> Any:
    from astromodal_spectra import SpectrumTokenizer

    extra: dict[str, Any] = {"pixels": {}, "patches": {"patch_size": 16},
                             "level_shape": {"encoding": "level_shape", "patch_size": patch}}[kind]
    groups = [{"name": f"desi_{a}", "kind": "flux_ivar", **extra} for a in ARMS]
    return SpectrumTokenizer(codebook_size=codebook, groups=groups, progress=False)


def tokens_per_object(tok: Any) -> int:
    return sum(k.max_length for k in tok.token_keys)


def summary(values: np.ndarray) -> dict[str, float]:
    return {"median": float(np.median(values)), "p90": float(np.percentile(values, 90))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--train-sky", type=int, default=3000, help="demo sky objects for training")
    ap.add_argument("--test-sky", type=int, default=600)
    ap.add_argument("--codebook", type=int, default=2048)
    ap.add_argument("--patch", type=int, default=32, help="level_shape patch size")
    ap.add_argument("--with-real", action="store_true", help="train on the real coadds too")
    ap.add_argument("--skip", default="", help="comma-separated methods to leave out")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    results: dict[str, Any] = {"settings": vars(args) | {"json": None}, "methods": {}}
    with tempfile.TemporaryDirectory() as tmp:
        tmpd = Path(tmp)
        train = synthetic(args.train_sky, 1, tmpd / "train.parquet")
        test = synthetic(args.test_sky, 2, tmpd / "test.parquet")
        files = [train, REAL] if args.with_real else [train]
        results["rows"] = {"train": pq.read_metadata(train).num_rows + (2 if args.with_real else 0),
                           "test": pq.read_metadata(test).num_rows, "real": 2}
        data = {name: {a: read_arm(p, a) for a in ARMS} for name, p in (("test", test), ("real", REAL))}
        budget: dict[str, int] = {}
        for kind in ("level_shape", "patches", "pixels"):
            if kind in skip:
                continue
            tok = tokenizer(kind, args.codebook, args.patch)
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                tok.train(files)
            fit_s = time.perf_counter() - t0
            keys = {k.name: k for k in tok.token_keys}
            if kind == "level_shape":
                budget = {a: keys[f"tok_spectrum_desi_{a}"].max_length * 2 for a in ARMS}
            entry: dict[str, Any] = {"tokens_per_object": tokens_per_object(tok),
                                     "fit_seconds": round(fit_s, 1)}
            for name, path in (("test", test), ("real", REAL)):
                res = tok.encode(path)
                for a in ARMS:
                    dec = tok.decode(res, f"desi_{a}")
                    flux, ivar = data[name][a]
                    c = chi2(np.asarray(dec.flux, np.float64)[: len(flux)], flux, ivar)
                    entry[f"{name}_{a}"] = summary(c) if name == "test" else [float(x) for x in c]
                    if kind == "level_shape":
                        dv = np.asarray(dec.ivar, np.float64)[: len(flux), : flux.shape[1]]
                        ok = (ivar > 0) & (dv > 0)
                        entry[f"{name}_{a}_ivar_ratio"] = float(np.median(dv[ok] / ivar[ok]))
            results["methods"][kind] = entry
            print(kind, json.dumps(entry))
        if "pca" not in skip and budget:
            entry = {"tokens_per_object": sum(budget.values()) + len(ARMS)}
            t0 = time.perf_counter()
            pcas = {a: PCABaseline(budget[a], 1024).fit(*read_arm(train, a)) for a in ARMS}
            entry["fit_seconds"] = round(time.perf_counter() - t0, 1)
            for name in ("test", "real"):
                for a in ARMS:
                    flux, ivar = data[name][a]
                    c = chi2(pcas[a].reconstruct(flux, ivar), flux, ivar)
                    entry[f"{name}_{a}"] = summary(c) if name == "test" else [float(x) for x in c]
            results["methods"]["pca"] = entry
            print("pca", json.dumps(entry))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
