"""SpectrumTokenizer on the core's Tokenizer base: tokens and training identical to the plugin
before the move (a save it wrote), validated loading, the value protocol, bounded batches."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from astromodal_spectra import SpectrumTokenizer
from safetensors.numpy import load_file
from spectra_testdata import DATA, SMALL_ARMS, make_datacube

from astromodal_core import CodecFormatError, TokenKeyError
from astromodal_core.serialize import load_npz, save_npz

LEGACY = DATA / "legacy_v0"
#: the legacy save's settings; its ZTF group in the earlier (then default) padded, delta-time
#: form, which a new group now has to ask for
SETTINGS = {"codebook_size": 16, "norm_bins": 16, "max_features_per_group": 100,
            "max_rows_per_file": 4, "batch_size": 2,
            "groups": ["desi_b", {"name": "ztf_g", "kind": "ztf_mag_err", "patch_size": 2,
                                  "layout": "padded", "time_encoding": "delta"}]}


@pytest.fixture(scope="module")
def legacy_cubes(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    d = tmp_path_factory.mktemp("legacy")
    return [make_datacube(d / f"two{i}.parquet", n=7, seed=i, xp=False, arms={"b": 60},
                          id0=1000 * (i + 1)) for i in range(2)]


def _check_same_tokens(tok: SpectrumTokenizer, cubes: list[Path]) -> None:
    with np.load(LEGACY / "tokens.npz", allow_pickle=False) as npz:
        want = {k: npz[k] for k in npz.files}
    for i, cube in enumerate(cubes):
        got = tok.encode(cube)
        names = {k.split("__", 1)[1] for k in want if k.startswith(f"two{i}__")}
        assert names == {k for k, v in got.items() if isinstance(v, np.ndarray)}
        for name in names:
            ref = want[f"two{i}__{name}"]
            assert got[name].dtype == ref.dtype, name
            np.testing.assert_array_equal(got[name], ref, err_msg=name)


def test_a_save_from_before_the_base_loads_and_encodes_bit_identically(legacy_cubes: list[Path]) -> None:
    tok = SpectrumTokenizer.load(LEGACY / "spectrum_tokenizer_config.npz", progress=False)
    assert [g["name"] for g in tok.groups] == ["desi_b", "ztf_g"]
    assert tok.progress is False and tok.max_rows_per_file == 4
    _check_same_tokens(tok, legacy_cubes)


def test_training_gives_the_same_state_as_before_the_base(legacy_cubes: list[Path], tmp_path: Path) -> None:
    """The bounded two-pass sampling (files over max_rows_per_file) keeps the same rows and
    patches as the plugin's earlier in-memory sampling: the same codebooks and norm edges."""
    legacy = SpectrumTokenizer.load(LEGACY / "spectrum_tokenizer_config.npz")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        tok = SpectrumTokenizer(progress=False, **SETTINGS).train(legacy_cubes)
    for name, m in tok.models.items():
        for k, v in m.arrays().items():
            np.testing.assert_array_equal(v, legacy.models[name].arrays()[k], err_msg=f"{name}/{k}")
    assert tok.fingerprint == legacy.fingerprint
    _check_same_tokens(tok, legacy_cubes)
    # saved in the new layout: one content-addressed companion; the load is identical
    path = tok.save(tmp_path / "spectrum_tokenizer_config.npz")
    companions = sorted(p.name for p in tmp_path.glob("*.safetensors"))
    assert len(companions) == 1 and companions[0].startswith("spectrum_tokenizer_config.codebooks.")
    assert SpectrumTokenizer.load(path).fingerprint == tok.fingerprint


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory, legacy_cubes: list[Path]) -> Path:
    d = tmp_path_factory.mktemp("saved")
    tok = SpectrumTokenizer.load(LEGACY / "spectrum_tokenizer_config.npz", progress=False)
    return tok.save(d / "spectrum_tokenizer_config.npz")


