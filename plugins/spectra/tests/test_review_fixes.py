"""Review fixes: store fingerprints keyed by token key, ConfigError for unknown config keys."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from astromodal_spectra import SpectrumTokenizer

from astromodal_core import ConfigError
from astromodal_core.store import store_metadata


def test_encode_to_store_keys_fingerprints_by_token_key(small_cube: Path, tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        tok = SpectrumTokenizer(codebook_size=16, norm_bins=16, progress=False,
                                batch_size=3).train([small_cube])
    out = tok.encode_to_store(small_cube, tmp_path / "tokens.parquet")
    meta = store_metadata(out)
    written = set(meta["token_keys"])
    assert written == {k.name for k in tok.token_keys}
    assert any(name.endswith("_norm") for name in written)
    # the core's store contract: one fingerprint per token key written, nothing else
    assert meta["fingerprints"] == dict.fromkeys(sorted(written), tok.fingerprint)
    assert "spectrum" not in meta["fingerprints"]


def test_from_config_unknown_key_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"tokenizers\.spectrum\.codebok_size: unknown setting"):
        SpectrumTokenizer.from_config({"codebook_size": 8, "codebok_size": 64})
