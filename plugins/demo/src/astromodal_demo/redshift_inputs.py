"""Redshift from chosen inputs: the demo's trained model predicts the test objects' redshift
from photometry alone, from their DESI spectra alone and from both (``predict`` with the other
keys excluded), on the test objects that have a DESI spectrum.

Photometry is the S-PLUS magnitude keys (``tok_mag_*``) but the hidden band; spectra are the
DESI keys (``tok_spectrum_desi_*``). The model's estimate is the median of its predicted
distribution, as in :mod:`astromodal_demo.model_eval`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from astromodal_core.store import store_metadata

PathLike = str | os.PathLike[str]
SPECTRUM_PREFIX = "tok_spectrum_desi_"
PHOTOMETRY_PREFIX = "tok_mag_"


def input_sets(keys: Sequence[str], hidden: Sequence[str]) -> dict[str, list[str]]:
    """``{label: input keys}``: photometry alone, spectra alone, spectra + photometry."""
    phot = [k for k in keys if k.startswith(PHOTOMETRY_PREFIX) and k not in hidden]
    spec = [k for k in keys if k.startswith(SPECTRUM_PREFIX)]
    return {"photometry": phot, "spectra": spec, "spectra + photometry": spec + phot}


def rows_with_spectra(store: PathLike) -> np.ndarray:
    """Ids of the store rows holding a DESI spectrum (a ``tok_spectrum_desi_*_norm`` token
    that is not the mask)."""
    meta = store_metadata(store)
    norms = [k for k in meta["token_keys"] if k.startswith(SPECTRUM_PREFIX) and k.endswith("_norm")]
    table = pq.read_table(store, columns=[meta["id_col"], *norms])
    has = np.zeros(table.num_rows, dtype=bool)
    for k in norms:
        has |= table.column(k).to_numpy() != meta["token_keys"][k].mask_token
    return table.column(meta["id_col"]).to_numpy()[has]


def redshift_by_inputs(model_dir: PathLike, test_store: PathLike, truth: Mapping[str, np.ndarray],
                       z_values: np.ndarray, *, hidden: Sequence[str] = (), seed: int = 0,
                       progress: bool = False) -> dict[str, Any]:
    """sigma_NMAD, outliers and bias of the model's redshift for each input set, on the test
    objects with a DESI spectrum (``{}`` without such objects or spectrum keys)."""
    from astromodal_model.inference import predict_store
    from astromodal_model.model import AstroModel

    from .model_eval import z_metrics

    model = AstroModel.from_pretrained(Path(model_dir), tokens=test_store)
    keys = list(model.token_keys)
    sets = input_sets(keys, hidden)
    with_spec = set(rows_with_spectra(test_store).tolist())
    if not sets["spectra"] or not with_spec:
        return {}
    pos = {int(v): i for i, v in enumerate(truth["id"])}
    true_z = np.asarray(truth["z"] if "z" in truth else truth["true_redshift"], dtype=np.float64)
    out: dict[str, Any] = {"rows": len(with_spec), "inputs": {}}
    for label, inputs in sets.items():
        exclude = [k for k in keys if k not in inputs and k != "tok_z"]
        pred = predict_store(model, test_store, "tok_z", codec={"tok_z": z_values}, seed=seed,
                             progress=progress, exclude=exclude)
        keep = np.array([int(i) in with_spec for i in pred["id"]])
        rows = np.array([pos[int(i)] for i in pred["id"][keep]], dtype=np.int64)
        t = true_z[rows]
        ok = np.isfinite(t) & (np.abs(t) < 99)
        out["inputs"][label] = {"keys": len(inputs), **z_metrics(pred["median"][keep][ok], t[ok])}
    return out