def _damaged(saved: Path, tmp_path: Path, *, arrays=None, config=None) -> Path:
    """A copy of ``saved`` whose companion arrays / npz config were changed."""
    for p in saved.parent.iterdir():
        shutil.copy(p, tmp_path / p.name)
    path = tmp_path / saved.name
    cfg, npz_arrays, _ = load_npz(path, kind="spectrum_tokenizer")
    if arrays is not None:
        (comp,) = tmp_path.glob("*.codebooks.*.safetensors")
        tensors = load_file(str(comp))
        arrays(tensors)
        new = tmp_path / "spectrum_tokenizer_config.codebooks.0123456789abcdef.safetensors"
        from astromodal_core.serialize import save_safetensors

        fp = save_safetensors(new, tensors)
        new = new.rename(tmp_path / f"spectrum_tokenizer_config.codebooks.{fp}.safetensors")
        cfg["__companions__"]["codebooks"] = {"file": new.name, "fingerprint": fp}
    if config is not None:
        config(cfg, npz_arrays)
    save_npz(path, cfg, npz_arrays, kind="spectrum_tokenizer")
    return path


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda t: t.update({"desi_b/codebook": t["desi_b/codebook"][:, :1].copy()}),
         r"group 'desi_b': codebook has shape \(16, 1\), expected \(k, 2\)"),
        (lambda t: t.update({"ztf_g/codebook": np.concatenate([t["ztf_g/codebook"]] * 2)}),
         r"group 'ztf_g': codebook has 32 codes, more than its size 16"),
        (lambda t: t["desi_b/codebook"].__setitem__((3, 1), np.nan),
         r"group 'desi_b': codebook holds NaN or infinite values"),
        (lambda t: t.pop("ztf_g/codebook"), r"group 'ztf_g': no codebook array"),
        (lambda t: t.update({"desi_b/codebook": t["desi_b/codebook"].ravel().copy()}),
         r"group 'desi_b': codebook has shape \(32,\), expected \(k, d\)"),
    ],
)
def test_damaged_codebooks_are_codec_format_errors(saved: Path, tmp_path: Path, change, match) -> None:
    path = _damaged(saved, tmp_path, arrays=change)
    with pytest.raises(CodecFormatError, match=match) as err:
        SpectrumTokenizer.load(path)
    assert str(err.value).startswith(str(path))


def test_damaged_norm_edges_and_config_are_codec_format_errors(saved: Path, tmp_path: Path) -> None:
    def nan_edges(cfg, arrays):
        arrays["desi_b/norm_edges"] = arrays["desi_b/norm_edges"].copy()
        arrays["desi_b/norm_edges"][2] = np.nan

    def descending(cfg, arrays):
        arrays["ztf_g/norm_edges"] = arrays["ztf_g/norm_edges"][::-1].copy()

    def no_groups(cfg, arrays):
        cfg["groups"] = []

    for change, match in ((nan_edges, r"group 'desi_b': bin edges hold NaN"),
                          (descending, r"group 'ztf_g': bin edges are not in increasing order"),
                          (no_groups, r"not a spectrum tokenizer state")):
        d = tmp_path / change.__name__
        d.mkdir()
        with pytest.raises(CodecFormatError, match=match):
            SpectrumTokenizer.load(_damaged(saved, d, config=change))


def test_load_refuses_unknown_settings(saved: Path) -> None:
    with pytest.raises(TypeError, match=r"SpectrumTokenizer\.load: unknown setting\(s\) \['speed'\]"):
        SpectrumTokenizer.load(saved, speed=2)
    assert SpectrumTokenizer.load(saved, batch_size=5, progress=False).batch_size == 5


def test_value_protocol_for_norm_keys(saved: Path) -> None:
    tok = SpectrumTokenizer.load(saved)
    v = tok.token_values("tok_spectrum_desi_b_norm")
    key = tok.token_key("tok_spectrum_desi_b_norm")
    assert key.ordinal and v.shape == (key.vocab_size,) and v.dtype == np.float64
    assert np.isnan(v[key.mask_token])
    real = v[np.isfinite(v)]
    assert np.all(np.diff(real) > 0)
    edges = tok.models["desi_b"].edges
    np.testing.assert_array_equal(real, 0.5 * (edges[:-1] + edges[1:]))  # log10 flux scale
    with pytest.raises(TokenKeyError, match="'tok_spectrum_desi_b' has no physical values"):
        tok.token_values("tok_spectrum_desi_b")
    with pytest.raises(TokenKeyError, match="writes no token key 'tok_nope'"):
        tok.token_values("tok_nope")


def test_batches_are_bounded_and_join_to_encode(legacy_cubes: list[Path]) -> None:
    tok = SpectrumTokenizer.load(LEGACY / "spectrum_tokenizer_config.npz", progress=False)
    batches = list(tok.iter_token_batches(legacy_cubes[0], batch_size=3))
    assert [len(ids) for ids, _ in batches] == [3, 3, 1]
    whole = tok.encode(legacy_cubes[0])
    np.testing.assert_array_equal(np.concatenate([c["tok_spectrum_desi_b"] for _, c in batches]),
                                  whole["tokens_desi_b"])
    np.testing.assert_array_equal(np.concatenate([c["tok_lightcurve_ztf_g_norm"] for _, c in batches]),
                                  whole["tokens_ztf_g_norm"])


