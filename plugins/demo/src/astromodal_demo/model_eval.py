"""The model part of the demo: train on a store whose test-set targets are hidden, predict
redshift and a held-out band, compare with scikit-learn kNN baselines, embedding neighbours.

The model's point estimate is the median of its predicted distribution, and neither hidden key
is among its inputs. The kNN baseline gets the model's photometric inputs (the bin values of
the other bands' tokens; the model also has the object's other modalities); a second kNN on
the catalogue's unbinned magnitudes shows what the binning itself costs. Embedding neighbours
(neither hidden key an input either) are compared with neighbours in a PCA of the raw inputs
(the standardised catalogue magnitudes of the other bands, the components that explain 95 % of
their variance).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from astromodal_core.sampling import hash_keys
from astromodal_core.serialize import atomic_path
from astromodal_core.store import store_metadata

PathLike = str | os.PathLike[str]


def holdout_split(ids: np.ndarray, seed: int, fraction: float = 0.2) -> np.ndarray:
    """True for the test rows: a seeded hash of the id, independent of row order."""
    h = hash_keys(ids, seed, salt="demo-test-split")
    return (h % np.uint64(10_000)) < np.uint64(int(fraction * 10_000))


def write_masked_stores(store: PathLike, train_out: PathLike, test_out: PathLike,
                        hide: Sequence[str], test_ids: set[int] | np.ndarray) -> None:
    """Split a token store: the training copy has ``hide`` keys masked on test rows (so the
    model never sees their answers); the test copy holds the test rows only."""
    meta = store_metadata(store)
    keys = meta["token_keys"]
    id_col = meta["id_col"]
    test_ids = np.asarray(sorted(test_ids), dtype=np.int64)
    pf = pq.ParquetFile(store)
    schema = pf.schema_arrow
    with atomic_path(train_out, suffix=".parquet") as t1, atomic_path(test_out, suffix=".parquet") as t2:
        with pq.ParquetWriter(t1, schema) as w_train, pq.ParquetWriter(t2, schema) as w_test:
            for batch in pf.iter_batches(batch_size=2048):
                table = pa.Table.from_batches([batch])
                is_test = np.isin(table.column(id_col).to_numpy(), test_ids)
                w_test.write_table(table.filter(pa.array(is_test)))
                for name in hide:
                    key = keys[name]
                    col = table.column(name).to_numpy().astype(np.int64)
                    col[is_test] = key.mask_token
                    table = table.set_column(table.schema.get_field_index(name), name,
                                             pa.array(col.astype(key.dtype)))
                w_train.write_table(table.cast(schema))


def bin_values(scalar_tok: Any, columns: Sequence[str]) -> dict[str, np.ndarray]:
    """``{token key: physical value of every token id}`` from a ScalarTokenizer's decoder
    (ids above a column's effective number of bins repeat its last bin)."""
    cols = list(scalar_tok.scalar_cols)
    eff = np.array([scalar_tok.effective_bins[c] for c in cols])
    ids = np.minimum(np.arange(scalar_tok.n_bins)[:, None], eff[None, :] - 1).astype(np.uint16)
    values, _ = scalar_tok.decode(ids)
    return {f"tok_{c}": values[:, cols.index(c)] for c in columns}


def z_metrics(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """sigma_NMAD of dz/(1+z), outlier fraction (|dz|/(1+z) > 0.15), median bias."""
    dz = (pred - true) / (1 + true)
    return {"sigma_nmad": float(1.4826 * np.median(np.abs(dz - np.median(dz)))),
            "outliers": float(np.mean(np.abs(dz) > 0.15)), "bias": float(np.median(dz)),
            "n": int(len(dz))}


def mag_metrics(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """Median absolute error and rms of a magnitude prediction."""
    d = pred - true
    return {"median_abs": float(np.median(np.abs(d))), "rms": float(np.sqrt(np.mean(d**2))),
            "n": int(len(d))}


def knn_baseline(features: np.ndarray, target: np.ndarray, train: np.ndarray, test: np.ndarray,
                 k: int = 10) -> np.ndarray:
    """scikit-learn kNN regression on standardised features (trained on ``train`` rows)."""
    from sklearn.neighbors import KNeighborsRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), KNeighborsRegressor(n_neighbors=k, weights="distance"))
    model.fit(features[train], target[train])
    return model.predict(features[test])


def photometry_features(truth: Mapping[str, np.ndarray], bands: Sequence[str]) -> np.ndarray:
    """Magnitudes of ``bands`` with non-detections (99) set to the faintest detection."""
    cols = []
    for b in bands:
        m = np.asarray(truth[f"mag_pstotal_{b}"], dtype=np.float64).copy()
        bad = ~np.isfinite(m) | (np.abs(m) >= 99)
        m[bad] = np.nanmax(m[~bad]) if (~bad).any() else 25.0
        cols.append(m)
    return np.stack(cols, axis=1)


def token_photometry_features(store: PathLike, scalar_tok: Any, bands: Sequence[str],
                              ids: np.ndarray) -> np.ndarray:
    """What the tokens keep of the photometry: the bin value of each band's token, rows in the
    order of ``ids`` (missing tokens set to the faintest bin value seen, as for magnitudes)."""
    cols = [f"mag_pstotal_{b}" for b in bands]
    values = bin_values(scalar_tok, cols)
    id_col = store_metadata(store)["id_col"]
    table = pq.read_table(store, columns=[id_col, *[f"tok_{c}" for c in cols]])
    where = {int(v): i for i, v in enumerate(table.column(id_col).to_numpy())}
    order = np.array([where[int(i)] for i in ids])
    feats = []
    for c in cols:
        tok = table.column(f"tok_{c}").to_numpy().astype(np.int64)[order]
        v = values[f"tok_{c}"]
        m = np.where(tok < len(v), v[np.minimum(tok, len(v) - 1)], np.nan)
        m[~np.isfinite(m)] = np.nanmax(m) if np.isfinite(m).any() else 25.0
        feats.append(m)
    return np.stack(feats, axis=1)


def train_and_evaluate(
    store: PathLike,
    out_dir: PathLike,
    truth: Mapping[str, np.ndarray],
    scalar_tok: Any,
    *,
    held_out_band: str,
    model_config: Mapping[str, Any],
    seed: int = 0,
    progress: bool = True,
    tokenizers: PathLike | None = None,
) -> dict[str, Any]:
    """Train the tiny model and measure it against kNN; returns figures and plot arrays.

    ``tokenizers``: the fitted set the store was encoded with; the model then takes the
    physical values of the ordinal keys as inputs (and is checked against the set)."""
    from astromodal_model import train_model
    from astromodal_model.inference import embed_store, predict_store

    out = Path(out_dir)
    ids = np.asarray(truth["id"], dtype=np.int64)
    is_test = holdout_split(ids, seed)
    band_key = f"tok_mag_pstotal_{held_out_band}"
    keys = store_metadata(store)["token_keys"]
    hide = [k for k in ("tok_z", band_key) if k in keys]
    write_masked_stores(store, out / "train_tokens.parquet", out / "test_tokens.parquet",
                        hide, set(ids[is_test].tolist()))
    model, history = train_model(out / "train_tokens.parquet", dict(model_config), out / "model_run",
                                 resume=False, progress=progress, device="cpu", tokenizers=tokenizers)
    values = bin_values(scalar_tok, [c.removeprefix("tok_") for c in hide])
    pos = {int(v): i for i, v in enumerate(ids)}
    result: dict[str, Any] = {"history": {"loss": [float(x) for x in history["loss"]]},
                              "parameters": int(model.num_parameters()), "tasks": {}}
    bands = [b for b in ("u", "j0378", "j0395", "j0410", "j0430", "g", "j0515", "r", "j0660",
                         "i", "j0861", "z") if b != held_out_band]
    feats = token_photometry_features(store, scalar_tok, bands, ids)
    catalogue = photometry_features(truth, bands)
    for key, true_name, kind in (("tok_z", "z", "z"), (band_key, f"mag_pstotal_{held_out_band}", "mag")):
        if key not in hide:
            continue
        # neither hidden key is an input: the kNN baselines do not see the other one either
        pred = predict_store(model, out / "test_tokens.parquet", key, codec=values,
                             progress=progress, seed=seed, exclude=hide)
        rows = np.array([pos[int(i)] for i in pred["id"]])
        true = np.asarray(truth[true_name], dtype=np.float64)
        valid_all = np.isfinite(true) & (np.abs(true) < 99)
        ok = valid_all[rows]
        train_rows = np.flatnonzero(~is_test & valid_all)
        knn = knn_baseline(feats, true, train_rows, rows[ok])
        knn_cat = knn_baseline(catalogue, true, train_rows, rows[ok])
        metric = z_metrics if kind == "z" else mag_metrics
        result["tasks"][key] = {
            "target": true_name,
            "model": metric(pred["median"][ok], true[rows[ok]]),
            "model_mean": metric(pred["mean"][ok], true[rows[ok]]),
            "knn": metric(knn, true[rows[ok]]),
            "knn_catalogue": metric(knn_cat, true[rows[ok]]),
            "true": true[rows[ok]], "pred_model": pred["median"][ok], "pred_knn": knn,
            "class": np.asarray(truth["true_class"])[rows[ok]],
        }
    emb_ids, emb = embed_store(model, out / "test_tokens.parquet", progress=progress, seed=seed, exclude=hide)
    result["embedding"] = neighbours(emb_ids, emb, truth, pos)
    rows = np.array([pos[int(i)] for i in emb_ids])
    pca = pca_features(catalogue[rows])
    base = neighbours(emb_ids, pca, truth, pos, metric="euclidean")
    result["embedding"]["pca"] = {k: base[k] for k in ("class_agreement", "median_dz_neighbours")}
    result["embedding"]["pca"]["components"] = int(pca.shape[1])
    (out / "model_history.json").write_text(json.dumps(result["history"]))
    return result


def pca_features(x: np.ndarray, variance: float = 0.95) -> np.ndarray:
    """The principal components of standardised ``x`` that explain ``variance`` of it."""
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    return PCA(n_components=variance, svd_solver="full").fit_transform(StandardScaler().fit_transform(x))


def neighbours(emb_ids: np.ndarray, emb: np.ndarray, truth: Mapping[str, np.ndarray],
               pos: Mapping[int, int], k: int = 5, metric: str = "cosine") -> dict[str, Any]:
    """Nearest neighbours (cosine after centring the embeddings, or Euclidean): class agreement
    vs chance, redshift differences, and example queries per class."""
    if metric == "cosine":
        x = emb - emb.mean(0)
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        sim = x @ x.T
    else:
        sq = (emb**2).sum(1)
        sim = -(sq[:, None] + sq[None, :] - 2 * emb @ emb.T)
    np.fill_diagonal(sim, -np.inf)
    nn = np.argsort(-sim, axis=1)[:, :k]
    rows = np.array([pos[int(i)] for i in emb_ids])
    cls = np.asarray(truth["true_class"])[rows]
    z = np.asarray(truth["true_redshift"], dtype=np.float64)[rows]
    agree = float(np.mean(cls[nn] == cls[:, None]))
    _, freq = np.unique(cls, return_counts=True)
    chance = float(np.sum((freq / freq.sum()) ** 2))
    dz_nn = np.median(np.abs(z[nn] - z[:, None]), axis=1)
    rand = np.random.default_rng(0).integers(0, len(z), size=(len(z), k))
    dz_rand = np.median(np.abs(z[rand] - z[:, None]), axis=1)
    examples = []
    for c in ("star", "galaxy", "qso"):
        where = np.flatnonzero(cls == c)
        if where.size:
            q = int(where[0])
            examples.append({
                "query": {"id": int(emb_ids[q]), "class": c, "z": float(z[q])},
                "neighbours": [{"id": int(emb_ids[j]), "class": str(cls[j]), "z": float(z[j]),
                                "similarity": float(sim[q, j])} for j in nn[q]],
            })
    return {"k": k, "class_agreement": agree, "chance": chance,
            "median_dz_neighbours": float(np.median(dz_nn)),
            "median_dz_random": float(np.median(dz_rand)), "examples": examples,
            "rows": int(len(z))}
