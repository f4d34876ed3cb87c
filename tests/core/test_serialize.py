"""Safe serialization: npz without pickle, safetensors, versions, fingerprints, atomic writes."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from astromodal_core import CodecFormatError
from astromodal_core.serialize import (
    FORMAT_VERSION,
    atomic_path,
    fingerprint,
    load_npz,
    load_safetensors,
    save_npz,
    save_safetensors,
)


def test_npz_round_trip_is_readable_without_pickle(tmp_path: Path) -> None:
    path = tmp_path / "scalar_tokenizer_config.npz"
    fp = save_npz(path, {"n_bins": 4, "cols": ["a", "b"]}, {"edges": np.arange(6.0).reshape(2, 3)}, kind="scalar")
    with np.load(path, allow_pickle=False) as raw:
        assert json.loads(str(raw["__config__"])) == {"cols": ["a", "b"], "n_bins": 4}
        assert int(raw["__format_version__"]) == FORMAT_VERSION
        assert str(raw["__fingerprint__"]) == fp
    config, arrays, fp2 = load_npz(path, kind="scalar")
    assert config == {"n_bins": 4, "cols": ["a", "b"]}
    np.testing.assert_array_equal(arrays["edges"], np.arange(6.0).reshape(2, 3))
    assert fp2 == fp


def test_fingerprint_depends_on_config_and_arrays() -> None:
    a = {"x": np.arange(3.0)}
    assert fingerprint({"k": 1}, a) == fingerprint({"k": 1}, {"x": np.arange(3.0)})
    assert fingerprint({"k": 1}, a) != fingerprint({"k": 2}, a)
    assert fingerprint({"k": 1}, a) != fingerprint({"k": 1}, {"x": np.arange(3.0) + 1e-9})


def test_object_arrays_are_refused_on_save(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="dtype object"):
        save_npz(tmp_path / "x.npz", {}, {"names": np.array(["a", None], dtype=object)}, kind="k")


def test_pickled_npz_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.npz"
    np.savez(path, __config__=np.array("{}"), __format_version__=np.array(1), __kind__=np.array("k"),
             __fingerprint__=np.array("x"), payload=np.array([{"a": 1}], dtype=object))
    with pytest.raises(CodecFormatError, match="evil.npz: holds pickled objects"):
        load_npz(path)


def test_newer_format_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.npz"
    np.savez(path, __config__=np.array("{}"), __format_version__=np.array(FORMAT_VERSION + 1),
             __kind__=np.array("k"), __fingerprint__=np.array(fingerprint({}, {})))
    with pytest.raises(CodecFormatError, match=f"new.npz: format_version {FORMAT_VERSION + 1} is newer"):
        load_npz(path)


def test_truncated_npz_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "t.npz"
    save_npz(path, {"a": 1}, {"x": np.arange(1000.0)}, kind="k")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CodecFormatError, match="t.npz: truncated or corrupt"):
        load_npz(path)


def test_altered_npz_fails_fingerprint(tmp_path: Path) -> None:
    path = tmp_path / "a.npz"
    save_npz(path, {"a": 1}, {"x": np.arange(3.0)}, kind="k")
    with np.load(path, allow_pickle=False) as raw:
        payload = {k: raw[k] for k in raw.files}
    payload["x"] = payload["x"] + 1
    np.savez(path, **payload)
    with pytest.raises(CodecFormatError, match="fingerprint mismatch"):
        load_npz(path)


def test_wrong_kind_and_foreign_npz(tmp_path: Path) -> None:
    save_npz(tmp_path / "a.npz", {}, {}, kind="scalar")
    with pytest.raises(CodecFormatError, match="holds a 'scalar', expected a 'spectrum'"):
        load_npz(tmp_path / "a.npz", kind="spectrum")
    np.savez(tmp_path / "plain.npz", x=np.arange(3))
    with pytest.raises(CodecFormatError, match="not an astromodal file"):
        load_npz(tmp_path / "plain.npz")
    with pytest.raises(CodecFormatError, match="missing.npz: file not found"):
        load_npz(tmp_path / "missing.npz")


def test_safetensors_round_trip_and_checks(tmp_path: Path) -> None:
    path = tmp_path / "spectrum_kmeans_desi_b.safetensors"
    fp = save_safetensors(path, {"centroids": np.ones((4, 2), np.float32)}, {"group": "desi_b"})
    arrays, meta = load_safetensors(path, expected_fingerprint=fp)
    np.testing.assert_array_equal(arrays["centroids"], np.ones((4, 2), np.float32))
    assert meta["group"] == "desi_b" and meta["fingerprint"] == fp
    with pytest.raises(CodecFormatError, match="belongs to another save"):
        load_safetensors(path, expected_fingerprint="0" * 16)
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(CodecFormatError, match="spectrum_kmeans_desi_b.safetensors: truncated or corrupt"):
        load_safetensors(path)
    with pytest.raises(CodecFormatError, match="companion file not found"):
        load_safetensors(tmp_path / "nope.safetensors")


def test_atomic_path_leaves_nothing_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "out.parquet"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
    with atomic_path(target) as tmp:
        tmp.write_text("whole")
    assert target.read_text() == "whole"
    assert [p.name for p in tmp_path.iterdir()] == ["out.parquet"]


def test_npz_is_a_zip_of_plain_arrays(tmp_path: Path) -> None:
    save_npz(tmp_path / "z.npz", {"a": [1, 2]}, {"e": np.zeros(2)}, kind="k")
    with zipfile.ZipFile(tmp_path / "z.npz") as z:
        assert sorted(z.namelist()) == sorted(
            ["__config__.npy", "__format_version__.npy", "__kind__.npy", "__fingerprint__.npy", "e.npy"]
        )


def test_safetensors_saves_are_byte_reproducible(tmp_path: Path) -> None:
    """Two processes saving one state write identical bytes (metadata order is fixed)."""
    import hashlib
    import subprocess
    import sys

    code = ("import numpy as np, sys; from astromodal_core.serialize import save_safetensors; "
            "save_safetensors(sys.argv[1], {'w': np.arange(6.0).reshape(2, 3)}, "
            "{'z': '1', 'arch': {'b': 1, 'a': 2}, 'm': 'x', 'k': 3})")
    digests = set()
    for i in range(3):
        out = tmp_path / f"{i}.safetensors"
        subprocess.run([sys.executable, "-c", code, str(out)], check=True)
        digests.add(hashlib.sha256(out.read_bytes()).hexdigest())
    assert len(digests) == 1
    _, meta = load_safetensors(tmp_path / "0.safetensors")
    assert meta["arch"] == '{"a":2,"b":1}' and meta["z"] == "1" and meta["format_version"] == "1"


def test_atomic_path_follows_umask_and_cleans_stale_temps(tmp_path: Path) -> None:
    import os

    from astromodal_core.serialize import atomic_path

    target = tmp_path / "out.bin"
    stale = tmp_path / ".out.bin.999999999.abcd.tmp.bin"  # a writer pid that cannot be alive
    stale.write_bytes(b"x" * 10)
    old = os.umask(0o027)
    try:
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"new")
    finally:
        os.umask(old)
    assert target.read_bytes() == b"new"
    assert oct(target.stat().st_mode & 0o777) == oct(0o640)
    assert not stale.exists()
    with pytest.raises(IsADirectoryError):
        with atomic_path(tmp_path):
            pass