def test_a_file_over_the_row_limit_is_sampled_in_two_passes_with_bounded_reservoirs(tmp_path: Path) -> None:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    cube = make_datacube(tmp_path / "c.parquet", n=12, arms=SMALL_ARMS, xp=False)
    settings = {"codebook_size": 8, "norm_bins": 8, "max_rows_per_file": 3, "max_points_per_row": 7,
                "max_features_per_group": 15, "batch_size": 4, "progress": False,
                "groups": ["desi_b", "ztf_r"]}
    sample = SpectrumTokenizer(**settings).sample_file(cube)["desi_b"]
    assert sample.rows == 11  # rows with data (the last row has none)
    assert len(sample.norms) == 11  # every row with data gives its norm
    assert sample.vectors.seen == 3 * 7  # 3 rows x 7 points offered
    assert len(sample.vectors) == 15
    # the kept rows: the 3 with data and the smallest row keys; a file of only those rows
    # (one pass) gives the same vectors
    ids = np.arange(1000, 1011)
    chosen = ids[np.argsort(sample.row_keys(ids))[:3]]
    table = pq.read_table(cube)
    pq.write_table(table.filter(pc.is_in(table["id"], value_set=pa.array(chosen))), tmp_path / "s.parquet")
    alone = SpectrumTokenizer(**settings).sample_file(tmp_path / "s.parquet")["desi_b"]
    np.testing.assert_array_equal(alone.vectors.sample(), sample.vectors.sample())


def test_skipping_offers_a_full_reservoir_refuses_keeps_the_same_sample(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from astromodal_spectra.sampler import GroupSample

    cube = make_datacube(tmp_path / "c.parquet", n=30, arms=SMALL_ARMS, xp=False, ztf=False)
    settings = {"codebook_size": 8, "norm_bins": 8, "max_rows_per_file": 20, "batch_size": 4,
                "max_features_per_group": 40, "progress": False, "groups": ["desi_b", "desi_r"]}
    fast = SpectrumTokenizer(**settings).sample_file(cube)
    monkeypatch.setattr(GroupSample, "_below_full_reservoir", lambda self, pk, r, c: (pk, (r, c)))
    plain = SpectrumTokenizer(**settings).sample_file(cube)
    for name in ("desi_b", "desi_r"):
        # 20 rows x (120 or 100 pixels, 5 masked) offered; most never held by the fast path
        assert fast[name].vectors.seen == plain[name].vectors.seen == 20 * {"desi_b": 115, "desi_r": 95}[name]
        np.testing.assert_array_equal(fast[name].vectors.sample(), plain[name].vectors.sample())
        np.testing.assert_array_equal(fast[name].vectors.keys, plain[name].vectors.keys)


def test_settings_round_trip_through_json() -> None:
    tok = SpectrumTokenizer(**SETTINGS, progress=False)
    again = SpectrumTokenizer.from_config(json.loads(json.dumps(tok.settings())))
    assert again.settings() == json.loads(json.dumps(tok.settings()))


def test_codec_files_are_one_group_tokenizer_files(tmp_path: Path) -> None:
    from astromodal_spectra import DESISpectrum, DESISpectrumCodec, ZTFLightCurveCodec

    rng = np.random.default_rng(0)
    flux = 10 ** rng.uniform(0, 1, (6, 1)) * (1 + rng.normal(0, 0.1, (6, 40)))
    spec = DESISpectrum(flux=flux, ivar=np.full((6, 40), 100.0), arm="b")
    codec = DESISpectrumCodec(codebook_size=8, norm_bins=8).train(spec)
    path = tmp_path / "desi_b_codec.npz"
    codec.save(path)
    assert len(list(tmp_path.glob("desi_b_codec.codebooks.*.safetensors"))) == 1
    assert list(SpectrumTokenizer.load(path).models) == ["desi_b"]
    again = DESISpectrumCodec.load(path)
    assert again.fingerprint == codec.fingerprint
    np.testing.assert_array_equal(again.encode(spec)["tok_spectrum_desi_b"],
                                  codec.encode(spec)["tok_spectrum_desi_b"])
    with pytest.raises(CodecFormatError, match=r"holds spectrum groups \['desi_b \(flux_ivar\)'\], "
                                               r"not the one 'ztf_mag_err' group of a ZTFLightCurveCodec"):
        ZTFLightCurveCodec.load(path)
