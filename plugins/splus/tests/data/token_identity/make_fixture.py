"""Write the token-identity fixture: fitted ScalarTokenizers and the tokens the encoder gave.

    .venv/bin/python plugins/splus/tests/data/token_identity/make_fixture.py

Run once, with the encoder as it was before the zero-copy Arrow path (commit dc77eb0), so that
``test_token_identity.py`` checks later encoders give bit-identical tokens for the same fitted
state. Do not re-run it to make a failing test pass: a difference is a change of the tokens.

Written here (all synthetic or from the vendored BSD-3 Gaia XP sample, nothing from GPL data):
- ``edge.parquet``: 6000 synthetic rows with every input case of the encoder: float32 / float64
  columns with nulls, NaN, +-inf, sentinels and values exactly at (and one ulp beside) the bin
  edges; int32 with nulls, int16, float16 and decimal columns; row groups of 2500.
- ``tok_edge.npz`` (256 bins, a column map, per-column sentinels), ``tok_boss.npz`` (1024 bins,
  SDSS ugriz + errors + redshift named as in ``shared/data/photoz``), ``tok_xp.npz`` (Gaia XP
  scalar columns, trained on the vendored ``gaia_xp_real.parquet``).
- ``expected.npz``: ids and tokens of ``edge.parquet`` and of ``gaia_xp_real.parquet``.
- ``expected.json``: sha256 digests of the tokens of the real samples that live in
  ``shared/data`` only (BOSS DR10 photometry, DESI FIBERMAP rows): their licence or size keeps
  them out of the repository, so the test (skipped where they are absent) compares digests.
"""

from __future__ import annotations

import decimal
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[4]
SHARED = REPO.parent / "shared" / "data"
XP = REPO / "plugins" / "spectra" / "tests" / "data" / "gaia_xp_real.parquet"

EDGE_COLUMNS = ["mag_pstotal_r", "mag_pstotal_g", "gaia_parallax", "gaia_pmra", "gaia_pmdec", "z", "flux_ratio"]
EDGE_MAP = {"z": "redshift", "mag_pstotal_g": "g_mag"}
BANDS = "ugriz"
BOSS_COLUMNS = [f"mag_pstotal_{b}" for b in BANDS] + [f"err_mag_pstotal_{b}" for b in BANDS] + ["z"]
BOSS_MAP = {**{f"mag_pstotal_{b}": f"MAG_{b.upper()}" for b in BANDS},
            **{f"err_mag_pstotal_{b}": f"MAGERR_{b.upper()}" for b in BANDS}, "z": "Z"}
XP_COLUMNS = ["bp_standard_deviation", "bp_n_relevant_bases", "rp_standard_deviation", "rp_n_relevant_bases"]
DESI_COLUMNS = ["FLUX_G", "FLUX_R", "FLUX_Z", "FLUX_W1", "FLUX_IVAR_G", "EBV", "PMRA", "PARALLAX"]


def digest(a: np.ndarray) -> str:
    """sha256 of an array's shape, dtype and C-order bytes."""
    a = np.ascontiguousarray(a)
    h = hashlib.sha256(f"{a.shape}{a.dtype.str}".encode())
    h.update(a.tobytes())
    return h.hexdigest()


def boss_parquet(csv: Path, out: Path) -> Path:
    """A BOSS csv as parquet (float64 columns, ids 0..n-1, row groups of 2048)."""
    table = pcsv.read_csv(csv)
    table = table.add_column(0, "id", pa.array(np.arange(table.num_rows, dtype=np.int64)))
    pq.write_table(table, out, row_group_size=2048)
    return out


def desi_sources() -> list[str]:
    return [f"{p}[FIBERMAP]" for p in sorted((SHARED / "desi").glob("coadd-*.fits"))]


