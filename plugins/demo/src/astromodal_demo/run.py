"""`astromodal demo`: datacube -> every installed tokenizer -> token store -> tiny model -> report."""

from __future__ import annotations

import atexit
import importlib.util
import json
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import yaml

from astromodal_core import get_registry
from astromodal_core.errors import ConfigError
from astromodal_core.pipeline import (
    LocalEngine,
    encode_files,
    merge_store,
    train_tokenizers,
)

from . import evaluate, plots
from .datacube import build_datacube, installed_contributions
from .report import write_report

PathLike = str | os.PathLike[str]
HELD_OUT_BAND = "j0660"


def demo_tokenizer_settings(cutout_size: int, seed: int) -> dict[str, dict[str, Any]]:
    """Demo-sized settings of the sections this repository's plugins provide; another installed
    tokenizer is trained with its defaults."""
    return {
        "scalar": {"n_bins": 64, "rng_seed": seed},
        "spectrum": {"codebook_size": 256, "n_iter": 10, "max_features_per_group": 200_000,
                     "max_rows_per_file": 1000, "rng_seed": seed, "groups": DEMO_SPECTRUM_GROUPS,
                     "detect_ztf": True},
        "image": {"cutout_size": cutout_size, "codebook_size": 256, "epochs": 4,
                  "max_cutouts": 2000, "min_epoch_steps": 1, "rng_seed": seed},
    }


#: DESI arms as a level and a shape token per 32 pixels (506 tokens an object over b/r/z, not one
#: a pixel), Gaia XP; the ZTF bands found are added (``detect_ztf``).
DEMO_SPECTRUM_GROUPS = [
    *({"name": f"desi_{arm}", "kind": "flux_ivar", "encoding": "level_shape", "patch_size": 32}
      for arm in ("b", "r", "z")),
    "gaiaxp_bp", "gaiaxp_rp",
]

#: Store keys left out of the demo model (none: the DESI spectra are a few hundred tokens now).
MODEL_EXCLUDED_PREFIXES: tuple[str, ...] = ()


def model_token_keys(store_keys: list[str]) -> list[str]:
    """The store keys the demo model uses (all but those of ``MODEL_EXCLUDED_PREFIXES``)."""
    return [k for k in store_keys
            if not (k.startswith(MODEL_EXCLUDED_PREFIXES) and not k.endswith("_norm"))]


def demo_model_config(steps: int, seed: int, token_keys: list[str] | None = None,
                      focus_keys: list[str] | None = None) -> dict[str, Any]:
    """The tiny model and a short training run, focused on the keys the demo predicts (half the
    rows holding them predict them from everything else), with soft ordinal targets."""
    train: dict[str, Any] = {
        "steps": steps, "batch_size": 64, "lr": 3e-3, "warmup_steps": min(50, steps // 5),
        "input_budget": 64, "target_budget": 32, "val_every": max(steps, 1),
        "checkpoint_every": max(steps, 1), "seed": seed, "ordinal_smoothing": 1.5,
    }
    if token_keys is not None:
        train["token_keys"] = token_keys
    if focus_keys:
        train["focus_keys"] = [k for k in focus_keys if token_keys is None or k in token_keys]
        train["focus_prob"] = 0.5
    return {"model": {"preset": "tiny"}, "train": train}


def demo_sections(reg: Any, contributions: list[Any]) -> list[str]:
    """The installed tokenizers the demo trains: those whose plugin registered demo columns
    (``DemoColumns.plugin``); the others have nothing in the datacube to read."""
    fed = {c.plugin for c in contributions}
    return [name for name, entry in reg.tokenizers.items() if entry.plugin in fed]


def _matplotlib_config_dir() -> None:
    """Give matplotlib (the plots, GaiaXPy) a temporary config directory when the default one
    cannot be written (a HOME that does not exist or is read-only), instead of its two-line
    complaint on stderr; worker processes inherit it."""
    if "MPLCONFIGDIR" in os.environ:
        return
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "matplotlib"
    probe = base
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if os.access(probe, os.W_OK | os.X_OK):
        return
    tmp = tempfile.mkdtemp(prefix="astromodal-matplotlib-")
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)
    os.environ["MPLCONFIGDIR"] = tmp


