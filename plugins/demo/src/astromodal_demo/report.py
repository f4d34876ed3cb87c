"""The demo's report.md and its summary table (every number measured in the run)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .evaluate import summarise_quality


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def summary_rows(summary: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(item, result) rows of the summary table."""
    rows: list[tuple[str, str]] = []
    dc = summary["datacube"]
    rows.append(("datacube", f"{dc['rows']} objects " + ", ".join(f"{k} {v}" for k, v in dc["classes"].items())
                 + f"; {len(dc['real_samples'])} real samples mixed in"))
    for section, t in summary["tokenizers"].items():
        rows.append((f"tokenizer {section}", f"{t['token_keys']} keys, trained in {t['train_seconds']:.1f}s, "
                     f"fingerprint {t['fingerprint']}"))
    rows.append(("token store", f"{summary['encode']['rows']} rows from {summary['encode']['files']} files"))
    for section, figures in summary["reconstruction"].items():
        rows.append((f"reconstruction {section}", summarise_quality(section, figures)))
    usage = summary["token_usage"]
    if usage:
        mean_usage = sum(u["usage"] for u in usage.values()) / len(usage)
        rows.append(("token usage", f"{len(usage)} keys, mean {100 * mean_usage:.0f}% of ids used"))
    model = summary.get("model", {})
    if "skipped" in model:
        rows.append(("model", model["skipped"]))
    elif model:
        for t in model["tasks"].values():
            m, k = t["model"], t["knn"]
            c = t.get("knn_catalogue")
            if "sigma_nmad" in m:
                ref = f"; kNN on catalogue mags {c['sigma_nmad']:.4f}, {100 * c['outliers']:.0f}%" if c else ""
                rows.append((f"predict {t['target']} (sigma_NMAD, outliers)",
                             f"model {m['sigma_nmad']:.4f}, {100 * m['outliers']:.0f}% vs kNN "
                             f"{k['sigma_nmad']:.4f}, {100 * k['outliers']:.0f}%{ref} (n={m['n']})"))
            else:
                ref = f"; kNN on catalogue mags {c['median_abs']:.4f}" if c else ""
                rows.append((f"predict {t['target']} (median abs error)",
                             f"model {m['median_abs']:.4f} vs kNN {k['median_abs']:.4f}{ref} mag "
                             f"(n={m['n']})"))
        by = model.get("redshift_by_inputs") or {}
        if by:
            rows.append(("redshift by input (sigma_NMAD, outliers)", ", ".join(
                f"{label} {m['sigma_nmad']:.4f}, {100 * m['outliers']:.0f}%"
                for label, m in by["inputs"].items()) + f" (n={by['rows']} with a DESI spectrum)"))
        e = model["embedding"]
        pca = e.get("pca")
        ref = f", PCA of the raw inputs {100 * pca['class_agreement']:.0f}%" if pca else ""
        rows.append(("embedding neighbours", f"{100 * e['class_agreement']:.0f}% of {e['k']}-NN share the class "
                     f"(chance {100 * e['chance']:.0f}%{ref})"))
    rows.append(("total time", f"{summary['seconds']['total']:.0f}s"))
    return rows


def render_table(rows: list[tuple[str, str]]) -> str:
    """A plain-text two-column table."""
    w = max(len(a) for a, _ in rows)
    line = "-" * (w + 2 + max(len(b) for _, b in rows))
    return "\n".join([line, *(f"{a.ljust(w)}  {b}" for a, b in rows), line])