def _train_edge(tmp: Path):
    from astromodal_splus import ScalarTokenizer

    rng = np.random.default_rng(11)
    n = 20_000
    r = rng.uniform(14, 23, n)
    cols = {
        "id": np.arange(n, dtype=np.int64),
        "mag_pstotal_r": r.astype(np.float32),
        "err_mag_pstotal_r": (0.01 + 0.02 * 10 ** (0.4 * (r - 21))).astype(np.float32),
        "g_mag": r + rng.normal(0.6, 0.3, n),
        "err_mag_pstotal_g": 0.01 + 0.02 * 10 ** (0.4 * (r - 21)),
        "gaia_parallax": rng.integers(-50, 400, n).astype(np.int32),
        "gaia_pmra": rng.normal(0, 20, n).astype(np.float16),
        "gaia_pmdec": rng.integers(-300, 300, n).astype(np.int16),
        "redshift": rng.gamma(2.0, 0.2, n),
        "flux_ratio": rng.lognormal(0, 1, n),
    }
    cols["flux_ratio"][:300] = 1.0  # an atom: ties get a bin of their own
    train = tmp / "edge_train.parquet"
    pq.write_table(pa.table(cols), train, row_group_size=5000)
    tok = ScalarTokenizer(n_bins=256, scalar_columns=EDGE_COLUMNS, column_map=EDGE_MAP,
                          column_sentinels={"gaia_parallax": [-9999.0], "flux_ratio": [0.0]},
                          progress=False, max_values_per_file_per_col=None)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return tok.train([train])