def _truth(files: list[Path]) -> dict[str, np.ndarray]:
    wanted = ["id", "true_class", "true_redshift", "z", "real_source"]
    names = pq.ParquetFile(files[0]).schema_arrow.names
    wanted += [c for c in names if c.startswith("mag_pstotal_")]
    cols = [c for c in wanted if c in names]
    table = pq.read_table([str(f) for f in files], columns=cols)
    return {c: table.column(c).to_numpy(zero_copy_only=False) for c in cols}


class _Steps:
    def __init__(self, total: int, echo: Callable[[str], None]):
        self.total, self.done, self.echo = total, 0, echo
        self.seconds: dict[str, float] = {}

    def run(self, name: str, fn: Callable[[], Any]) -> Any:
        self.done += 1
        self.echo(f"[{self.done}/{self.total}] {name} ...")
        t0 = time.perf_counter()
        out = fn()
        self.seconds[name] = time.perf_counter() - t0
        self.echo(f"      done in {self.seconds[name]:.1f}s")
        return out


def run_demo(
    out: PathLike = "demo_output",
    *,
    n: int = 2000,
    seed: int = 0,
    n_files: int = 4,
    cutout_size: int = 32,
    steps: int = 1200,
    workers: int | None = None,
    with_model: bool | None = None,
    progress: bool = True,
    echo: Callable[[str], None] = print,
    datacube_format: str = "parquet",
) -> dict[str, Any]:
    """Run the whole demo into ``out``; returns the summary (also in ``out/summary.json``).

    ``datacube_format="fits"`` also writes every datacube file as a FITS binary table
    (``datacube/demo_datacube_*.fits``) and trains and encodes from those."""
    if datacube_format not in ("parquet", "fits"):
        raise ConfigError(f"datacube format must be 'parquet' or 'fits', got {datacube_format!r}")
    t_start = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _matplotlib_config_dir()
    reg = get_registry()
    contributions = installed_contributions()
    if not contributions:
        raise ConfigError("no installed plugin registers demo columns "
                          "(astromodal_register_demo_columns); nothing to build a datacube from")
    if not reg.tokenizers:
        raise ConfigError("no installed plugin registers a tokenizer; nothing to train")
    sections = demo_sections(reg, contributions)
    skipped = sorted(set(reg.tokenizers) - set(sections))
    for name in skipped:
        warnings.warn(
            f"demo: skipping tokenizer {name!r} of plugin {reg.tokenizers[name].plugin!r}: that "
            "plugin registers no demo columns (astromodal_register_demo_columns)",
            RuntimeWarning, stacklevel=2)
    if not sections:
        raise ConfigError(
            f"no installed tokenizer has demo columns: the tokenizers {sorted(reg.tokenizers)} come "
            f"from plugins without any, the columns from {sorted({c.plugin for c in contributions})}")
    has_model = importlib.util.find_spec("astromodal_model") is not None
    with_model = has_model if with_model is None else (with_model and has_model)
    steps_box = _Steps(5 + (1 if with_model else 0), echo)
    summary: dict[str, Any] = {"settings": {"n": n, "seed": seed, "files": n_files,
                                            "cutout_size": cutout_size, "model_steps": steps},
                               "skipped_tokenizers": skipped}

    cube = steps_box.run(
        f"datacube: {n} objects, {n_files} files, columns from {[c.name for c in contributions]}",
        lambda: build_datacube(out / "datacube", n, seed, n_files=n_files,
                               options={"cutout_size": cutout_size}, contributions=contributions,
                               progress=progress))
    files = list(cube.files)
    inputs: list[Path] = files
    if datacube_format == "fits":  # the tokenizers read FITS tables (astromodal_core.sources)
        from astromodal_core.sources import write_fits

        inputs = [write_fits(f, f.with_name(f.name.removesuffix(".parquet") + ".fits"), overwrite=True)
                  for f in files]
    truth = _truth(files)
    classes, counts = np.unique(truth["true_class"], return_counts=True)
    summary["datacube"] = {
        "files": [str(f) for f in files], "rows": int(len(truth["id"])),
        "classes": {str(c): int(k) for c, k in zip(classes, counts)},
        "columns": {k: len(v) for k, v in cube.columns.items()},
        "real_samples": [s for s in truth.get("real_source", []) if s],
        "seconds": cube.seconds,
        "format": datacube_format,
        "inputs": [str(f) for f in inputs],
    }

    settings = demo_tokenizer_settings(cutout_size, seed)
    config = {"tokenizers": {name: settings.get(name, {}) for name in sections}}
    (out / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    train_times: dict[str, float] = {}
    engine = LocalEngine(workers)
    try:
        saved = steps_box.run(
            f"train tokenizers {sorted(config['tokenizers'])} (config.yaml)",
            lambda: train_tokenizers(config, inputs, out / "tokenizers", engine=engine,
                                     progress=progress,
                                     on_trained=lambda m, sec: train_times.__setitem__(m.name, sec)))
        records = steps_box.run(
            "encode the token store",
            lambda: encode_files(inputs, out / "tokenizers", out / "store", engine=engine,
                                 progress=progress))
    finally:
        engine.close()
    store = merge_store(out / "store", out / "tokens.parquet")
    summary["tokenizers"] = {m.name: {"fingerprint": m.fingerprint, "token_keys": len(m.token_keys),
                                      "train_seconds": round(train_times.get(m.name, 0.0), 2)}
                             for m in saved}
    summary["encode"] = {"files": len(records), "rows": sum(r["rows"] for r in records),
                         "seconds": round(sum(r["seconds"] for r in records), 2)}

    loaded = saved.tokenizers()
    quality: dict[str, Any] = {}
    examples: dict[str, Any] = {}

    def measure() -> None:
        for section, tok in loaded.items():
            figures, ex = evaluate.reconstruction(section, tok, files[0])
            quality[section] = figures
            examples[section] = ex

    steps_box.run(f"reconstruction quality on {files[0].name}", measure)
    usage = steps_box.run("token usage per key", lambda: evaluate.token_usage(store))
    summary["reconstruction"] = quality
    summary["token_usage"] = {k: {kk: vv for kk, vv in v.items() if kk != "counts"} for k, v in usage.items()}

    model_result: dict[str, Any] | None = None
    if with_model and "scalar" in loaded:
        from .model_eval import train_and_evaluate

        def model_part() -> dict[str, Any]:
            result = train_and_evaluate(store, out / "model", truth, loaded["scalar"],
                                        held_out_band=HELD_OUT_BAND,
                                        model_config=demo_model_config(
                                            steps, seed, model_token_keys(list(usage)),
                                            focus_keys=["tok_z", f"tok_mag_pstotal_{HELD_OUT_BAND}"]),
                                        seed=seed,
                                        progress=progress, tokenizers=out / "tokenizers")
            result["redshift_by_inputs"] = _redshift_by_inputs(out / "model", truth, loaded["scalar"],
                                                               seed, progress)
            return result

        model_result = steps_box.run(f"train the tiny model ({steps} steps) and evaluate it",
                                     model_part)
    elif not has_model:
        summary["model"] = {"skipped": "astromodal-model is not installed: tokenizer part only"}
    else:
        summary["model"] = {"skipped": "no scalar tokenizer installed: nothing to predict"}

    pngs = _plots(out, examples, truth, usage, model_result)
    if model_result is not None:
        summary["model"] = {
            "parameters": model_result["parameters"],
            "final_loss": model_result["history"]["loss"][-1] if model_result["history"]["loss"] else None,
            "tasks": {k: {"target": t["target"], "model": t["model"], "model_mean": t["model_mean"],
                          "knn": t["knn"], "knn_catalogue": t["knn_catalogue"]}
                      for k, t in model_result["tasks"].items()},
            "embedding": model_result["embedding"],
            "redshift_by_inputs": model_result.get("redshift_by_inputs") or {},
        }
    summary["plots"] = [p.name for p in pngs]
    summary["seconds"] = {**{k: round(v, 2) for k, v in steps_box.seconds.items()},
                          "total": round(time.perf_counter() - t_start, 2)}
    table = write_report(out, summary)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=_json_default))
    summary["table"] = table
    return summary


