"""The DESI ``level_shape`` encoding (a level and a shape token per patch, a row noise key) and
the ZTF encodings (ragged rows, time tokens since the first epoch): layouts, exact tokens,
round trips, saved state, settings errors."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from astromodal_spectra import DESISpectrum, DESISpectrumCodec, SpectrumTokenizer
from astromodal_spectra.groups import normalise_group
from spectra_testdata import DATA, make_datacube

from astromodal_core import CodecFormatError
from astromodal_core.testing import check_codec

LEVEL_SHAPE = [{"name": f"desi_{a}", "kind": "flux_ivar", "encoding": "level_shape", "patch_size": 8}
               for a in ("b", "r")]


def _chi2(decoded: np.ndarray, flux: np.ndarray, ivar: np.ndarray) -> np.ndarray:
    ok = ivar > 0
    d = np.where(ok, np.nan_to_num(decoded) - flux, 0.0)
    return (ivar * d * d).sum(axis=1) / ok.sum(axis=1)


@pytest.fixture(scope="module")
def cube(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_datacube(tmp_path_factory.mktemp("ls") / "cube.parquet", n=12, seed=4,
                         ztf=False, xp=False, arms={"b": 120, "r": 100})


@pytest.fixture(scope="module")
def level_tok(cube: Path) -> SpectrumTokenizer:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return SpectrumTokenizer(codebook_size=64, norm_bins=64, groups=LEVEL_SHAPE,
                                 progress=False).train([cube])


def test_level_shape_keys_layout_and_values(level_tok: SpectrumTokenizer, cube: Path) -> None:
    keys = {k.name: k for k in level_tok.token_keys}
    assert list(keys)[:4] == ["tok_spectrum_desi_b", "tok_spectrum_desi_b_level",
                              "tok_spectrum_desi_b_norm", "tok_spectrum_desi_b_noise"]
    shape, level = keys["tok_spectrum_desi_b"], keys["tok_spectrum_desi_b_level"]
    assert (shape.layout, shape.max_length, shape.vocab_size, shape.ordinal) == ("sequence", 15, 65, False)
    assert (level.layout, level.max_length, level.vocab_size, level.ordinal) == ("sequence", 15, 65, True)
    assert keys["tok_spectrum_desi_r"].max_length == 13  # 100 pixels in patches of 8
    noise = keys["tok_spectrum_desi_b_noise"]
    assert (noise.layout, noise.ordinal, noise.mask_token) == ("scalar", True, 64)
    res = level_tok.encode(cube)
    assert sorted(k for k in res if k.startswith("tokens_desi_b")) == [
        "tokens_desi_b", "tokens_desi_b_level", "tokens_desi_b_noise", "tokens_desi_b_norm"]
    assert res["tokens_desi_b"].shape == res["tokens_desi_b_level"].shape == (12, 15)
    # the last object has no spectrum: every key masked; the masked edge (5 pixels) is in patch 0
    for k in ("tokens_desi_b", "tokens_desi_b_level"):
        assert np.all(res[k][-1] == 64) and res[k][:-1].max() < 64
    assert res["tokens_desi_b_noise"][-1] == 64 and res["tokens_desi_b_norm"][-1] == 64
    values = level_tok.token_values("tok_spectrum_desi_b_level")
    assert values.shape == (65,) and np.isnan(values[64]) and np.all(np.diff(values[:64]) > 0)
    assert np.isnan(level_tok.token_values("tok_spectrum_desi_b_noise")[64])


def test_level_shape_reconstructs_within_the_noise(level_tok: SpectrumTokenizer, cube: Path) -> None:
    res = level_tok.encode(cube)
    table = pq.read_table(cube)
    for arm in ("b", "r"):
        dec = level_tok.decode(res, f"desi_{arm}")
        flux = np.array(table.column(f"desi_flux_{arm}").to_pylist()[:-1], dtype=np.float64)
        ivar = np.array(table.column(f"desi_ivar_{arm}").to_pylist()[:-1], dtype=np.float64)
        mask = np.array(table.column(f"desi_mask_{arm}").to_pylist()[:-1]) != 0
        ivar = np.where(mask, 0.0, ivar)
        chi2 = _chi2(np.asarray(dec.flux[:-1], np.float64), flux, ivar)
        assert np.median(chi2) < 1.0, (arm, chi2)
        # decoded ivar: the row's median noise for every pixel of a patch with data
        got = np.asarray(dec.ivar[:-1], np.float64)
        med = np.array([np.median(1 / np.sqrt(v[v > 0])) for v in ivar])
        np.testing.assert_allclose(got[:, 10], 1 / med**2, rtol=0.05)
        assert np.all(dec.mask[-1]) and not dec.mask[0, 10]


def test_level_shape_save_load_same_tokens(level_tok: SpectrumTokenizer, cube: Path, tmp_path: Path) -> None:
    path = level_tok.save(tmp_path / "spectrum_tokenizer_config.npz")
    again = SpectrumTokenizer.load(path)
    assert again.fingerprint == level_tok.fingerprint
    assert again.groups == level_tok.groups and again.groups[0]["encoding"] == "level_shape"
    a, b = level_tok.encode(cube), again.encode(cube)
    for k, v in a.items():
        if isinstance(v, np.ndarray):
            np.testing.assert_array_equal(v, b[k], err_msg=k)
    assert SpectrumTokenizer.from_config(level_tok.settings()).groups == level_tok.groups


def test_level_shape_codec_conforms(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    x = np.linspace(0, 1, 64)

    def spec(n: int) -> DESISpectrum:
        amp = 10 ** rng.uniform(0, 1, (n, 1))
        flux = amp * (1 + x + 0.2 * np.sin(10 * x)) + rng.normal(0, 0.05, (n, 64)) * amp
        return DESISpectrum(flux=flux, ivar=np.full((n, 64), 400.0) / amp**2, arm="r")

    missing = spec(3)
    missing.ivar[0] = 0.0
    codec = DESISpectrumCodec({"name": "desi_r", "kind": "flux_ivar", "encoding": "level_shape",
                               "patch_size": 16}, codebook_size=16, norm_bins=16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        done = check_codec(codec, spec(12), spec(4), missing=missing, tmp_dir=tmp_path)
    assert "check_missing_masked" in done
    assert [k.name for k in codec.token_keys] == ["tok_spectrum_desi_r", "tok_spectrum_desi_r_level",
                                                  "tok_spectrum_desi_r_norm", "tok_spectrum_desi_r_noise"]


def test_real_desi_coadds_level_shape() -> None:
    """The two real coadds as 506 tokens: within the noise where the spectrum has no strong
    emission lines (the faint galaxy); the bright one's [OIII] / H-alpha lines at 100+ sigma
    are not (benchmarks/results_spectra.md)."""
    groups = [{"name": f"desi_{a}", "kind": "flux_ivar", "encoding": "level_shape"} for a in "brz"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        tok = SpectrumTokenizer(codebook_size=256, norm_bins=256, groups=groups,
                                progress=False).train([DATA / "desi_real.parquet"])
    assert sum(k.max_length for k in tok.token_keys) == 506
    res = tok.encode(DATA / "desi_real.parquet")
    table = pq.read_table(DATA / "desi_real.parquet")
    for arm in "brz":
        flux = np.array(table.column(f"desi_flux_{arm}").to_pylist(), dtype=np.float64)
        ivar = np.array(table.column(f"desi_ivar_{arm}").to_pylist(), dtype=np.float64)
        chi2 = _chi2(np.asarray(tok.decode(res, f"desi_{arm}").flux, np.float64), flux, ivar)
        assert chi2[1] < 1.0, (arm, chi2)


def test_encoding_settings_are_checked() -> None:
    with pytest.raises(ValueError, match=r"group 'desi_b': encoding must be one of \('pixels', "
                                         r"'level_shape'\), got 'wavelets'"):
        normalise_group({"name": "desi_b", "kind": "flux_ivar", "encoding": "wavelets"})
    with pytest.raises(ValueError, match="encoding 'level_shape' needs patch_size >= 2"):
        normalise_group({"name": "desi_b", "kind": "flux_ivar", "encoding": "level_shape",
                         "patch_size": 1})
    assert "encoding" not in normalise_group({"name": "desi_b", "kind": "flux_ivar",
                                              "encoding": "pixels"})  # stored as before
    with pytest.raises(ValueError, match=r"group 'ztf_g': layout must be one of"):
        normalise_group({"name": "ztf_g", "kind": "ztf_mag_err", "layout": "dense"})
    with pytest.raises(ValueError, match="time_step must be a positive number of days, got -1"):
        normalise_group({"name": "ztf_g", "kind": "ztf_mag_err", "time_step": -1})
    with pytest.raises(ValueError, match="time_span needs time_encoding 'since_first'"):
        normalise_group({"name": "ztf_g", "kind": "ztf_mag_err", "time_encoding": "delta",
                         "time_span": 100})
    new = normalise_group({"name": "ztf_g", "kind": "ztf_mag_err"})
    assert (new["layout"], new["time_encoding"], new["time_step"]) == ("ragged", "since_first", 0.5)
    # a saved group without the keys is the earlier form
    old = normalise_group({"name": "ztf_g", "kind": "ztf_mag_err"}, saved=True)
    assert "layout" not in old and "time_step" not in old


def _ztf(path: Path, times: list[list[float]]) -> Path:
    mags = [[17.0 + 0.1 * j for j in range(len(t))] for t in times]
    errs = [[0.05] * len(t) for t in times]
    pq.write_table(pa.table({
        "id": pa.array(range(7, 7 + len(times)), pa.int64()),
        "ztf_hmjd_g": pa.array(times, pa.list_(pa.float64())),
        "ztf_mag_g": pa.array(mags, pa.list_(pa.float64())),
        "ztf_magerr_g": pa.array(errs, pa.list_(pa.float64()))}), path)
    return path


def test_ztf_time_tokens_and_caps(tmp_path: Path) -> None:
    train = _ztf(tmp_path / "t.parquet", [[0.0, 1.2, 30.0], [5.0, 5.1], [2.0]])
    group = {"name": "ztf_g", "kind": "ztf_mag_err", "time_span": 40.0}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        tok = SpectrumTokenizer(codebook_size=8, norm_bins=8, groups=[group], progress=False).train([train])
    keys = {k.name: k for k in tok.token_keys}
    assert keys["tok_lightcurve_ztf_g"].max_length == 3  # the longest training light curve
    assert keys["tok_lightcurve_ztf_g_time"].vocab_size == 82  # 40 days in 0.5-day bins + mask
    res = tok.encode(train)
    assert res["tokens_ztf_g_time_flat"].tolist() == [0, 2, 60, 0, 0, 0]
    dec = tok.decode(res, "ztf_g")
    np.testing.assert_allclose(dec.time[0], [0.0, 1.0, 30.0])
    # longer light curves keep their first points; later times are clipped to the span
    longer = _ztf(tmp_path / "l.parquet", [[0.0, 1.0, 2.0, 3.0, 4.0], [0.0, 30.0]])
    with pytest.warns(RuntimeWarning, match="1 light curve\\(s\\) longer than the 3 points"):
        res = tok.encode(longer)
    assert res["tokens_ztf_g_indptr"].tolist() == [0, 3, 5]
    with pytest.warns(RuntimeWarning, match="span more than the 40 days"):
        assert tok.encode(_ztf(tmp_path / "s.parquet", [[0.0, 50.0]]))["tokens_ztf_g_time_flat"].tolist() == [0, 80]


def test_legacy_saved_ztf_group_loads_as_padded(tmp_path: Path) -> None:
    tok = SpectrumTokenizer.load(DATA / "legacy_v0" / "spectrum_tokenizer_config.npz")
    ztf = tok.models["ztf_g"]
    assert not ztf.ragged and ztf.suffixes == ("", "_norm")
    assert tok.settings()["groups"][1]["layout"] == "padded"
    config = dict(ztf.config())
    config["spec"] = {**config["spec"], "time_encoding": "sometimes"}
    from astromodal_spectra.group_model import GroupModel

    with pytest.raises(CodecFormatError, match="bad group spec: group 'ztf_g': time_encoding"):
        GroupModel.from_state(config, ztf.arrays(), where="x")


@pytest.mark.parametrize(("layout", "time_encoding"), [("padded", "since_first"), ("ragged", "delta")])
def test_ztf_mixed_layout_and_time_encoding(tmp_path: Path, layout: str, time_encoding: str) -> None:
    path = _ztf(tmp_path / "t.parquet", [[0.0, 1.2, 30.0], [5.0, 5.1], [2.0]])
    group = {"name": "ztf_g", "kind": "ztf_mag_err", "layout": layout, "time_encoding": time_encoding}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        tok = SpectrumTokenizer(codebook_size=8, norm_bins=8, max_points_per_row=4, groups=[group],
                                progress=False).train([path])
    res = tok.encode(path)
    if layout == "padded":
        assert res["tokens_ztf_g"].shape == res["tokens_ztf_g_time"].shape == (3, 4)
    else:
        assert res["tokens_ztf_g_indptr"].tolist() == [0, 3, 5, 6] and "tokens_ztf_g_time_flat" not in res
    dec = tok.decode(res, "ztf_g")
    np.testing.assert_allclose(dec.time[1, :2], [0.0, 0.1], atol=0.25 if layout == "padded" else 0.05)
    assert dec.mask[2, 1:].all() and not dec.mask[2, 0]