def _edge_file(tok, path: Path) -> Path:
    """Every encoder input case, column by column."""
    rng = np.random.default_rng(12)
    n = 6000
    ids = rng.permutation(np.arange(10**9, 10**9 + n, dtype=np.int64))

    def with_edges(base: np.ndarray, edges: np.ndarray, dtype: type) -> np.ndarray:
        x = base.astype(dtype)
        e = edges.astype(dtype)
        picks = np.concatenate([e, np.nextafter(e, np.inf), np.nextafter(e, -np.inf)])
        where = rng.choice(n, size=min(len(picks), n // 3), replace=False)
        x[where] = picks[: len(where)]
        return x

    def specials(x: np.ndarray, values: list[float]) -> np.ndarray:
        where = rng.choice(n, size=len(values) * 15, replace=False)
        x[where] = np.repeat(np.asarray(values, dtype=x.dtype), 15)
        return x

    def nulls(frac: float) -> np.ndarray:
        m = rng.random(n) < frac
        m[:3] = True  # the first rows of the file (bitmap offset 0)
        return m

    r = with_edges(rng.uniform(12, 25, n), tok.bins["mag_pstotal_r"].edges, np.float32)
    r = specials(r, [np.nan, np.inf, -np.inf, 99.0, -99.0, 1e30, -1e30, 0.0, -0.0])
    g = with_edges(rng.uniform(12, 25, n), tok.bins["mag_pstotal_g"].edges, np.float64)
    g = specials(g, [np.nan, np.inf, -np.inf, 99.0, -99.0, 1e308, -1e308, 5e-324, -0.0])
    par = rng.integers(-100, 500, n).astype(np.int32)
    par[rng.choice(n, 40, replace=False)] = -9999
    pmra = rng.normal(0, 30, n).astype(np.float16)
    pmra = specials(pmra, [np.nan, np.inf, -np.inf])
    z = with_edges(rng.gamma(2.0, 0.25, n), tok.bins["z"].edges, np.float64)
    flux = with_edges(rng.lognormal(0, 1.2, n), tok.bins["flux_ratio"].edges, np.float64)
    flux = specials(flux, [1.0, 0.0, np.nan])
    table = pa.table({
        "id": ids,
        "mag_pstotal_r": pa.array(r, mask=nulls(0.05)),
        "err_mag_pstotal_r": pa.array(rng.uniform(0, 0.5, n).astype(np.float32)),
        "g_mag": pa.array(g, mask=nulls(0.03)),
        "err_mag_pstotal_g": rng.uniform(0, 0.5, n),
        "gaia_parallax": pa.array(par, mask=nulls(0.1)),
        "gaia_pmra": pa.array(pmra),
        "gaia_pmdec": pa.array(rng.integers(-400, 400, n).astype(np.int16)),
        "redshift": pa.array(z),
        "flux_ratio": pa.array([None if i % 97 == 5 or not np.isfinite(v) else decimal.Decimal(f"{v:.6f}") for i, v in enumerate(flux)],
                               type=pa.decimal128(18, 6)),
    })
    pq.write_table(table, path, row_group_size=2500)
    return path


def _encode(tok, source: str | Path) -> tuple[np.ndarray, np.ndarray]:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = tok.encode(source, progress=False)
    return out["ids"], out["scalar_tokens"]


def main() -> int:
    from astromodal_splus import ScalarTokenizer

    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True).stdout.strip()
    expected: dict[str, np.ndarray] = {}
    digests: dict[str, dict] = {"made_at_commit": head, "samples": {}}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        tok_edge = _train_edge(tmp)
        tok_edge.save(HERE / "tok_edge.npz")
        edge = _edge_file(tok_edge, HERE / "edge.parquet")
        expected["edge_ids"], expected["edge_tokens"] = _encode(tok_edge, edge)

        tok_xp = ScalarTokenizer(n_bins=8, scalar_columns=XP_COLUMNS, mag_filter_col=None,
                                 progress=False).train([XP])
        tok_xp.save(HERE / "tok_xp.npz")
        expected["xp_ids"], expected["xp_tokens"] = _encode(tok_xp, XP)

        # BOSS-named synthetic training file: the fitted state holds no value of the GPL sample
        rng = np.random.default_rng(13)
        n = 30_000
        r = rng.uniform(15, 24, n)
        cols: dict[str, np.ndarray] = {"id": np.arange(n, dtype=np.int64)}
        for i, b in enumerate(BANDS):
            m = r + (2 - i) * 0.5 + rng.normal(0, 0.4, n)
            cols[f"MAG_{b.upper()}"] = m
            cols[f"MAGERR_{b.upper()}"] = 0.01 + 0.05 * 10 ** (0.4 * (m - 21))
        cols["MAG_U"][:200] = 99.0
        cols["Z"] = rng.uniform(0, 0.9, n)
        train = tmp / "boss_like.parquet"
        pq.write_table(pa.table(cols), train)
        tok_boss = ScalarTokenizer(scalar_columns=BOSS_COLUMNS, column_map=BOSS_MAP, progress=False).train([train])
        tok_boss.save(HERE / "tok_boss.npz")
        for csv in sorted((SHARED / "photoz").glob("boss_dr10_*.csv")):
            ids, tokens = _encode(tok_boss, boss_parquet(csv, tmp / (csv.stem + ".parquet")))
            digests["samples"][f"photoz/{csv.name}"] = {
                "tokenizer": "tok_boss.npz", "rows": int(len(ids)), "ids": digest(ids), "tokens": digest(tokens),
                "n_missing": [int(v) for v in (tokens == tok_boss.n_bins).sum(axis=0)]}
        sources = desi_sources()
        if sources:
            tok_desi = ScalarTokenizer(n_bins=4, scalar_columns=DESI_COLUMNS, mag_filter_col=None,
                                       id_col="TARGETID", progress=False)
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                tok_desi.train(sources)
            tok_desi.save(HERE / "tok_desi.npz")
            for src in sources:
                ids, tokens = _encode(tok_desi, src)
                expected[f"desi_{Path(src.split('[')[0]).stem}_tokens"] = tokens
                expected[f"desi_{Path(src.split('[')[0]).stem}_ids"] = ids
    np.savez_compressed(HERE / "expected.npz", **expected)
    (HERE / "expected.json").write_text(json.dumps(digests, indent=1) + "\n")
    print(f"wrote the fixture at commit {head}: {sorted(expected)}; digests of {sorted(digests['samples'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
