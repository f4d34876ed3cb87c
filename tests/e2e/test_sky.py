"""The shared synthetic sky and the plugins' demo columns: physics and cross-survey consistency."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from astromodal_demo.sky import (
    C_AA_S,
    FLAM_UNIT,
    REFERENCE_WINDOW,
    DemoColumns,
    Sky,
    ab_magnitude,
    photometry,
    spectroscopic_sample,
    tophat,
)


@pytest.fixture(scope="module")
def sky():
    return Sky.generate(150, seed=4)


@pytest.fixture(scope="module")
def columns(sky, survey_demo_columns):
    out = {}
    for contrib in survey_demo_columns:
        out.update(contrib(sky, {"cutout_size": 16}))
    return out


def test_ab_magnitude_of_a_flat_fnu_source():
    wave = np.arange(3000.0, 10000.0, 1.0)
    fnu = 3631e-23 * 10 ** (-0.4 * 20.0)  # a 20th-magnitude AB source, flat in f_nu
    flam = fnu * C_AA_S / wave**2 / FLAM_UNIT
    for center, width in ((4000, 100), (6500, 1500), (9000, 400)):
        w, r = tophat(center, width)
        assert ab_magnitude(wave, flam[None, :], w, r)[0] == pytest.approx(20.0, abs=1e-3)


def test_sky_is_deterministic_and_physical(sky):
    again = Sky.generate(150, seed=4)
    np.testing.assert_array_equal(again.redshift, sky.redshift)
    np.testing.assert_array_equal(again.ids, sky.ids)
    assert not np.array_equal(Sky.generate(150, seed=5).redshift, sky.redshift)
    assert set(sky.class_names) == {"star", "galaxy", "qso"}
    stars, qsos = sky.is_class("star"), sky.is_class("qso")
    assert np.all(np.abs(sky.redshift[stars]) < 1e-3) and np.all(sky.redshift[qsos] >= 0.2)
    assert np.all(sky.parallax[~stars] == 0) and np.all(sky.parallax[stars] > 0)
    assert np.all(sky.half_light[stars | qsos] == 0) and np.all(sky.half_light[~(stars | qsos)] > 0)
    # the SED is normalised so that the reference window gives mag_ref
    wave = np.arange(REFERENCE_WINDOW[0] - 20, REFERENCE_WINDOW[1] + 20, 1.0)
    resp = ((wave >= REFERENCE_WINDOW[0]) & (wave <= REFERENCE_WINDOW[1])).astype(float)
    mags = ab_magnitude(wave, sky.sed(wave), wave, resp)
    np.testing.assert_allclose(mags, sky.mag_ref, atol=0.01)


def test_emission_lines_sit_at_the_redshift(sky):
    gal = int(np.flatnonzero(sky.is_class("galaxy") & (sky.emission_ew > 30) & (sky.redshift < 0.4))[0])
    z = sky.redshift[gal]
    halpha = 6564.6 * (1 + z)
    wave = np.linspace(halpha - 60, halpha + 60, 601)
    flux = sky.sed(wave, [gal])[0]
    assert abs(wave[np.argmax(flux)] - halpha) < 3.0


def test_columns_from_every_plugin_agree(sky, columns):
    n = len(sky)
    for name, values in columns.items():
        assert len(values) == n, name
    r = np.asarray(columns["mag_pstotal_r"])
    u = np.asarray(columns["mag_pstotal_u"])
    assert np.any(u == 99)  # faint sources in the shallow u band get the sentinel
    assert np.median(sky.mag_ref[u == 99]) > np.median(sky.mag_ref[u != 99])
    err = np.asarray(columns["err_mag_pstotal_r"])
    assert np.all((err == 99) == (r == 99)) and np.all(err[r != 99] > 0)
    # the catalogue redshift exists exactly for the spectroscopic sample, which has spectra
    has_spec = spectroscopic_sample(sky)
    assert np.array_equal(np.isfinite(columns["z"]), has_spec)
    lengths = columns["desi_flux_b"].value_lengths().to_numpy(zero_copy_only=False)
    assert np.array_equal(lengths > 0, has_spec) and set(lengths[has_spec]) == {2751}
    # cutout fluxes agree with the catalogue magnitudes for bright sources
    cut = columns["splus_cut_R"]
    sizes = cut.value_lengths().to_numpy(zero_copy_only=False)
    bright = np.flatnonzero((sizes == 256) & (r < 18.5))
    offsets = cut.offsets.to_numpy()
    values = cut.values.to_numpy()
    total = np.array([values[offsets[i] : offsets[i + 1]].sum() for i in bright])
    np.testing.assert_allclose(25 - 2.5 * np.log10(total), r[bright], atol=0.15)
    # Gaia: point sources only; XP only for bright stars
    assert np.all(np.isnan(columns["gaia_parallax"][~sky.is_point_source]))
    xp = ~columns["bp_coefficients"].is_null().to_numpy(zero_copy_only=False)
    g = photometry(sky, {"G": tophat(6900.0, 7200.0)})["G"]
    assert np.all(sky.is_class("star")[xp]) and np.all(g[xp] < 17.65)


def test_ztf_light_curves_follow_the_cadence(sky, columns):
    hmjd = columns["ztf_hmjd_g"]
    mags = columns["ztf_mag_g"]
    assert pa.types.is_list(hmjd.type)
    rows = [np.asarray(x) for x in hmjd.to_pylist() if x]
    assert rows, "some objects have ZTF data"
    for t in rows:
        assert np.all(np.diff(t) > 0) and np.all(((t - 58194.0) % 365.25) < 241)
    assert hmjd.value_lengths() == mags.value_lengths()
    periodic = np.flatnonzero(np.isfinite(sky.period) & (hmjd.value_lengths().to_numpy(zero_copy_only=False) > 20))
    if periodic.size:
        m = np.asarray(mags[int(periodic[0])].as_py())
        assert np.ptp(m) > 0.5 * sky.amplitude[periodic[0]]


def test_demo_columns_accepts_bare_callables(sky):
    one = DemoColumns.coerce(lambda s: {"x": np.zeros(len(s))}, "plugin-a")
    two = DemoColumns.coerce(lambda s, options: {"y": np.full(len(s), options["k"])}, "plugin-b")
    assert one.name == "plugin-a" and set(one(sky)) == {"x"}
    assert two(sky, {"k": 3})["y"][0] == 3
    with pytest.raises(TypeError, match="plugin-c"):
        DemoColumns.coerce(42, "plugin-c")
    # who registered it is recorded, and kept once set
    three = DemoColumns.coerce(DemoColumns("wise", lambda s: {}), "wise", "astromodal-wise")
    assert three.plugin == "astromodal-wise"
    assert DemoColumns.coerce(three, "x", "other").plugin == "astromodal-wise"


def test_the_simulator_lives_in_the_demo_plugin():
    import importlib.util

    assert importlib.util.find_spec("astromodal_core.sky") is None
    assert Sky.__module__ == "astromodal_demo.sky"
