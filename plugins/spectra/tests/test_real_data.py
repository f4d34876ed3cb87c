"""Real DESI coadds and Gaia DR3 XP spectra: reconstruction within the noise, missing BP."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from astromodal_spectra import SpectrumTokenizer
from astromodal_spectra.groups import normalise_group
from astromodal_spectra.points import read_xp
from astromodal_spectra.tokenizer import group_from_name
from spectra_testdata import DATA

DESI = DATA / "desi_real.parquet"
XP = DATA / "gaia_xp_real.parquet"


def _arm(table: pa.Table, what: str, arm: str) -> np.ndarray:
    return np.array(table.column(f"desi_{what}_{arm}").to_pylist(), dtype=np.float64)


@pytest.fixture(scope="module")
def desi_tok() -> SpectrumTokenizer:
    return SpectrumTokenizer(codebook_size=256, norm_bins=256, progress=False,
                             groups=["desi_b", "desi_r", "desi_z"]).train([DESI])


def test_desi_reconstruction_within_noise(desi_tok: SpectrumTokenizer) -> None:
    table = pq.read_table(DESI)
    result = desi_tok.encode(DESI)
    assert result["ids"].tolist() == [39633345008634465, 39089837499744649]
    for arm, npix in (("b", 2751), ("r", 2326), ("z", 2881)):
        assert result[f"tokens_desi_{arm}"].shape == (2, npix)
        dec = desi_tok.decode(result, f"desi_{arm}")
        flux, ivar = _arm(table, "flux", arm), _arm(table, "ivar", arm)
        ok = ivar > 0
        score = np.median(np.abs(dec.flux - flux)[ok] * np.sqrt(ivar[ok]))
        assert score < 0.5, (arm, score)
        assert dec.wavelength[0] == pytest.approx({"b": 3600.0, "r": 5760.0, "z": 7520.0}[arm])
        assert dec.wavelength.shape == (npix,)
        # decoded ivar is the quantised noise: same order as the input's
        ratio = np.median(dec.ivar[ok] / ivar[ok])
        assert 0.5 < ratio < 2.0


def test_desi_masked_pixels_stay_masked(desi_tok: SpectrumTokenizer, tmp_path: Path) -> None:
    table = pq.read_table(DESI)
    ivar = table.column("desi_ivar_b").to_pylist()
    flux = table.column("desi_flux_b").to_pylist()
    ivar[0][100:110] = [0.0] * 10
    flux[1][7] = float("nan")
    table = table.set_column(table.schema.get_field_index("desi_ivar_b"), "desi_ivar_b",
                             pa.array(ivar, pa.list_(pa.float32())))
    table = table.set_column(table.schema.get_field_index("desi_flux_b"), "desi_flux_b",
                             pa.array(flux, pa.list_(pa.float32())))
    pq.write_table(table, tmp_path / "masked.parquet")
    result = desi_tok.encode(tmp_path / "masked.parquet")
    tok = result["tokens_desi_b"]
    assert np.all(tok[0, 100:110] == 256) and tok[0, 99] < 256 and tok[0, 110] < 256
    assert tok[1, 7] == 256 and tok[1, 6] < 256
    dec = desi_tok.decode(result, "desi_b")
    assert dec.mask[0, 100:110].all() and not dec.mask[0, 99]
    assert np.all(dec.ivar[0, 100:110] == 0)
    assert dec.mask[1, 7] and dec.mask.sum() == 11


def test_desi_patch_sizes_shorten_sequences() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for p, expect in ((4, 688), (16, 172)):
            tok = SpectrumTokenizer(codebook_size=128, norm_bins=64, progress=False,
                                    groups=[{"name": "desi_b", "kind": "flux_ivar",
                                             "patch_size": p}]).train([DESI])
            result = tok.encode(DESI)
            assert result["tokens_desi_b"].shape == (2, expect)
            dec = tok.decode(result, "desi_b")
            assert dec.flux.shape == (2, 2751) and not dec.mask.any()
            (key, _) = tok.token_keys
            assert key.max_length == expect and key.layout == "sequence"


def test_gaia_xp_sampling_matches_gaiaxpy_and_missing_bp_is_empty(
        xp_design: dict[str, np.ndarray]) -> None:
    import gaiaxpy

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref, _ = gaiaxpy.convert(str(DATA / "XP_CONTINUOUS_RAW_with_missing_BP.csv"),
                                 save_file=False)
    table = pq.read_table(XP)
    ids = table.column("id").to_pylist()
    for band in ("bp", "rp"):
        for row in ref[ref["xp"] == band.upper()].itertuples():
            coef = table.column(f"{band}_coefficients")[ids.index(row.source_id)].as_py()
            if coef is None:
                assert np.isnan(np.asarray(row.flux, dtype=float)).all()
                continue
            coef = np.array(coef)
            np.testing.assert_allclose(coef @ xp_design[band.upper()], row.flux, rtol=1e-8,
                                       atol=1e-8 * np.abs(row.flux).max())
            # the file has the correlation column: errors as gaiaxpy computes them
            pts = read_xp(table.slice(ids.index(row.source_id), 1).to_batches()[0],
                          normalise_group(group_from_name(f"gaiaxp_{band}")),
                          xp_design[band.upper()], np.array([row.source_id]), XP,
                          f"{band}_coefficient_correlations")
            np.testing.assert_allclose(pts.value[0], row.flux, rtol=1e-8, atol=1e-6)
            np.testing.assert_allclose(pts.sigma[0], row.flux_error, rtol=1e-6)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        tok = SpectrumTokenizer(codebook_size=512, norm_bins=64, progress=False,
                                groups=["gaiaxp_bp", "gaiaxp_rp"]).train([XP])
    result = tok.encode(XP)
    assert np.diff(result["tokens_gaiaxp_bp_indptr"]).tolist() == [600, 0, 600]
    assert np.diff(result["tokens_gaiaxp_rp_indptr"]).tolist() == [600, 600, 600]
    assert result["tokens_gaiaxp_bp_norm"][1] == 64  # the norm key's mask token
    dec = tok.decode(result, "gaiaxp_bp")
    assert dec.present.tolist() == [True, False, True]
    assert np.isnan(dec.flux[1]).all() and np.isnan(dec.coefficients[1]).all()
    for i in (0, 2):
        coef = np.array(table.column("bp_coefficients")[i].as_py())
        flux = coef @ xp_design["BP"]
        # XP fluxes have S/N of hundreds; 512 centroids keep them to 1% of the peak
        assert np.median(np.abs(dec.flux[i] - flux)) < 0.01 * np.abs(flux).max()
        # coefficients recovered by least squares from the decoded samples
        np.testing.assert_allclose(dec.coefficients[i] @ xp_design["BP"], dec.flux[i],
                                   atol=0.05 * np.abs(flux).max())



ZTF_SNIA = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "ztf_snia" / "ztf_snia_bts.parquet"


@pytest.mark.skipif(not ZTF_SNIA.is_file(), reason="real ZTF SN Ia sample not in ../shared/data")
def test_real_ztf_light_curves_ragged_with_times_under_a_day(tmp_path: Path) -> None:
    """2289 real ZTF SN Ia light curves (g band): ragged rows no longer than the longest light
    curve, decoded times within 0.25 day of the truth at every point, magnitudes within their
    errors."""
    table = pq.read_table(ZTF_SNIA, columns=["id", "ztf_mag_g", "ztf_magerr_g", "ztf_hmjd_g"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        tok = SpectrumTokenizer(codebook_size=256, norm_bins=256, groups=["ztf_g"],
                                progress=False).train([ZTF_SNIA])
    res = tok.encode(ZTF_SNIA)
    lengths = np.array([len(r) for r in table.column("ztf_mag_g").to_pylist()])
    keys = {k.name: k for k in tok.token_keys}
    assert keys["tok_lightcurve_ztf_g"].max_length == lengths.max() == 140
    assert np.diff(res["tokens_ztf_g_indptr"]).tolist() == lengths.tolist()
    dec = tok.decode(res, "ztf_g")
    for what, col in (("time", "ztf_hmjd_g"), ("mag", "ztf_mag_g")):
        rows = table.column(col).to_pylist()
        got = np.asarray(getattr(dec, what))
        diff = np.concatenate([got[i, : len(r)] - (np.asarray(r) - r[0] if what == "time" else r)
                               for i, r in enumerate(rows) if r])
        if what == "time":
            assert np.abs(diff).max() <= 0.25 + 1e-6
        else:
            errs = np.concatenate([r for r in table.column("ztf_magerr_g").to_pylist() if r])
            assert np.median(np.abs(diff) / errs) < 0.2