def write_report(out: Path, summary: Mapping[str, Any]) -> str:
    """Write ``out/report.md``; return the plain-text summary table."""
    rows = summary_rows(summary)
    md: list[str] = ["# astromodal demo report", ""]
    s = summary["settings"]
    md += [f"Settings: {s['n']} objects, seed {s['seed']}, {s['files']} datacube files, "
           f"{s['cutout_size']}x{s['cutout_size']} cutouts, {s['model_steps']} model steps. "
           "Every number below was measured in this run.", ""]
    md += ["## Summary", "", "| item | result |", "|---|---|"]
    md += [f"| {a} | {b} |" for a, b in rows]
    dc = summary["datacube"]
    md += ["", "## Datacube", "",
           f"{dc['rows']} objects in {len(dc['files'])} parquet files; classes "
           + ", ".join(f"{k}: {v}" for k, v in dc["classes"].items()) + ".", "",
           "| contribution | columns | generation time (s) |", "|---|---|---|"]
    md += [f"| {k} | {v} | {dc['seconds'].get(k, 0):.1f} |" for k, v in dc["columns"].items()]
    if dc["real_samples"]:
        md += ["", "Real survey samples mixed in: " + ", ".join(dc["real_samples"]) + "."]
    md += ["", "## Tokenizers", "", "| section | token keys | fingerprint | training time (s) |", "|---|---|---|---|"]
    md += [f"| {k} | {v['token_keys']} | `{v['fingerprint']}` | {v['train_seconds']:.1f} |"
           for k, v in summary["tokenizers"].items()]
    md += ["", "## Reconstruction quality", ""]
    for section, figures in summary["reconstruction"].items():
        md.append(f"**{section}**: {summarise_quality(section, figures)}")
        md.append("")
        if section == "scalar" and figures:
            md += ["| column | median abs error |", "|---|---|"]
            md += [f"| {c} | {_fmt(v)} |" for c, v in figures["per_column"].items()]
            md.append("")
        if section == "spectrum" and figures:
            md += ["| group | metric | value | rows |", "|---|---|---|---|"]
            md += [f"| {g} | {v['metric']} | {_fmt(v['value'])} | {v['rows']} |" for g, v in figures["groups"].items()]
            md.append("")
    md += ["## Token usage", "",
           "| token key | rows with data | tokens | distinct ids | vocabulary | used | perplexity |",
           "|---|---|---|---|---|---|---|"]
    md += [f"| {k} | {u['rows_with_data']}/{u['rows']} | {u['tokens']} | {u['distinct']} | {u['vocab']} | "
           f"{100 * u['usage']:.0f}% | {u['perplexity']:.1f} |" for k, u in summary["token_usage"].items()]
    model = summary.get("model", {})
    md += ["", "## Model", ""]
    if "skipped" in model:
        md.append(model["skipped"])
    elif model:
        md.append(f"Tiny model, {model['parameters']:,} parameters, final training loss "
                  f"{_fmt(model['final_loss'])} (soft targets for the binned keys add their own entropy, "
                  "so this is not a plain cross entropy; training focuses on the two predicted keys, "
                  "so the others stay far from converged in a short CPU run; raise --steps for a better "
                  "model). Test objects (20%, chosen by a hash "
                  "of the id) had their redshift and held-out band tokens hidden during training. "
                  "The model's estimate is the median of its predicted distribution; neither hidden key "
                  "is among its inputs. The kNN baseline (scikit-learn, k = 10) gets the model's "
                  "photometric inputs, the bin values of the other bands' tokens (the model also has the "
                  "object's other modalities); kNN on the catalogue's unbinned magnitudes shows what the "
                  "binning itself costs.")
        md += ["", "| target | metric | model | kNN (model's photometric tokens) | kNN (catalogue mags) | n |",
               "|---|---|---|---|---|---|"]
        for t in model["tasks"].values():
            cat = t.get("knn_catalogue", {})
            for metric in t["model"]:
                if metric != "n":
                    md.append(f"| {t['target']} | {metric} | {_fmt(t['model'][metric])} | "
                              f"{_fmt(t['knn'][metric])} | {_fmt(cat.get(metric))} | {t['model']['n']} |")
        by = model.get("redshift_by_inputs") or {}
        if by:
            md += ["", "### Redshift by input", "",
                   f"The same model predicts the redshift of the {by['rows']} test objects that have "
                   "a DESI spectrum from one set of inputs at a time (every other key excluded): the "
                   "S-PLUS magnitudes but the held-out band, the DESI spectrum tokens (level, shape, "
                   "norm and noise keys of the b/r/z arms), or both.", "",
                   "| inputs | keys | sigma_NMAD | outliers | bias | n |", "|---|---|---|---|---|---|"]
            md += [f"| {label} | {m['keys']} | {m['sigma_nmad']:.4f} | {100 * m['outliers']:.1f}% | "
                   f"{m['bias']:.4f} | {m['n']} |" for label, m in by["inputs"].items()]
        e = model["embedding"]
        md += ["", "### Nearest neighbours in embedding space", "",
               f"Over {e['rows']} test objects, {100 * e['class_agreement']:.1f}% of the {e['k']} nearest "
               f"neighbours (cosine) share the object's class (chance: {100 * e['chance']:.1f}%); the median "
               f"|z difference| to neighbours is {e['median_dz_neighbours']:.3f} against "
               f"{e['median_dz_random']:.3f} for random objects."
               + (f" Baseline: in the PCA of the raw inputs (the other bands' standardised catalogue "
                  f"magnitudes, {e['pca']['components']} components for 95% of their variance), "
                  f"{100 * e['pca']['class_agreement']:.1f}% share the class and the median |z difference| "
                  f"is {e['pca']['median_dz_neighbours']:.3f}." if e.get("pca") else ""), ""]
        for ex in e["examples"]:
            q = ex["query"]
            md.append(f"- query id {q['id']} ({q['class']}, z={q['z']:.3f}): " + ", ".join(
                f"{nb['class']} z={nb['z']:.3f}" for nb in ex["neighbours"]))
    md += ["", "## Plots", ""]
    md += [f"![{p}]({p})" for p in summary["plots"]]
    md += ["", "## Timings (s)", "", "| step | seconds |", "|---|---|"]
    md += [f"| {k} | {v:.1f} |" for k, v in summary["seconds"].items()]
    (out / "report.md").write_text("\n".join(md) + "\n")
    return render_table(rows)
