"""Codecs: the conformance kit, the CodecManager path, and registration through the hooks."""

from __future__ import annotations

import numpy as np
import pytest
from astromodal_splus import (
    AstrometryCodec,
    CatalogScalar,
    CatalogScalarCodec,
    GaiaAstrometry,
    MagnitudeCodec,
    Redshift,
    RedshiftCodec,
    ScalarColumnCodec,
    SplusMagnitude,
)

from astromodal_core import (
    CodecManager,
    DataError,
    ModalityTypeError,
    NotFittedError,
    TokenKeyError,
    get_registry,
)
from astromodal_core.testing import check_codec

RNG = np.random.default_rng(0)


@pytest.mark.parametrize(
    "make, train, sample, missing",
    [
        (lambda: MagnitudeCodec("r", n_bins=64), RNG.normal(19, 1.5, 5000),
         SplusMagnitude(band="r", value=[16.0, 18.5, 21.0]),
         SplusMagnitude(band="r", value=[99.0, 18.0])),
        (lambda: AstrometryCodec("pmra", n_bins=128), RNG.standard_t(1.5, 5000) * 6,
         GaiaAstrometry(quantity="pmra", value=[-300.0, 0.1, 250.0]),
         GaiaAstrometry(quantity="pmra", value=[np.nan, 1.0])),
        (lambda: RedshiftCodec(n_bins=256), RNG.gamma(2, 0.15, 5000),
         Redshift(value=[0.05, 0.3, 1.2]), Redshift(value=[np.inf, 0.2])),
        (lambda: CatalogScalarCodec("fwhm", n_bins=32, sentinels=(-99.0,)), RNG.random(5000) * 3,
         CatalogScalar(column="fwhm", value=[0.1, 2.9]), CatalogScalar(column="fwhm", value=[-99.0, 1.0])),
    ],
)
def test_conformance(make, train, sample, missing, tmp_path):
    done = check_codec(make, train, sample, missing=missing, tmp_dir=tmp_path)
    assert "check_missing_masked" in done and "check_save_load" in done


def test_codec_trains_on_parquet_and_matches_tokenizer(fitted, cubes):
    codecs = {c.column: c for c in fitted.codecs()}
    assert len(codecs) == len(fitted.scalar_columns)
    assert type(codecs["mag_pstotal_g"]) is MagnitudeCodec and type(codecs["z"]) is RedshiftCodec
    assert type(codecs["gaia_parallax"]) is AstrometryCodec
    res = fitted.encode(cubes[0], progress=False)
    import pyarrow.parquet as pq

    t = pq.read_table(cubes[0])
    for j, c in enumerate(fitted.scalar_columns):
        np.testing.assert_array_equal(codecs[c].encode_array(t.column(c).to_numpy()), res["scalar_tokens"][:, j])
    alone = MagnitudeCodec("u", n_bins=32).train([str(cubes[0])])
    assert alone.effective_bins == 32 and alone.bins.edges.max() < 30  # sentinels skipped


def test_manager_encodes_and_decodes_redshift(fitted):
    manager = CodecManager(device=None, codecs=[fitted])
    tokens = manager.encode(Redshift(value=np.array([0.1, 0.5, np.nan])))
    assert list(tokens) == ["tok_z"]
    z_codec = next(c for c in fitted.codecs() if c.column == "z")
    np.testing.assert_array_equal(tokens["tok_z"], z_codec.encode_array([0.1, 0.5, np.nan]))
    assert tokens["tok_z"][2] == 256
    back = manager.decode(tokens, Redshift)
    assert isinstance(back, Redshift)
    assert np.all(np.abs(back.value[:2] - [0.1, 0.5]) <= back.error[:2]) and np.isnan(back.value[2])


def test_manager_picks_the_band_codec_among_twelve(fitted):
    manager = CodecManager(device="cpu", codecs=[fitted])
    g = SplusMagnitude(band="g", value=[17.0, 20.0])
    r = SplusMagnitude(band="R", value=[17.0, 20.0])
    plx = GaiaAstrometry(quantity="parallax", value=[-1.0, 2.0])
    tokens = manager.encode(g, r, plx)
    assert set(tokens) == {"tok_mag_pstotal_g", "tok_mag_pstotal_r", "tok_gaia_parallax"}
    assert not np.array_equal(tokens["tok_mag_pstotal_g"].numpy(), tokens["tok_mag_pstotal_r"].numpy())
    back = manager.decode(tokens, SplusMagnitude, band="g")
    assert back.band == "g" and np.allclose(back.value, [17.0, 20.0], atol=0.2)
    with pytest.raises(TokenKeyError, match="tok_mag_pstotal_j0660"):
        manager.decode(tokens, SplusMagnitude, band="j0660")
    with pytest.raises(TokenKeyError, match="tok_gaia_pmdec"):
        manager.decode({"tok_nonsense": tokens["tok_gaia_parallax"]}, GaiaAstrometry, quantity="pmdec")
    only_r = {"tok_mag_pstotal_r": tokens["tok_mag_pstotal_r"]}
    assert manager.decode(only_r, SplusMagnitude).band == "r"


def test_codec_errors():
    codec = MagnitudeCodec("r", n_bins=16)
    with pytest.raises(NotFittedError):
        codec.encode_array([18.0])
    codec.train(np.linspace(14, 22, 1000))
    with pytest.raises(ModalityTypeError, match="tok_mag_pstotal_g"):
        codec.encode(SplusMagnitude(band="g", value=[18.0]))
    with pytest.raises(DataError, match="column 'mag_pstotal_r': token 20 at position 1 is not a bin"):
        codec.decode_array(np.array([3, 20], dtype=np.uint16))
    with pytest.raises(DataError, match="expected numbers"):
        codec.encode_array(np.array(["a", "b"]))
    with pytest.raises(DataError, match="no finite"):
        MagnitudeCodec("r", n_bins=16).train(np.array([np.nan, 99.0]))
    with pytest.raises(ValueError, match="unknown S-PLUS band"):
        SplusMagnitude(band="y", value=[1.0])


def test_codec_load_refuses_another_class(tmp_path):
    from astromodal_core import CodecFormatError

    path = tmp_path / "c_config.npz"
    RedshiftCodec(n_bins=8).train(np.linspace(0, 1, 100)).save(path)
    assert isinstance(ScalarColumnCodec.load(path), RedshiftCodec)
    with pytest.raises(CodecFormatError, match="RedshiftCodec"):
        MagnitudeCodec.load(path)


def test_registry_and_facade():
    reg = get_registry()
    assert reg.owner("tok_mag_pstotal_r") == "astromodal-splus"
    key = reg.token_key("tok_z")
    assert (key.vocab_size, key.mask_token, key.layout, key.ordinal) == (1025, 1024, "scalar", True)
    assert "tok_err_mag_pstotal_r" not in reg.token_keys()
    for name in ("SplusMagnitude", "GaiaAstrometry", "Redshift", "CatalogScalar"):
        assert reg.modality(name).__module__ == "astromodal_splus.modalities"
    assert reg.codec_for(Redshift) is RedshiftCodec
    from astromodal.modalities import Redshift as R2
    from astromodal.tokenizers import ScalarTokenizer

    assert R2 is Redshift and reg.tokenizer("scalar") is ScalarTokenizer
