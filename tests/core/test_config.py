"""YAML config with attribute access in the seed's shape; type errors name the key path."""

from __future__ import annotations

from pathlib import Path

import pytest

from astromodal_core import ConfigError, load_config

SEED_CONFIG = """
tokenizers:
  scalar:
    n_bins: 1024
    max_values_per_col: 2000000
    max_values_per_file_per_col: 100000

  spectrum:
    codebook_size: 2048
    groups:
      - desi_b
      - gaiaxp_rp

  image:
    cutout_size: 96
    latent_dim: 2
    codebook_size: 1024
    bands:
      - F378
      - Z
data:
  mag_filter: {min: 14.0, max: 22}
my_extension: {anything: [1, 2]}
"""


def test_seed_shape_with_attribute_access(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text(SEED_CONFIG)
    from astromodal.config import load_config as facade_load

    config = facade_load(tmp_path / "config.yaml")
    assert config.tokenizers.scalar.n_bins == 1024
    assert config.tokenizers.spectrum.groups == ["desi_b", "gaiaxp_rp"]
    assert config.tokenizers.image.bands == ["F378", "Z"]
    assert config.data.mag_filter["min"] == 14.0 and config.data.mag_filter["max"] == 22
    assert config.my_extension.anything == [1, 2]  # unknown keys are kept
    assert config.to_dict()["tokenizers"]["image"]["latent_dim"] == 2


def test_wrong_type_names_the_key_path(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("tokenizers:\n  scalar:\n    n_bins: lots\n")
    with pytest.raises(ConfigError, match=r"c.yaml: key 'tokenizers.scalar.n_bins' should be int, got str 'lots'"):
        load_config(tmp_path / "c.yaml")
    (tmp_path / "b.yaml").write_text("tokenizers:\n  image:\n    cutout_size: true\n")
    with pytest.raises(ConfigError, match="'tokenizers.image.cutout_size' should be int, got bool"):
        load_config(tmp_path / "b.yaml")


def test_missing_key_and_bad_files(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("tokenizers: {}\n")
    config = load_config(tmp_path / "c.yaml")
    with pytest.raises(AttributeError, match="config has no key 'tokenizers.scalar'"):
        config.tokenizers.scalar  # noqa: B018
    (tmp_path / "bad.yaml").write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="bad.yaml: invalid YAML"):
        load_config(tmp_path / "bad.yaml")
    with pytest.raises(ConfigError, match="nope.yaml: config file not found"):
        load_config(tmp_path / "nope.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(ConfigError, match="the top level must be a mapping"):
        load_config(tmp_path / "list.yaml")