def _redshift_by_inputs(model_out: Path, truth: Mapping[str, np.ndarray], scalar_tok: Any,
                        seed: int, progress: bool) -> dict[str, Any]:
    """The model's redshift from photometry alone, spectra alone and both (test objects with
    a DESI spectrum); ``{}`` when the run has no DESI keys or no tok_z."""
    from .model_eval import bin_values
    from .redshift_inputs import redshift_by_inputs

    values = bin_values(scalar_tok, ["z"]) if "z" in scalar_tok.scalar_cols else {}
    if "tok_z" not in values:
        return {}
    return redshift_by_inputs(model_out / "model_run" / "model", model_out / "test_tokens.parquet",
                              truth, values["tok_z"], hidden=[f"tok_mag_pstotal_{HELD_OUT_BAND}"],
                              seed=seed, progress=progress)


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(type(o).__name__)


def _plots(out: Path, examples: Mapping[str, Any], truth: Mapping[str, np.ndarray],
           usage: Mapping[str, Any], model_result: Mapping[str, Any] | None) -> list[Path]:
    pngs: list[Path] = []
    pos = {int(v): i for i, v in enumerate(truth["id"])}
    cls = np.asarray(truth["true_class"])
    zt = np.asarray(truth["true_redshift"], dtype=np.float64)
    real = np.asarray(truth.get("real_source", np.full(len(cls), "")))
    spec = examples.get("spectrum") or {}
    if "desi_r" in spec:
        ex = spec["desi_r"]
        has = [i for i, f in enumerate(ex["flux"]) if len(f)]
        ids = np.asarray(truth["id"])[: len(ex["flux"])]
        real_rows = [i for i in has if real[pos[int(ids[i])]].startswith("desi:")]
        galaxies = [i for i in has if cls[pos[int(ids[i])]] == "galaxy"]
        snr = {i: float(np.median(np.abs(ex["flux"][i]) * np.sqrt(ex["ivar"][i]))) for i in galaxies}
        row = real_rows[0] if real_rows else (max(snr, key=snr.get) if snr else (has[0] if has else None))
        if row is not None:
            j = pos[int(ids[row])]
            origin = f"real DESI spectrum {real[j][5:]}" if real[j].startswith("desi:") else "synthetic"
            pngs.append(plots.spectrum_plot(
                spec, row, f"{origin}: {cls[j]} at z = {zt[j]:.4f} (id {int(ids[row])}) and its "
                "reconstruction from spectrum tokens", out / "spectrum_reconstruction.png"))
    img = examples.get("image") or {}
    if img:
        rows, labels = [], []
        obs_tot = np.nansum(img["observed"], axis=(1, 2, 3))
        for c in ("star", "galaxy", "qso"):
            cand = [i for i, v in enumerate(img["ids"]) if cls[pos[int(v)]] == c
                    and np.isfinite(img["decoded"][i]).all() and np.isfinite(img["observed"][i]).all()]
            if cand:
                i = max(cand, key=lambda r: obs_tot[r])
                rows.append(i)
                j = pos[int(img["ids"][i])]
                labels.append(f"{c}, z={zt[j]:.2f}\nid {int(img['ids'][i])}")
        if rows:
            pngs.append(plots.cutout_plot(img, rows, labels, out / "cutouts_reconstruction.png"))
    if model_result is not None:
        for key, task in model_result["tasks"].items():
            name = "redshift_prediction.png" if key == "tok_z" else f"{task['target']}_prediction.png"
            pngs.append(plots.prediction_plot(task, "z" if key == "tok_z" else "mag", out / name))
        if model_result["history"]["loss"]:
            pngs.append(plots.loss_plot(model_result["history"]["loss"], out / "training_loss.png"))
    picks = _histogram_keys(usage)
    if picks:
        pngs.append(plots.token_histograms(usage, picks, out / "token_histograms.png"))
    return pngs


def _histogram_keys(usage: Mapping[str, Any]) -> list[str]:
    """One key per kind of stream (magnitude, redshift, spectrum, light curve, XP, image...)."""
    order = ["tok_mag_pstotal_r", "tok_z", "tok_spectrum_desi_r", "tok_lightcurve_ztf_g",
             "tok_xp_bp", "tok_image_splus"]
    picks = [k for k in order if k in usage and usage[k]["tokens"]]
    for k, u in usage.items():
        if len(picks) >= 6:
            break
        if k not in picks and u["tokens"] and not k.endswith("_norm"):
            picks.append(k)
    return picks[:6]
