"""Conformance kit for every codec kind, CodecManager round trips, registry wiring."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from astromodal_spectra import (
    DESISpectrum,
    DESISpectrumCodec,
    GaiaXPCodec,
    GaiaXPSpectrum,
    SpectrumTokenizer,
    ZTFLightCurve,
    ZTFLightCurveCodec,
)
from spectra_testdata import real_xp

from astromodal_core import CodecManager, ConfigError, DataError, TokenKeyError
from astromodal_core.registry import get_registry
from astromodal_core.testing import check_codec

RNG = np.random.default_rng(3)


def _desi(n: int = 12, npix: int = 64, arm: str = "r") -> DESISpectrum:
    x = np.linspace(0, 1, npix)
    amp = 10 ** RNG.uniform(0, 1, (n, 1))
    flux = amp * (1 + x + 0.2 * np.sin(10 * x + np.arange(n)[:, None])) + RNG.normal(0, 0.05, (n, npix))
    ivar = np.full((n, npix), 400.0) / amp**2
    return DESISpectrum(flux=flux, ivar=ivar, mask=np.zeros((n, npix), bool), arm=arm)


def _ztf(n: int = 12, length: int = 20) -> ZTFLightCurve:
    t = np.sort(RNG.uniform(0, 500, (n, length)), axis=1)
    mag = RNG.uniform(15, 19, (n, 1)) + 0.5 * np.sin(t / 9)
    err = RNG.uniform(0.01, 0.1, (n, length))
    mask = np.zeros((n, length), bool)
    mask[:, 15:] = True  # shorter light curves padded
    return ZTFLightCurve(time=t, mag=mag, magerr=err, mask=mask, band="r")


def _xp(n: int = 6, band: str = "RP") -> GaiaXPSpectrum:
    tab = real_xp()
    src = [np.array(c) for c in tab.column(f"{band.lower()}_coefficients").to_pylist() if c]
    err = [np.array(c) for c in tab.column(f"{band.lower()}_coefficient_errors").to_pylist() if c]
    scale = 10 ** RNG.uniform(-1, 1, (n, 1))
    coef = scale * np.array([src[i % len(src)] for i in range(n)])
    errs = scale * np.array([err[i % len(err)] for i in range(n)])
    return GaiaXPSpectrum(coefficients=coef, coefficient_errors=errs, band=band)


def test_desi_codec_conforms(tmp_path: Path) -> None:
    missing = _desi(3)
    missing.ivar[0] = 0.0
    done = check_codec(DESISpectrumCodec({"name": "desi_r", "kind": "flux_ivar"},
                                         codebook_size=32, norm_bins=16),
                       _desi(), _desi(4), missing=missing, tmp_dir=tmp_path)
    assert "check_missing_masked" in done and "check_save_load" in done


def test_ztf_codec_conforms(tmp_path: Path) -> None:
    missing = _ztf(3)
    missing.mag[0] = np.nan
    codec = ZTFLightCurveCodec({"name": "ztf_r", "kind": "ztf_mag_err", "patch_size": 2},
                               codebook_size=32, norm_bins=16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # test rows span more days than training
        done = check_codec(codec, _ztf(), _ztf(4), missing=missing, tmp_dir=tmp_path)
    assert "check_missing_masked" in done
    main, time, norm = codec.token_keys
    assert (main.layout, main.max_length) == ("ragged", 8)  # 15 points in patches of 2
    assert (time.name, time.layout, time.max_length, time.ordinal) == (
        "tok_lightcurve_ztf_r_time", "ragged", 8, True)
    legacy = ZTFLightCurveCodec({"name": "ztf_r", "kind": "ztf_mag_err", "patch_size": 2,
                                 "layout": "padded", "time_encoding": "delta"},
                                codebook_size=32, norm_bins=16)
    (tmp_path / "legacy").mkdir()
    check_codec(legacy, _ztf(), _ztf(4), missing=missing, tmp_dir=tmp_path / "legacy")
    assert [(k.layout, k.max_length) for k in legacy.token_keys] == [("sequence", 10), ("scalar", 1)]


def test_xp_codec_conforms(tmp_path: Path) -> None:
    missing = _xp(3)
    missing.present = np.array([False, True, True])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        done = check_codec(GaiaXPCodec({"name": "gaiaxp_rp", "kind": "gaiaxpy_xp", "xp_band": "RP",
                                        "patch_size": 4}, codebook_size=32, norm_bins=16),
                           _xp(), _xp(4), missing=missing, tmp_dir=tmp_path)
    assert "check_missing_masked" in done


def test_ztf_decode_restores_magnitudes_and_relative_times() -> None:
    lc = _ztf(8)
    codec = ZTFLightCurveCodec(codebook_size=64, norm_bins=64).train(lc)
    tokens = codec.encode(lc)
    flat, indptr = tokens["tok_lightcurve_ztf_g"]
    assert np.diff(indptr).tolist() == [15] * 8  # ragged: up to the last valid point
    dec = codec.decode(tokens)
    valid = ~lc.mask
    assert dec.mag.shape == (8, 15) and not valid[:, 15:].any()
    valid = valid[:, :15]
    assert np.array_equal(~dec.mask, valid)
    assert np.median(np.abs(dec.mag - lc.mag[:, :15])[valid]) < 0.05
    rel = lc.time[:, :15] - lc.time[:, :1]
    # days since the first point, in 0.5-day bins at every point: no error adds up
    assert np.max(np.abs(dec.time - rel)[valid]) <= 0.25 + 1e-9
    assert dec.band == "g"
    lc.time[2, 3], lc.time[2, 4] = lc.time[2, 4], lc.time[2, 3]
    with pytest.raises(DataError, match="row 2: time is not sorted"):
        codec.encode(lc)


def test_codec_manager_matches_tokenizer(small_cube: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        tok = SpectrumTokenizer(codebook_size=32, norm_bins=32, progress=False).train([small_cube])
    assert [g["name"] for g in tok.groups] == ["desi_b", "desi_r", "ztf_g", "ztf_r", "gaiaxp_bp",
                                               "gaiaxp_rp"]
    result = tok.encode(small_cube)
    table = pq.read_table(small_cube)
    manager = CodecManager(device=None, codecs=[tok])
    flux = np.array(table.column("desi_flux_b").to_pylist()[:-1])
    ivar = np.array(table.column("desi_ivar_b").to_pylist()[:-1])
    mask = np.array(table.column("desi_mask_b").to_pylist()[:-1]) != 0
    spec = DESISpectrum(flux=flux, ivar=ivar, mask=mask, arm="b")
    tokens = manager.encode(spec)
    np.testing.assert_array_equal(tokens["tok_spectrum_desi_b"], result["tokens_desi_b"][:-1])
    np.testing.assert_array_equal(tokens["tok_spectrum_desi_b_norm"], result["tokens_desi_b_norm"][:-1])
    back = manager.decode(tokens, DESISpectrum, arm="b")
    assert back.arm == "b" and back.flux.shape == flux.shape
    with pytest.raises(TokenKeyError):
        manager.decode({"tok_spectrum_desi_b": tokens["tok_spectrum_desi_b"]}, DESISpectrum, arm="b")
    cols = tok.to_token_columns(result)
    keys = {k.name: k for k in tok.token_keys}
    assert set(cols) == set(keys)
    assert keys["tok_xp_bp"].layout == "ragged" and keys["tok_lightcurve_ztf_g"].layout == "ragged"
    assert keys["tok_lightcurve_ztf_g_time"].layout == "ragged" and keys["tok_lightcurve_ztf_g_time"].ordinal
    assert keys["tok_spectrum_desi_b"].vocab_size == 33 and keys["tok_spectrum_desi_b"].mask_token == 32
    # normalisations are quantile bins (ordinal); k-means codebook ids are not
    assert keys["tok_spectrum_desi_b_norm"].ordinal and not keys["tok_spectrum_desi_b"].ordinal


def test_codec_rejects_bad_modalities() -> None:
    codec = DESISpectrumCodec(codebook_size=8, norm_bins=8).train(_desi(4, arm="b"))
    bad = _desi(2, arm="b")
    bad.ivar[1, 3] = -1.0
    with pytest.raises(DataError, match="row 1: ivar holds negative"):
        codec.encode(bad)
    with pytest.raises(DataError, match="more than the 64"):
        codec.encode(_desi(2, npix=80, arm="b"))
    short = codec.encode(_desi(2, npix=50, arm="b"))["tok_spectrum_desi_b"]
    assert short.shape == (2, 64) and np.all(short[:, 50:] == 8) and short[:, :50].max() < 8


def test_plugin_registers_keys_modalities_and_tokenizer() -> None:
    reg = get_registry()
    assert reg.owner("tok_spectrum_desi_b") == "astromodal-spectra"
    assert reg.tokenizer("spectrum") is SpectrumTokenizer
    for name in ("tok_spectrum_desi_r", "tok_lightcurve_ztf_i", "tok_xp_rp", "tok_xp_bp_norm"):
        assert reg.token_key(name).mask_token == reg.token_key(name).vocab_size - 1
    assert reg.token_key("tok_spectrum_desi_z").max_length == 2881
    assert reg.token_key("tok_xp_bp").layout == "ragged"
    assert reg.codec_for(ZTFLightCurve) is ZTFLightCurveCodec
    from astromodal.tokenizers import SpectrumTokenizer as Facade

    assert Facade is SpectrumTokenizer


def test_from_config_accepts_seed_section_and_rejects_unknown_keys() -> None:
    tok = SpectrumTokenizer.from_config({"codebook_size": 64,
                                         "groups": ["desi_b", "desi_r", "gaiaxp_bp"]})
    assert [g["token_key"] for g in tok.groups] == ["tok_spectrum_desi_b", "tok_spectrum_desi_r",
                                                   "tok_xp_bp"]
    with pytest.raises(ConfigError, match=r"^tokenizers\.spectrum\.codebok_size: unknown setting; known: \["):
        SpectrumTokenizer.from_config({"codebok_size": 64})
    with pytest.raises(ConfigError, match=r"^tokenizers\.spectrum: codebook_size must be in \[1, 65535\], got 0"):
        SpectrumTokenizer.from_config({"codebook_size": 0})
    with pytest.raises(ValueError, match="unknown group name 'desi_q'"):
        SpectrumTokenizer(groups=["desi_q"])
    with pytest.raises(ValueError, match="unknown kind"):
        SpectrumTokenizer(groups=[{"name": "x", "kind": "flux"}])
    with pytest.raises(ValueError, match="two groups use"):
        SpectrumTokenizer(groups=["desi_b", "desi_b"])


def test_encode_to_store_streams_the_same_tokens(small_cube: Path, tmp_path: Path) -> None:
    from astromodal_core.store import read_token_store, store_metadata

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        tok = SpectrumTokenizer(codebook_size=16, norm_bins=16, progress=False,
                                batch_size=3).train([small_cube])
    result = tok.encode(small_cube)
    out = tok.encode_to_store(small_cube, tmp_path / "tokens.parquet")
    ids, cols = read_token_store(out)
    np.testing.assert_array_equal(ids, result["ids"])
    expect = tok.to_token_columns(result)
    for key, value in expect.items():
        got = cols[key]
        if isinstance(value, tuple):
            np.testing.assert_array_equal(got[0], value[0])
            np.testing.assert_array_equal(got[1], value[1])
        else:
            np.testing.assert_array_equal(got, value)
    fingerprints = store_metadata(out)["fingerprints"]
    assert set(fingerprints) == set(expect)  # keyed by token key name
    assert set(fingerprints.values()) == {tok.fingerprint}
    bad = tmp_path / "bad.parquet"
    table = pq.read_table(small_cube)
    ivar = table.column("desi_ivar_b").to_pylist()
    ivar[6][3] = -1.0
    import pyarrow as pa

    pq.write_table(table.set_column(table.schema.get_field_index("desi_ivar_b"), "desi_ivar_b",
                                    pa.array(ivar, pa.list_(pa.float32()))), bad)
    with pytest.raises(DataError, match="row id 1006"):
        tok.encode_to_store(bad, tmp_path / "partial.parquet")
    assert not (tmp_path / "partial.parquet").exists()
    assert [p.name for p in tmp_path.iterdir() if "partial" in p.name] == []
